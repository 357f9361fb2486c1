#!/bin/bash
# Ctrl-C at sudo's password prompt, in a real terminal (tmux), as a user
# whose sudo rule for kbridged asks for a password:
#
#   tmux pane: bash in ws as kbsc<PID> --> kbridge connect --> sudo kbridged --daemon
#                                                               [sudo] password for ...: ^C
#
# kbridge prints one line, exits 130, and leaves nothing: no sudo, no
# kbridged, no socket in /run/kbridge, no nftables table, link or route in
# ws. The user (no password of their own, a home made and removed with it)
# and the sudo rule exist only while the test runs (the CI machine is a
# throwaway one, run as root; userdel -r on exit). It uses the host's
# /run/kbridge (the socket a daemon started through sudo always takes), so
# it runs alone (tests/run).
set -euo pipefail

KB_PG_PREFIX=kbsc
FAIL_LOGS=()
. "$(dirname "$0")/common.bash"
for t in sudo visudo useradd userdel passwd runuser; do
	command -v $t >/dev/null || { echo "not ok - $t is missing"; exit 1; }
done
user=kbsc$$
rule=/etc/sudoers.d/kbridge-sudoctrlc-$$
sock=/run/kbridge/kbridged.sock
work=$(mktemp -d /tmp/kbsudoctrlc.$$.XXXXXX)
made=
cleanup_extra() {
	rm -f "$rule"
	# the terminal's shell runs as the user: it goes before the user
	[[ -z ${term_dir:-} ]] || term_cleanup "$rc"	# (e2e_cleanup's)
	term_dir=
	KBRIDGE_SOCKET=$sock "$PG" exec ws -- "$KB_BIN/kbridge" quit >/dev/null 2>&1
	# (only the user this test made has processes of that uid)
	[[ -z $made ]] || for p in $(ps -o pid= -u "$uid"); do kill "$p"; done 2>/dev/null
	[[ -z $made ]] || userdel -r "$user" 2>/dev/null
	[[ -z $made ]] || rm -f "/run/kbridge/kbridged-$uid.log"
	rm -rf "$work"
}
if [[ -S $sock && $(KBRIDGE_SOCKET=$sock "$KB_BIN/kbridge" status 2>/dev/null) != "kbridged: not running" ]]; then
	echo "not ok - a kbridged already serves $sock: not running this test over it"
	exit 1
fi
# The exact kbridged the rule names, where the user can run it.
mkdir -p "$work/bin"
cp "$KB_BIN/kbridge" "$KB_BIN/kbridged" "$work/bin/"
chmod 755 "$work" "$work/bin" "$work/bin/"*
useradd --create-home --shell /bin/bash "$user"
made=1
uid=$(id -u "$user")
[[ $(passwd -S "$user" | awk '{print $2}') != P ]]
# The README's rule, but with a password asked (no NOPASSWD).
echo "$user ALL=(root) $work/bin/kbridged --daemon" >"$rule"
chmod 0440 "$rule"
visudo -cqf "$rule"
"$PG" up >/dev/null
install -m 0600 -o "$user" "$STATE/alice.json" "$work/alice.json"
ok "user $user (uid $uid, no password), a sudo rule for $work/bin/kbridged --daemon that asks for one; playground up"

# Nothing of kbridge: no sudo or kbridged of the user's attempt, no socket,
# nothing in ws's network stack.
nothing_left() {
	local p c
	for p in $(ip netns pids "$KB_PG-ws"); do
		c=$(cat "/proc/$p/comm" 2>/dev/null) || continue
		[[ $c != kbridged && $c != sudo ]] || return 1
	done
	[[ ! -e $sock ]] &&
		[[ -z $(QUIET=1 pg ws nft list tables) ]] &&
		! QUIET=1 pg ws ip -o link show | grep -q kbridge &&
		[[ -z $(QUIET=1 pg ws ip route show 10.96.0.0/16) ]]
}

term_start "$PG exec ws -- runuser -u $user -- env -i PS1='\$ ' TERM=xterm HOME=/home/$user PATH=/usr/sbin:/usr/bin:/sbin:/bin bash --norc --noprofile"
poll 50 shows '^\$'
[[ $(QUIET=1 pg ws "$KB_BIN/kbridge" status) == "kbridged: not running" ]]
run "$work/bin/kbridge connect --profile $work/alice.json"
poll 100 shows "\[sudo\] password for $user:"
# sudo waits there (no daemon yet)
sleep 0.5
shows "\[sudo\] password for $user:"
[[ ! -e $sock ]]
ok "kbridge connect as $user: sudo asks for the password"

keys C-c
poll 100 shows '^EXIT='
[[ $(status) == 130 ]] || { echo "exit $(status)"; exit 1; }
# On the screen: the step, sudo's prompt on a line of its own (kbridge
# puts it there), then one line.
out=$(between)
[[ $(head -n1 <<<"$out") == "starting kbridged through sudo ..." &&
	$(sed -n 2p <<<"$out") == "[sudo] password for $user:"* &&
	$(sed -n '3,$p' <<<"$out") == "kbridge: connect interrupted; nothing was left running" ]] ||
	{ echo "the terminal showed: '$out'"; exit 1; }
poll 30 nothing_left
# and of the user's processes, only the terminal's shell
[[ $(ps -o comm= -u "$uid" | sort -u) == bash ]] || { ps -f -u "$uid"; exit 1; }
ok "Ctrl-C at the prompt: one line, exit 130; no sudo, no kbridged, no socket, no table, link or route"
echo "1..$n"
