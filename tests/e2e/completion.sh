#!/bin/bash
# The shell completions against a connected session in the playground:
#
#   bash/zsh/fish in ws --> kbridge __complete --> alice's kbridged --> manager
#
# bash (the installed script, sourced, COMP_WORDS/COMP_CWORD set as bash
# sets them) offers the cluster's namespaces after `intercept -n` and the
# workloads of the namespace given (or the connected one) for WORKLOAD;
# fish and zsh the same; without a daemon they offer nothing and say
# nothing.
set -euo pipefail

KB_PG_PREFIX=kbc
FAIL_LOGS=(ws/kbridged.sock.log manager.log)
. "$(dirname "$0")/common.bash"
for t in bash zsh fish; do
	command -v $t >/dev/null || { echo "not ok - $t is missing"; exit 1; }
done
tmp=$(mktemp -d /tmp/kbridge-completion.$$.XXXXXX)
cleanup_extra() { rm -rf "$tmp"; }
"$KB_BIN/kbridge" completion bash >"$tmp/kbridge.bash"
"$KB_BIN/kbridge" completion zsh >"$tmp/_kbridge"
"$KB_BIN/kbridge" completion fish >"$tmp/kbridge.fish"
chmod -R a+rX "$tmp"

# In ws, as alice's shell would: kbridge on PATH.
inws() { QUIET=1 pg ws env PATH="$KB_BIN:$PATH" "$@"; }
# bash_complete WORD...: what _kbridge offers for the last word
bash_complete() {
	inws bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		_kbridge; echo "${COMPREPLY[*]}"' sh "$tmp/kbridge.bash" "$@"
}
fish_complete() { inws fish --no-config -c 'source $argv[1]; complete -C $argv[2]' "$tmp/kbridge.fish" "$1" | tr '\n' ' '; }
zsh_complete() {
	inws zsh -f -c 'compadd() { [[ $1 == -- ]] && shift; print -r -- "$@"; }
		compdef() { :; }
		source $1; shift; words=("$@"); CURRENT=$#words; _kbridge' sh "$tmp/_kbridge" "$@"
}

"$PG" up >/dev/null
[[ -z $(bash_complete kbridge intercept -n "") ]]
[[ -z $(inws kbridge __complete namespaces 2>&1) ]]
no inws kbridge __complete namespaces
ok "not connected: nothing offered, nothing said"

alice connect --profile "$STATE/alice.json" >/dev/null
out=$(bash_complete kbridge intercept -n "")
[[ " $out " == *" shop "* && " $out " == *" default "* ]]
[[ $(bash_complete kbridge intercept -n sh) == shop ]]
[[ $(bash_complete kbridge intercept --namespace sh) == shop ]]
ok "bash: intercept -n offers the cluster's namespaces ($out)"

[[ $(bash_complete kbridge intercept -n shop "") == cart ]]
[[ $(bash_complete kbridge intercept -n shop --port 8080 "") == cart ]]
out=$(bash_complete kbridge intercept "")
[[ " $out " == *" web "* && " $out " == *" echo "* && " $out " != *" cart "* ]]
[[ $(bash_complete kbridge leave w) == web ]]
[[ $(bash_complete kbridge preview create -n shop c) == cart ]]
# Not for an option's value, nor after the workload.
[[ -z $(bash_complete kbridge intercept --port "") ]]
[[ -z $(bash_complete kbridge intercept web "") ]]
[[ $(bash_complete kbridge intercept web --env-s) == --env-syntax ]]
ok "bash: WORKLOAD offers the workloads of -n NS (cart in shop) or the connected namespace (web, echo)"

out=$(fish_complete 'kbridge intercept -n ')
[[ " $out " == *" shop "* && " $out " == *" default "* ]]
[[ $(fish_complete 'kbridge intercept -n shop ') == "cart " ]]
[[ $(fish_complete 'kbridge intercept --port 8080 w') == "web " ]]
[[ $(fish_complete 'kbridge intercept ') == *intercept* || $(fish_complete 'kbridge ') == *intercept* ]]
ok "fish: namespaces after -n, workloads for WORKLOAD"

out=$(zsh_complete kbridge intercept -n "")
[[ " $out " == *" shop "* ]]
[[ $(zsh_complete kbridge intercept -n shop "") == cart ]]
ok "zsh: namespaces after -n, workloads for WORKLOAD"

alice quit >/dev/null
echo "1..$n"
