#!/bin/bash
# Per-session limits of the manager, against a daemon that misbehaves: a raw
# protocol peer (kbraw.py) with a developer identity of its own (mallory: one
# identity has one session, and alice's daemon holds hers), next to alice's
# and bob's real daemons.
#
#   ws: kbraw.py (mallory)      --TLS 192.168.50.1:8443--+
#       kbridged (alice)                                  +--> node --> mgr 10.244.0.10
#   bob: kbridged (bob), curl, getent --TLS 192.168.51.1-+     (:8443 sessions, :8080 previews)
#                                                              web 10.244.1.10
#                                                              10.244.3.99: no such pod
#
# 1. 600 streams, each with a whole window (512 KiB) of early data, to an
#    address that never answers: the manager's memory stays bounded.
# 2. 600 streams with early data under the limit: at most 64 connects of the
#    session wait, the rest are reset at once.
# 3. 30,000 resolve requests at once, kept in flight (one more for each
#    answer): bob resolves and connects, provably while the flood runs.
# 4. DIAL to the manager's own pod address is refused (also through a daemon).
# The manager's log says each once, not once per refusal.
set -euo pipefail

KB_PG_PREFIX=kbl
FAIL_LOGS=(manager.log ws/kbridged.sock.log)
FAIL_LINES=30
. "$(dirname "$0")/common.bash"
bg_pids=()
cleanup_extra() { local p; for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; done; }

raw() { pg ws python3 "$here/kbraw.py" "$@"; }
# field of the JSON object kbraw printed: jget JSON 'expression on r'
jget() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
mgr_pid() { pidof_file "$STATE/manager.pid"; }
pidof_file() { head -n1 "$1" | tr -dc 0-9; }
# kB of the manager: VmRSS now, VmHWM the peak so far
vm() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$(mgr_pid)/status"; }
log_lines() { wc -l <"$STATE/manager.log"; }
mgr_alive() { kill -0 "$(mgr_pid)"; }
works() { # NODE: resolves a cluster name and fetches a page through its daemon
	[[ $(pg "$1" getent hosts web.default) == *10.96.1.1* ]] &&
		[[ $(pg "$1" curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
}

[[ -x $KB_BIN/kbridge && -x $KB_BIN/kbridged && -x $KB_BIN/kbridge-agent ]]
"$PG" up >/dev/null
alice connect --profile "$STATE/alice.json" >/dev/null
"$KB_BIN/kbridge-agent" issue --state-dir "$STATE/cluster" --name mallory \
	--out "$STATE/mallory.json" >/dev/null
bob connect --profile "$STATE/bob.json" >/dev/null
works ws
works bob
ok "playground up, alice and bob connected"

# --- 1. early data to an address that never answers
rss0=$(vm VmRSS)
lines0=$(log_lines)
out=$(raw --wait 30 "$STATE/mallory.json" streams 600 10.244.3.99:80 524288)
echo "  $out"
hwm=$(vm VmHWM)
echo "  manager VmRSS before ${rss0} kB, peak after ${hwm} kB"
[[ $(jget "$out" 'r["closed"]') == False && $(jget "$out" 'r["unanswered"]') == 0 ]]
[[ $(jget "$out" 'r["hello_early_data"]') == 65536 ]]
[[ $(jget "$out" 'r["resets"].get("6", 0)') -ge 500 ]]
[[ $(jget "$out" '[t for t in r["texts"] if "early data" in t][0]') == "more than 65536 bytes of early data" ]]
((hwm - rss0 < 64 * 1024))
mgr_alive
ok "600 streams x 512 KiB of early data: reset at 64 KiB each, manager grew $(((hwm - rss0) / 1024)) MiB (< 64)"

# --- 2. early data within the limit: connects in progress are capped
out=$(raw --wait 30 "$STATE/mallory.json" streams 600 10.244.3.99:80 60000)
echo "  $out"
hwm=$(vm VmHWM)
[[ $(jget "$out" 'r["closed"]') == False && $(jget "$out" 'r["unanswered"]') == 0 ]]
over=$(jget "$out" 'r["resets"].get("8", 0)')
[[ $over -ge 500 ]]
[[ $(jget "$out" '"\n".join(r["texts"])') == *"not tried: too many connections of this session being set up (limit 64)"* ]]
((hwm - rss0 < 64 * 1024))
ok "600 streams with 60 kB of early data each: $over reset at once (64 connects wait), peak +$(((hwm - rss0) / 1024)) MiB"

added=$(($(log_lines) - lines0))
echo "  manager log: $added new lines"; tail -n "$added" "$STATE/manager.log" | sed 's/^/  | /'
((added <= 8))
grep -q "closed: .*(refused: 600 streams with too much early data)" "$STATE/manager.log"
grep -q "closed: .*(refused: $over connects over the limit)" "$STATE/manager.log"
ok "the manager's log has $added lines for 1200 refused streams, with counts at session end"

# --- 3. a flood of lookups
lines0=$(log_lines)
hold=$STATE/flood
mkdir -p "$hold"
pg ws python3 "$here/kbraw.py" --wait 60 --hold "$hold" "$STATE/mallory.json" resolve 30000 \
	nosuch.default >"$STATE/flood.json" &
flood=$!
bg_pids+=($flood)
# The manager answers the flood (kbraw then keeps 30,000 in flight).
poll 100 test -e "$hold/started"
poll 10 grep -q "lookups in flight" "$STATE/manager.log"
t0=$(date +%s.%N)
works bob
t1=$(date +%s.%N)
touch "$hold/stop"
wait "$flood"
out=$(cat "$STATE/flood.json")
echo "  $(jget "$out" '{k: v for k, v in r.items() if k != "answers_per_tenth"}')"
# bob's lookup and fetch lie inside the flood, which the manager kept
# answering all along.
during=$(jget "$out" "sum(v for k, v in r['answers_per_tenth'].items() if $t0 * 10 <= int(k) + 1 and int(k) <= $t1 * 10)")
echo "  bob's lookup and fetch: $t0 .. $t1; flood answers meanwhile: $during"
python3 -c 'import sys; s, e, t0, t1 = map(float, sys.argv[1:]); assert s <= t0 < t1 <= e' \
	"$(jget "$out" 'r["flood_start"]')" "$(jget "$out" 'r["flood_end"]')" "$t0" "$t1"
((during >= 1000))
ok "while a flood of lookups from another session runs (started before, ended after), bob resolves and connects"
[[ $(jget "$out" 'r["closed"]') == False && $(jget "$out" 'r["unanswered"]') == 0 ]]
[[ $(jget "$out" 'r["sent"]') -ge 30000 ]]
[[ $(jget "$out" 'r["rcodes"].get("5", 0)') -ge 29000 ]]
works bob
works ws
added=$(($(log_lines) - lines0))
((added <= 4))
ok "every lookup answered, over 256 in flight refused at once (REFUSED); $added new log lines"

# --- 4. the manager's own addresses
lines0=$(log_lines)
for dst in 10.244.0.10:8080 10.244.0.10:8443; do
	out=$(raw --wait 10 "$STATE/mallory.json" dial "$dst")
	echo "  $out"
	[[ $(jget "$out" 'r["resets"].get("5", 0)') == 1 ]]
	[[ $(jget "$out" 'list(r["texts"])[0]') == "$dst is the kbridge manager's own address" ]]
done
rc=0; pg ws curl -sS -m 5 http://10.244.0.10:8080/ >/dev/null 2>&1 || rc=$?
[[ $rc -ne 0 && $rc -ne 28 ]]
rc=0; pg bob curl -sS -m 5 http://10.244.0.10:8080/ >/dev/null 2>&1 || rc=$?
[[ $rc -ne 0 && $rc -ne 28 ]]
poll 20 grep -q "10.244.0.10:8080 is the kbridge manager's own address" "$STATE/ws/kbridged.sock.log"
added=$(($(log_lines) - lines0))
((added <= 8))
ok "DIAL to the manager's own pod address is refused (reset, reason denied; curl fails at once; the daemon's log says why)"

works ws
works bob
mgr_alive
no grep -q "peer timed out" "$STATE/manager.log"
ok "alice and bob still work; no session timed out during the floods"

if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/ws/kbridged.sock.log "$STATE"/manager*.log
	ok "no sanitizer reports in the daemon and manager logs"
fi
echo "1..$n"
