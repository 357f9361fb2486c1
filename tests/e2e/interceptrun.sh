#!/bin/bash
# End-to-end test of what the first hour with kbridge needs, in the
# playground (alice's workstation ws, the web and echo workloads):
#
#   kbridge intercept web --port 8080 -- CMD   CMD runs with web's environment,
#                                              the intercept ends with it, its
#                                              status (or 128+signal) is ours
#   --env-file --env-syntax docker|sh|json, --env-json
#   --address ::1, localhost (127.0.0.1, then ::1), the not-listening warning
#
# Every [[ ]] is an assertion (set -e).
set -euo pipefail

KB_PG_PREFIX=kbr
FAIL_LOGS=(ws/kbridged.sock.log manager.log web/sidecar.log echo/sidecar.log)
. "$(dirname "$0")/common.bash"
DEV=$here/devserver.py
run_pid=
cleanup_extra() { [[ -z $run_pid ]] || kill "$run_pid" 2>/dev/null || true; }

get() { pg api curl -sS -m 10 "$@"; }
mine() { # how many intercepts alice's daemon has
	alice status --output json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["intercepts"]))'
}

"$PG" up >/dev/null
alice connect --profile "$STATE/alice.json" >/dev/null
"$PG" exec ws -- python3 "$DEV" alice 8080 >/dev/null 2>&1 &
poll 50 listening ws 8080
ok "playground up, alice connected with a local server on :8080"

# --- -- CMD: the environment, the intercept while it runs, its exit status
rc=0
out=$(alice intercept web --port 8080 --http-header x-dev=alice -- sh -c '
	echo "$GREETING|$SERVICE_NAME|${LD_LIBRARY_PATH-unset}|$MINE"
	"$0" status | grep -c "intercepts: *web.default -> localhost:8080"
	exit 3' "$KB_BIN/kbridge" 2>"$STATE/run.err") || rc=$?
cat "$STATE/run.err" >&2
[[ $rc == 3 ]]
[[ $out == "hello world|web|unset|"$'\n'1 ]]
grep -q "Intercepting web.default" "$STATE/run.err"
grep -q "left out LD_LIBRARY_PATH" "$STATE/run.err"
[[ $(mine) == 0 ]]
[[ $(get -H 'x-dev: alice' http://web.default/) == "hello from web (cluster)" ]]
ok "intercept -- CMD: CMD gets the workload's environment (GREETING='hello world', not LD_LIBRARY_PATH), the intercept while it runs, exit 3 is kbridge's, the intercept is gone after"

out=$(alice intercept web --port 8080 --env-all -- sh -c 'echo "$LD_LIBRARY_PATH"' 2>/dev/null)
[[ $out == /opt/web/lib ]]
[[ $(mine) == 0 ]]
ok "--env-all gives CMD those variables too"

rc=0; alice intercept web --port 8080 -- /nonexistent/cmd 2>"$STATE/run.err" || rc=$?
[[ $rc == 127 ]]
grep -q "cannot run /nonexistent/cmd" "$STATE/run.err"
[[ $(mine) == 0 ]]
rc=0; QUIET=1 alice intercept web --port 8080 -- 2>"$STATE/run.err" || rc=$?
[[ $rc == 2 && $(wc -l <"$STATE/run.err") == 1 ]]
ok "a command that cannot run: 127, the intercept is left; '--' alone is a usage error"

# --- signals: kbridge passes SIGINT/SIGTERM on, waits for CMD, leaves
# start CMD...: kbridge intercept echo -- CMD in ws, in the background; its
# pid in run_pid, CMD's output in run.out, kbridge's exit status in run.rc
start() {
	rm -f "$STATE/run.rc" "$STATE/run.out"
	"$PG" exec ws -- sh -c 'f=$1; shift; "$0" intercept echo --port 9999 -- "$@" >"$f.out" 2>"$f.err" &
		echo $! >"$f.pid"; wait $!; echo $? >"$f.rc"' "$KB_BIN/kbridge" "$STATE/run" "$@" &
	run_pid=$!
	poll 100 grep -q started "$STATE/run.out"
}
start sh -c 'trap "echo got-INT; exit 5" INT; echo started; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done'
[[ $(mine) == 1 ]]
kill -INT "$(cat "$STATE/run.pid")"
poll 100 test -s "$STATE/run.rc"
wait "$run_pid"; run_pid=
[[ $(cat "$STATE/run.rc") == 5 ]]
[[ $(grep -c got-INT "$STATE/run.out") == 1 ]]
no grep -q "nothing listens" "$STATE/run.err"
[[ $(mine) == 0 ]]
ok "SIGINT to kbridge reaches CMD once; kbridge waits, leaves, exits with CMD's 5"

start sh -c 'echo started; exec sleep 30'
kill -TERM "$(cat "$STATE/run.pid")"
poll 100 test -s "$STATE/run.rc"
wait "$run_pid"; run_pid=
[[ $(cat "$STATE/run.rc") == 143 ]]
[[ $(mine) == 0 ]]
ok "SIGTERM to kbridge kills CMD by it: exit 128+15, the intercept is left"

# --- --env-file syntaxes and --env-json: nothing dropped silently
alice intercept web --port 8080 --env-file "$STATE/d.env" --env-json "$STATE/e.json" >"$STATE/out" 2>"$STATE/err"
grep -qx 'GREETING=hello world' "$STATE/d.env"
grep -q "environment written to $STATE/e.json (4 variables, JSON)" "$STATE/out"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); assert e["GREETING"] == "hello world" and e["SERVICE_NAME"] == "web" and "LD_LIBRARY_PATH" not in e, e' "$STATE/e.json"
[[ $(stat -c %a "$STATE/e.json") == 600 ]]
no grep -q "not written" "$STATE/err"
alice leave web >/dev/null
alice intercept web --port 8080 --env-file "$STATE/s.env" --env-syntax sh >/dev/null
grep -qx "GREETING='hello world'" "$STATE/s.env"
(set -a; . "$STATE/s.env"; [[ $GREETING == "hello world" && $SERVICE_NAME == web ]])
alice leave web >/dev/null
rc=0; alice intercept web --port 8080 --env-syntax yaml --env-file x 2>"$STATE/err" || rc=$?
[[ $rc == 2 ]] && grep -q "docker, sh or json" "$STATE/err"
ok "--env-file writes GREETING=hello world (docker), GREETING='hello world' (sh, sourced back); --env-json a JSON object"

# --- where the local app listens: --address, localhost is 127.0.0.1 and ::1
pg ws ip -6 addr show dev lo | grep -q '::1/128'
pg ws socat TCP6-LISTEN:9998,bind=[::1],fork,reuseaddr SYSTEM:'echo from-v6; cat' >/dev/null 2>&1 &
poll 50 listening ws 9998
alice intercept echo --port 9998 >"$STATE/out" 2>"$STATE/err"
grep -q "all connections go to localhost:9998" "$STATE/out"
no grep -q "nothing listens" "$STATE/err"
[[ $(echo ping | pg api socat -t 3 - TCP:echo.default:7 | sed -n 1p) == "from-v6" ]]
alice leave echo >/dev/null
alice intercept echo --port 9998 --address ::1 >"$STATE/out" 2>"$STATE/err"
grep -q "all connections go to \[::1\]:9998" "$STATE/out"
[[ $(alice status) == *"echo.default -> [::1]:9998"* ]]
[[ $(echo ping | pg api socat -t 3 - TCP:echo.default:7 | sed -n 1p) == "from-v6" ]]
alice leave echo >/dev/null
ok "a local app on ::1 only gets the traffic by default (localhost: 127.0.0.1, then ::1) and with --address ::1"

QUIET=1 alice intercept echo --port 9998 --address 127.0.0.1 >/dev/null 2>"$STATE/err"
[[ $(cat "$STATE/err") == "kbridge: warning: nothing listens on 127.0.0.1:9998 yet: intercepted traffic fails until something does" ]]
[[ $(echo ping | pg api socat -t 3 - TCP:echo.default:7 | sed -n 1p) != "from-v6" ]]
alice leave echo >/dev/null
alice intercept web --port 8089 --http-header x-dev=alice >/dev/null 2>"$STATE/err"
grep -qx "kbridge: warning: nothing listens on localhost:8089 (127.0.0.1 or ::1) yet: intercepted traffic fails until something does" "$STATE/err"
[[ $(mine) == 1 ]]
code=$(pg api curl -sS -m 10 -o "$STATE/body" -w '%{http_code}' -H 'x-dev: alice' http://web.default/)
[[ $code == 502 ]] && grep -q "localhost:8089 (127.0.0.1 and ::1)" "$STATE/body"
alice leave web >/dev/null
ok "nothing listening: one warning line at intercept time (the intercept is made), 502 naming the address"

rc=0; QUIET=1 alice intercept web --port 8080 --address example.com 2>"$STATE/err" || rc=$?
[[ $rc == 2 && $(wc -l <"$STATE/err") == 1 ]] && grep -q "localhost or an IPv4 or IPv6" "$STATE/err"
api() { # api PATH JSON: the HTTP code; the answer in $STATE/api.out
	pg ws sh -c 'curl -sS -m 10 -o "$1" -w "%{http_code}" --unix-socket "$KBRIDGE_SOCKET" \
	    -X POST --data-binary "$2" "http://kbridged$3"' sh "$STATE/api.out" "$2" "$1"
}
for v in '"0.0.0.0"' '"::"' '"224.0.0.1"' '"example.com"' '"127.0.0.1:80"' '7'; do
	[[ $(api /v1/intercept "{\"workload\":\"web\",\"port\":8080,\"address\":$v}") == 400 ]]
	grep -q address "$STATE/api.out"
done
[[ $(mine) == 0 ]]
ok "--address other than localhost or an IP address is refused by the CLI (2) and by the daemon's API (400)"

alice status >/dev/null
alice version -o json | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["kbridged"]["pid"] > 0 and j["kbridged"]["version"] == j["kbridge"], j'
alice quit >/dev/null
rc=0; alice status >/dev/null || rc=$?
[[ $rc == 1 ]]
ok "status exits 0 while connected, 1 once kbridged quit; version -o json names the running kbridged"

if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/*.log "$STATE"/*/*.log
	ok "no sanitizer reports"
fi
echo "1..$n"
