#!/bin/bash
# `make install DESTDIR=$tmp PREFIX=/usr` (no root, no playground): every
# file in place with its mode and nothing else, each man page renders
# without a warning, bash completes commands, subcommands and options from
# the installed completion, zsh and fish load theirs and offer the
# commands, and `make uninstall` removes it all again.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d /tmp/kbridge-makeinstall.$$.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
for t in man bash zsh fish install; do
	command -v $t >/dev/null || { echo "not ok - $t is missing"; exit 1; }
done

make -s -o deps install DESTDIR="$tmp/root" PREFIX=/usr >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
want="0644 usr/share/bash-completion/completions/kbridge
0644 usr/share/fish/vendor_completions.d/kbridge.fish
0644 usr/share/man/man1/kbridge.1
0644 usr/share/man/man8/kbridge-agent.8
0644 usr/share/man/man8/kbridged.8
0644 usr/share/zsh/vendor-completions/_kbridge
0755 usr/bin/kbridge
0755 usr/bin/kbridge-agent
0755 usr/bin/kbridge-sidecar
0755 usr/bin/kbridged"
got=$(cd "$tmp/root" && find . -type f -printf '%m %P\n' | sed 's/^644/0644/; s/^755/0755/' | sort)
[[ $got == "$want" ]] || { echo "installed:"; echo "$got"; exit 1; }
"$tmp/root/usr/bin/kbridge" version | grep -q '^kbridge '
ok "make install DESTDIR PREFIX=/usr: the four programs, three man pages and the bash, zsh and fish completions, nothing else"

for page in man1/kbridge.1 man8/kbridged.8 man8/kbridge-agent.8; do
	MANWIDTH=80 man --warnings -l "$tmp/root/usr/share/man/$page" >"$tmp/out" 2>"$tmp/err"
	[[ ! -s $tmp/err ]] || { echo "$page:"; cat "$tmp/err"; exit 1; }
	name=$(basename "$page"); name=${name%.*}
	grep -q "^NAME" "$tmp/out" && grep -q "^ *$name " "$tmp/out"
done
# The check itself can fail: a page with an unknown macro warns.
printf '.TH X 1\n.SH NAME\n.BOGUS x\n' >"$tmp/bad.1"
MANWIDTH=80 man --warnings -l "$tmp/bad.1" 2>&1 >/dev/null | grep -q warning
ok "man -l renders kbridge(1), kbridged(8) and kbridge-agent(8) without warnings"

# complete WORD...: what _kbridge offers for the last word
complete_words() {
	bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		_kbridge; echo "${COMPREPLY[*]}"' sh "$tmp/root/usr/share/bash-completion/completions/kbridge" "$@"
}
[[ $(complete_words kbridge inter) == intercept ]]
[[ $(complete_words kbridge p) == "preview port-forward" ]]
[[ $(complete_words kbridge intercept web --env-s) == --env-syntax ]]
[[ $(complete_words kbridge intercept web --add) == --address ]]
[[ $(complete_words kbridge preview cr) == create ]]
[[ $(complete_words kbridge preview create web --t) == --ttl ]]
[[ $(complete_words kbridge uninstall --ag) == --agents ]]
[[ $(complete_words kbridge help le) == leave ]]
[[ $(complete_words kbridge intercept web --port 8080 -- bas) == *bash* ]]
[[ -z $(complete_words kbridge intercept web --nosuch) ]]
[[ $(complete_words kbridge log) == "login logs loglevel" ]]
[[ $(complete_words kbridge ga) == gather-logs ]]
[[ $(complete_words kbridge loglevel "") == "debug info --help" ]]
[[ $(complete_words kbridge logs --f) == --follow ]]
[[ $(complete_words kbridge connect --ti) == --timeout ]]
bash -c 'source "$1"; complete -p kbridge' sh "$tmp/root/usr/share/bash-completion/completions/kbridge" | grep -q -- '-F _kbridge'
cmp -s "$tmp/root/usr/share/bash-completion/completions/kbridge" <(bin/kbridge completion bash)
ok "bash completes commands, subcommands, options and the command after --; the file is 'kbridge completion bash'"

# fish: the installed file, loaded as fish loads vendor completions, offers
# the commands with their summaries, subcommands and options.
fishc() { fish --no-config -c 'source $argv[1]; complete -C $argv[2]' "$tmp/root/usr/share/fish/vendor_completions.d/kbridge.fish" "$1"; }
out=$(fishc 'kbridge ')
[[ $out == *$'intercept\tsend a workload'* && $out == *$'completion\t'* && $out != *__complete* ]]
[[ $(fishc 'kbridge preview ') == $'create\nlist\nremove' ]]
[[ $(fishc 'kbridge intercept web --env-s') == --env-syntax* ]]
[[ $(fishc 'kbridge completion ') == $'bash\nfish\nzsh' ]]
cmp -s "$tmp/root/usr/share/fish/vendor_completions.d/kbridge.fish" <(bin/kbridge completion fish)
# zsh: compinit finds _kbridge in fpath (the #compdef line) and a sourced
# script registers it; _kbridge offers (compadd and _describe stand in
# for the completion widget's) the commands, subcommands and options.
zdir=$tmp/root/usr/share/zsh/vendor-completions
[[ $(zsh -f -c 'fpath=($1 $fpath); autoload -U compinit; compinit -u -d $2; print -r -- $_comps[kbridge]' sh "$zdir" "$tmp/zcd") == _kbridge ]]
zshc() {
	zsh -f -c 'compadd() { [[ $1 == -- ]] && shift; print -r -- "$@"; }
		_describe() { local -a a; a=("${(@P)2}"); print -r -- "${a[@]%%:*}"; }
		compdef() { :; }
		source $1; shift; words=("$@"); CURRENT=$#words; _kbridge' sh "$zdir/_kbridge" "$@"
}
[[ $(zshc kbridge "") == "connect status intercept "*" completion help" ]]
[[ $(zshc kbridge preview "") == "create list remove --help" ]]
[[ $(zshc kbridge intercept web --env-s) == *--env-syntax* ]]
cmp -s "$zdir/_kbridge" <(bin/kbridge completion zsh)
ok "fish and zsh load their installed completions and offer commands, subcommands and options"

make -s -o deps uninstall DESTDIR="$tmp/root" PREFIX=/usr >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
[[ -z $(find "$tmp/root" -type f) ]]
ok "make uninstall removes every file"
echo "1..$n"
