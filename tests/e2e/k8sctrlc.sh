#!/bin/bash
# Ctrl-C in a real terminal (tmux) during `kbridge connect` with a kubeconfig:
# by then connect has made alice's certificate and started her forwarder
# (`kbridge port-forward`, to the manager pod through the API server).
# Interrupted while kbridged starts, it prints one line, exits 130, and
# leaves nothing: no forwarder, no kbridged, no table, link or route.
set -euo pipefail

KB_PG_PREFIX=kbkx
FAIL_LOGS=(ws/kbridged.sock.log cache-alice/kbridge/port-forward.log)
. "$(dirname "$0")/common.bash"
control_plane
K=$STATE/kube
tmp=$(mktemp -d /tmp/kbk8sctrlc.$$.XXXXXX)
chmod 755 "$tmp"
cleanup_extra() {
	QUIET=1 pg ws "$KB_BIN/kbridge" quit >/dev/null 2>&1
	rm -rf "$tmp"
}
adm() { "$PG" kubectl "$@"; }
# processes of ours in ws named NAME
running() {
	local p
	for p in $(ip netns pids "$KB_PG-ws"); do
		[[ $(cat "/proc/$p/comm" 2>/dev/null) != "$1" ]] || return 0
	done
	return 1
}
nothing_left() {
	! running kbridged && ! running kbridge &&
		[[ $(QUIET=1 pg ws "$KB_BIN/kbridge" status) == "kbridged: not running" ]] &&
		[[ -z $(QUIET=1 pg ws nft list tables) ]] &&
		! QUIET=1 pg ws ip -o link show | grep -q kbridge &&
		[[ -z $(QUIET=1 pg ws ss -Hltnp | grep '"kbridge"') ]]
}
left_nothing() { poll 30 nothing_left || { echo "something of kbridge is left" >&2; return 1; }; }

KB_PG_NO_MANAGER=1 "$PG" up --k8s >/dev/null
pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" >/dev/null
"$PG" run-pod kbridge kbridge-manager >/dev/null
poll 100 listening mgr 8443
adm create clusterrolebinding kbridge-dev-alice --clusterrole=kbridge-developer --user=alice >/dev/null
adm -n kbridge create rolebinding kbridge-dev-alice --role=kbridge-developer --user=alice >/dev/null
printf '#!/bin/sh\nsleep 5\nexec %s/kbridged "$@"\n' "$KB_BIN" > "$tmp/slow-kbridged"
chmod 755 "$tmp/slow-kbridged"
term_start "$PG exec ws -- env PS1='$ ' TERM=xterm XDG_CACHE_HOME=$STATE/cache-alice HOME=/nonexistent KUBECONFIG=$K/alice.kubeconfig bash --norc --noprofile"
poll 50 shows '^\$'
ok "kbridge installed, the manager pod up, alice bound; a terminal (tmux) in ws as alice"

run "KBRIDGED=$tmp/slow-kbridged $KB_BIN/kbridge connect"
poll 300 shows 'starting kbridged \.\.\.'
# Her forwarder runs by now.
running kbridge
[[ -n $(QUIET=1 pg ws ss -Hltnp | grep '"kbridge"') ]]
keys C-c
poll 100 shows '^EXIT='
[[ $(status) == 130 ]]
[[ $(between | wc -l) == 1 && $(between) == "kbridge: connect interrupted; nothing was left running" ]]
left_nothing
ok "Ctrl-C while kbridged starts: one line, exit 130, no forwarder, no kbridged, no table or link"

# Then a connect goes through, on the terminal, with its certificate cached.
run "$KB_BIN/kbridge connect"
poll 300 shows '^EXIT='
[[ $(status) == 0 ]]
shows "^Connected to 127\.0\.0\.1:[0-9]+ \(the API server's port-forward\) as alice"
QUIET=1 pg ws "$KB_BIN/kbridge" quit >/dev/null
left_nothing
ok "connect afterwards: connected through the port-forward; quit leaves nothing"
