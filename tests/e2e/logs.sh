#!/bin/bash
# kbridge logs, loglevel and gather-logs against the playground, with alice
# and bob connected:
#
#   kbridge logs [-f]      kbridged's log file (named by its status), dated lines
#   kbridge loglevel X     the running daemon's level, no restart
#   kbridge gather-logs    kbridged.log, manager.log (the manager's lines about
#                          alice only, fetched over her session), the sidecar's
#                          log of each workload she intercepts (through the
#                          manager), status.json, version.json in one .tar.gz
set -euo pipefail

KB_PG_PREFIX=kbl
FAIL_LOGS=(ws/kbridged.sock.log manager.log)
FAIL_LINES=30
. "$(dirname "$0")/common.bash"
tmp=$(mktemp -d /tmp/kblogs.$$.XXXXXX)
follow=
cleanup_extra() { [[ -z $follow ]] || kill "$follow" 2>/dev/null; rm -rf "$tmp"; }

kb() { QUIET=1 alice "$@"; }
# expect CODE CMD...: the exit code, stdout in $tmp/out, stderr in $tmp/err
expect() {
	local want=$1 rc=0
	shift
	"$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
	[[ $rc == "$want" ]] || { echo "exit $rc, wanted $want: $*" >&2; cat "$tmp/err" >&2; return 1; }
}
one_line() { [[ $(wc -l < "$tmp/err") == 1 ]]; }
iso='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z [a-z-]+\[(info|warn|debug|fatal)\] '
level() { kb status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon"]["log_level"])'; }

"$PG" up >/dev/null
kb connect --profile "$STATE/alice.json" >/dev/null
bob connect --profile "$STATE/bob.json" >/dev/null
ok "playground up; alice and bob connected"

# --- logs
expect 0 kb logs
grep -q 'kbridged\[info\] kbridged .* listening on' "$tmp/out"
[[ $(grep -cvE "$iso" "$tmp/out") == 0 ]]
[[ $(kb status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon"]["log"])') == "$STATE/ws/kbridged.sock.log" ]]
expect 0 kb logs --tail 2
[[ $(wc -l < "$tmp/out") == 2 && $(tail -n 2 "$STATE/ws/kbridged.sock.log") == "$(cat "$tmp/out")" ]]
expect 0 kb logs --tail 0; [[ ! -s $tmp/out ]]
ok "logs: the daemon's file (named in status), every line dated in ISO 8601 UTC; --tail"

# --- loglevel reaches the manager: debug lines about alice's own session,
# in her gather-logs manager.log, only while she asked; never bob's, never
# the manager's level (it logs no other debug line)
mgrlog() { # (the manager answers one "logs" of a session per 200 ms)
	sleep 0.25
	rm -rf "$tmp/kbridge-logs" "$tmp/m.tar.gz"
	TMPDIR=$tmp expect 0 kb gather-logs -o "$tmp/m.tar.gz"
	tar -C "$tmp" -xzf "$tmp/m.tar.gz"
}
lookups() { # lookups NAME: from alice's and bob's workstations (answered or not)
	pg ws getent hosts "$1.default" >/dev/null || true
	QUIET=1 pg bob getent hosts "$1.default" >/dev/null || true
}
m=$tmp/kbridge-logs/manager.log
lookups "dbg0-$$"
mgrlog
grep -qE 'session alice from .*: hello' "$m"
no grep -q '\[debug\]' "$m"
no grep -q '\[debug\]' "$STATE/manager.log"
expect 0 kb loglevel debug
lookups "dbg1-$$"
[[ $(pg ws curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
[[ $(QUIET=1 pg bob curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
mgrlog
grep -qE 'kbridge-agent\[info\] session alice from .*: its debug lines on \(kbridge loglevel\)' "$m"
grep -qE "kbridge-agent\[debug\] session alice: resolve dbg1-$$" "$m"
grep -qE 'kbridge-agent\[debug\] session alice: connected to 10\.96\.' "$m"
no grep -qw bob "$m"
[[ $(grep -cvE "$iso" "$m") == 0 ]]
# the manager's own log: debug lines about alice's session, none other
grep -qE "\[debug\] session alice: resolve dbg1-$$" "$STATE/manager.log"
[[ -z $(grep -E '\[debug\]' "$STATE/manager.log" | grep -v '\[debug\] session alice: ') ]]
expect 0 kb loglevel info
mark=$(wc -l < "$STATE/manager.log")
lookups "dbg2-$$"
mgrlog
grep -qE 'session alice from .*: its debug lines off' "$m"
no grep -q "dbg2-$$" "$m"
no grep -q '\[debug\]' <(tail -n +"$((mark + 1))" "$STATE/manager.log")
ok "loglevel debug: the manager's debug lines about alice's session in her manager.log, none about bob's; info: none"

# --- loglevel, seen by a follower
"$PG" exec ws -- "$KB_BIN/kbridge" logs -f --tail 0 >"$tmp/follow" 2>&1 &
follow=$!
sleep 0.5
[[ $(level) == info ]]
expect 0 kb loglevel debug
[[ $(cat "$tmp/out") == "kbridged logs at level debug from now on" && $(level) == debug ]]
pg ws getent hosts web.default >/dev/null
poll 50 grep -q 'kbridged\[debug\]' "$tmp/follow"
grep -q 'kbridged\[info\] log level debug' "$tmp/follow"
expect 0 kb loglevel info
[[ $(level) == info ]]
mark=$(wc -l < "$STATE/ws/kbridged.sock.log")
pg ws getent hosts web.default >/dev/null
sleep 0.3
no grep -q '\[debug\]' <(tail -n +"$((mark + 1))" "$STATE/ws/kbridged.sock.log")
kill "$follow"; wait "$follow" 2>/dev/null || true; follow=
[[ $(grep -cvE "$iso" "$tmp/follow") == 0 ]]
ok "loglevel debug|info at once without a restart (status shows it); logs -f follows"

expect 2 kb loglevel trace; one_line
expect 2 kb loglevel; one_line
expect 2 kb loglevel debug extra; one_line
expect 2 kb logs --tail x; one_line
expect 2 kb gather-logs; one_line
expect 2 kb gather-logs -o "$tmp/x.zip"; one_line
ok "bad arguments: one line, exit 2"

# --- gather-logs
TMPDIR=$tmp expect 0 kb gather-logs -o "$tmp/g.tar.gz"
[[ $(cat "$tmp/out") == "wrote $tmp/g.tar.gz" ]]
tar -C "$tmp" -xzf "$tmp/g.tar.gz"
[[ $(cd "$tmp/kbridge-logs" && ls | sort | tr '\n' ' ') == "kbridged.log manager.log status.json version.json " ]]
grep -q 'listening on' "$tmp/kbridge-logs/kbridged.log"
python3 - "$tmp/kbridge-logs" <<'PY'
import json, sys
d = sys.argv[1]
st = json.load(open(d + "/status.json"))
assert st["state"] == "connected" and st["user"] == "alice", st
v = json.load(open(d + "/version.json"))
assert v["kbridge"] and v["kbridged"]["version"] == v["kbridge"], v
PY
# The manager's lines about alice's session, none about bob's.
grep -qE 'kbridge-agent\[info\] session alice from .*: hello' "$tmp/kbridge-logs/manager.log"
no grep -qw bob "$tmp/kbridge-logs/manager.log"
[[ $(grep -cvE "$iso" "$tmp/kbridge-logs/manager.log") == 0 ]]
grep -qw bob "$STATE/manager.log"
ok "gather-logs: kbridged.log, manager.log (alice's lines, not bob's), status.json, version.json"

expect 1 kb gather-logs -o "$tmp/g.tar.gz"; one_line
grep -q 'exists' "$tmp/err"
[[ -z $(find "$tmp" -maxdepth 1 -name 'kbridge-gather.*') ]]
ok "gather-logs never replaces a file; its temporary directory is gone"

# A sidecar's log, for a workload alice intercepts; not for bob, who does not.
kb intercept web --port 8080 --http-header x-dev=alice >/dev/null 2>&1
# bob's header quotes alice: his line's text names her, yet it is his
QUIET=1 bob intercept api --port 8080 --http-header 'x-dev=bob for alice' >/dev/null 2>&1
[[ $(pg ws curl -sS -m 5 -H 'x-dev: nobody' http://web.default/) == "hello from web (cluster)" ]]
rm -rf "$tmp/kbridge-logs"
expect 0 kb gather-logs -o "$tmp/s.tar.gz"
tar -C "$tmp" -xzf "$tmp/s.tar.gz"
f=$tmp/kbridge-logs/sidecar-web.default-0.log
[[ -s $f ]]
grep -qE 'kbridge-sidecar\[info\] 1 intercept\(s\) on web.default' "$f"
[[ $(grep -cvE "$iso" "$f") == 0 ]]
[[ ! -e $tmp/kbridge-logs/sidecar-web.default-1.log ]]
[[ ! -e $tmp/kbridge-logs/sidecar-api.default-0.log ]]
grep -qE 'intercept [a-z0-9]+: alice intercepts web\.default' "$tmp/kbridge-logs/manager.log"
no grep -qw bob "$tmp/kbridge-logs/manager.log"
grep -qE 'intercept [a-z0-9]+: bob intercepts api\.default .*bob for alice' "$STATE/manager.log"
no grep -q 'for alice' "$tmp/kbridge-logs/manager.log"
sock=$STATE/bob/kbridged.sock
code=$(QUIET=1 pg bob curl -sS -o "$tmp/bob.json" -w '%{http_code}' --unix-socket "$sock" \
	-X POST -d '{"workload":"web","namespace":"default"}' http://kbridged/v1/sidecar-log)
[[ $code == 404 ]] && grep -q 'you have no intercept of web.default' "$tmp/bob.json"
code=$(QUIET=1 pg bob curl -sS -o "$tmp/bob.json" -w '%{http_code}' --unix-socket "$sock" \
	-X POST -d '{"workload":"web","namespace":"default","replica":64}' http://kbridged/v1/sidecar-log)
[[ $code == 400 ]]
ok "gather-logs: the sidecar's log of a workload alice intercepts, her intercept in the manager's lines (not bob's); bob gets 404 for hers"
kb leave web >/dev/null
QUIET=1 bob leave api >/dev/null

# Not connected: what can be had, and why the rest cannot.
kb quit >/dev/null
expect 0 kb gather-logs -o "$tmp/n.tar.gz"
rm -rf "$tmp/kbridge-logs"
tar -C "$tmp" -xzf "$tmp/n.tar.gz"
grep -q 'not connected' "$tmp/kbridge-logs/manager.log.missing"
grep -q '"not running"' "$tmp/kbridge-logs/status.json"
grep -q 'shutting down' "$tmp/kbridge-logs/kbridged.log"
ok "gather-logs without a daemon: its last log, status not running, manager.log.missing says why"

if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/ws/kbridged.sock.log \
		"$STATE"/bob/kbridged.sock.log "$STATE"/manager*.log "$STATE"/web/sidecar.log
	ok "no sanitizer reports in the daemons', manager's and web sidecar's logs"
fi
