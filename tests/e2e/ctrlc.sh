#!/bin/bash
# kbridge connect in a real terminal (tmux), as a user types it in the
# playground's workstation:
#
#   tmux pane: bash in ws --> kbridge connect --> kbridged --> 192.168.50.1:8443 (manager)
#                                                          --> 192.168.50.1:8449 (dropped in node)
#
# Ctrl-C at three moments (kbridged being started, the manager's address
# not answering, after the session is up): one line, exit status 130, and
# nothing left (no kbridged, no socket, nftables table, link or route).
# Connect's steps show on the terminal and nothing of them goes into a
# pipe; --timeout bounds the wait, and its error names address and file.
set -euo pipefail

KB_PG_PREFIX=kbx
FAIL_LOGS=(ws/kbridged.sock.log)
. "$(dirname "$0")/common.bash"
tmp=$(mktemp -d /tmp/kbctrlc.$$.XXXXXX)
chmod 755 "$tmp"
cleanup_extra() {
	pg node nft delete table ip kbctrlc 2>/dev/null
	rm -rf "$tmp"
}

kb() { QUIET=1 pg ws "$KB_BIN/kbridge" "$@"; }
# Nothing of kbridge on the workstation: no daemon in ws, no socket, no
# table, no link, no route to the cluster.
nothing_left() {
	local p
	for p in $(ip netns pids "$KB_PG-ws"); do
		[[ $(cat "/proc/$p/comm" 2>/dev/null) != kbridged ]] || return 1
	done
	[[ $(kb status) == "kbridged: not running" && ! -e $STATE/ws/kbridged.sock ]] &&
		[[ -z $(QUIET=1 pg ws nft list tables) ]] &&
		! QUIET=1 pg ws ip -o link show | grep -q kbridge &&
		[[ -z $(QUIET=1 pg ws ip route show 10.96.0.0/16) ]]
}
# (the daemon's process ends just after its socket goes)
left_nothing() { poll 30 nothing_left || { echo "something of kbridge is left" >&2; return 1; }; }
interrupted_once() { # the pane shows one line, the interrupt's, and EXIT=130
	poll 100 shows '^EXIT='
	[[ $(status) == 130 ]]
	[[ $(between | wc -l) == 1 ]]
	[[ $(between) == "kbridge: connect interrupted; nothing was left running" ]]
}

"$PG" up >/dev/null
# A manager address that never answers: node drops what is sent there.
pg node nft -f - <<'NFT'
table ip kbctrlc {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip daddr 192.168.50.1 tcp dport 8449 drop
	}
}
NFT
python3 - "$STATE/alice.json" "$tmp/blackhole.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["manager"] = "192.168.50.1:8449"
json.dump(p, open(sys.argv[2], "w"))
PY
# A kbridged that takes its time to start.
printf '#!/bin/sh\nsleep 5\nexec %s/kbridged "$@"\n' "$KB_BIN" > "$tmp/slow-kbridged"
chmod 755 "$tmp/slow-kbridged"
chmod 600 "$tmp/blackhole.json"
term_start "$PG exec ws -- env PS1='$ ' TERM=xterm bash --norc --noprofile"
poll 50 shows '^\$'
ok "playground up; a terminal (tmux) in ws; 192.168.50.1:8449 blackholed in node"

# 1. While kbridged is being started.
run "KBRIDGED=$tmp/slow-kbridged $KB_BIN/kbridge connect --profile $STATE/alice.json"
poll 100 shows 'starting kbridged \.\.\.'
sleep 0.5
keys C-c
interrupted_once
left_nothing
ok "Ctrl-C while kbridged starts: one line, exit 130, nothing left"

# 2. While dialling an address that does not answer.
run "$KB_BIN/kbridge connect --profile $tmp/blackhole.json"
poll 100 shows 'dialling 192\.168\.50\.1:8449 \.\.\.'
sleep 1
keys C-c
interrupted_once
left_nothing
ok "Ctrl-C while dialling a silent address: one line, exit 130, no daemon, table, link or route"

# 3. After the session is up: connect has ended; the daemon is not the
# terminal's to interrupt.
run "$KB_BIN/kbridge connect --profile $STATE/alice.json"
poll 100 shows '^EXIT='
[[ $(status) == 0 ]]
shows '^Connected to 192\.168\.50\.1:8443 as alice'
no shows '\.\.\.$'
keys C-c
sleep 0.5
[[ $(kb status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])') == connected ]]
kb quit >/dev/null
left_nothing
ok "after the session is up, Ctrl-C leaves it be; quit leaves nothing"

# Into a pipe: the result only, no progress.
out=$(kb connect --profile "$STATE/alice.json" 2>&1 | cat)
[[ $(head -n1 <<<"$out") == "Connected to 192.168.50.1:8443 as alice (namespace default)" ]]
no grep -qE 'starting|dialling|session up|\.\.\.|\[K' <<<"$out"
kb quit >/dev/null
ok "piped: connect writes its result, no progress line"

# --timeout, and what the error names.
rc=0
start=$(date +%s)
kb connect --profile "$tmp/blackhole.json" --timeout 2s >"$tmp/out" 2>"$tmp/err" || rc=$?
((rc == 1 && $(date +%s) - start < 10))
[[ $(wc -l <"$tmp/err") == 1 && ! -s $tmp/out ]]
grep -q "^kbridge: connect to 192.168.50.1:8449 failed: .*(profile $tmp/blackhole.json)" "$tmp/err"
left_nothing
rc=0
kb connect --profile "$tmp/blackhole.json" --timeout 11m 2>"$tmp/err" || rc=$?
[[ $rc == 2 && $(wc -l <"$tmp/err") == 1 ]]
ok "--timeout 2s: one line naming the address and the profile, exit 1, nothing left; bounds checked"
