#!/bin/bash
# The shell completions against a connected session in the playground:
#
#   bash/zsh/fish in ws --> kbridge __complete --> alice's kbridged --> manager
#
# bash (the installed script, sourced, COMP_WORDS/COMP_CWORD set as bash
# sets them) offers the cluster's namespaces after `intercept -n` and the
# workloads of the namespace given (or the connected one) for WORKLOAD;
# fish and zsh the same, zsh also through zle in a real terminal (tmux:
# TAB after a command's prefix, -n, WORKLOAD); without a daemon they offer
# nothing and say nothing.
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

# zsh in a real terminal (tmux): compinit loads _kbridge from fpath, as
# `make install` puts it in vendor-completions, and TAB goes through zle.
mkdir -p "$tmp/zfunc"
cp "$tmp/_kbridge" "$tmp/zfunc/_kbridge"
chmod -R a+rX "$tmp"
term_start "$PG exec ws -- env -u ZDOTDIR TERM=xterm HOME=$tmp PATH=$KB_BIN:$PATH zsh -f"
keys "PROMPT='\$ '; fpath=($tmp/zfunc \$fpath); autoload -U compinit; compinit -u -d $tmp/zcompdump" Enter
poll 50 shows '^\$ ?$'
# tab WORDS RE: type WORDS, then TAB; RE must match the screen (the command
# line, or what zsh lists below it; tmux drops trailing blanks)
tab() {
	keys C-u clear Enter
	poll 50 eval '[[ $(pane | grep -c .) == 1 ]]'
	keys "$1" Tab
	poll 30 shows "$2" || { echo "typed '$1' TAB, wanted '$2' on the screen:"; pane; return 1; }
}
tab "kbridge interc" '^\$ kbridge intercept ?$'
tab "kbridge intercept -n sh" '^\$ kbridge intercept -n shop ?$'
tab "kbridge intercept -n shop " '^\$ kbridge intercept -n shop cart ?$'
tab "kbridge intercept w" '^\$ kbridge intercept web ?$'
# ambiguous: zle lists the connected namespace's workloads below the line
tab "kbridge intercept " '(^| )echo( |$)'
shows '(^| )web( |$)'
no shows '(^| )cart( |$)'
tab "kbridge list -n " '(^| )shop( |$)'
shows '(^| )default( |$)'
keys C-u
ok "zsh in tmux (compinit, _kbridge from fpath): TAB completes a command (interc -> intercept), a namespace after -n, workloads (cart with -n shop, web; echo and web listed)"

alice quit >/dev/null
echo "1..$n"
