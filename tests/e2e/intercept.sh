#!/bin/bash
# End-to-end test of `kbridge intercept` in the playground:
#
#   api pod (a caller in the cluster)
#      | web.default:80 -> node DNAT -> web pod :8081 = sidecar --+--> nginx :80 (the app)
#      |                                                          +--> manager --TLS--> alice's kbridged
#      |                                                          |                   -> 127.0.0.1:8080 (devserver)
#      |                                                          +--> manager --TLS--> bob's kbridged
#      |                                                                              -> 127.0.0.1:8080 (devserver)
#      | echo.default:7 -> echo pod :8007 = sidecar (tcp) -> socat echo :7, or a workstation
#
# alice works in namespace ws, bob in namespace bob: two workstations, two
# identities. Every [[ ]] is an assertion (set -e).
set -euo pipefail

KB_PG_PREFIX=kbi
FAIL_LOGS=(ws/kbridged.sock.log bob/kbridged.sock.log manager.log web/sidecar.log echo/sidecar.log)
. "$(dirname "$0")/common.bash"
export KB_PG_GRACE=3
DEV=$here/devserver.py

caller() { pg api "$@"; } # a workload in the cluster calling others
get() { caller curl -sS -m 10 "$@"; }

[[ -x $KB_BIN/kbridge-agent ]]
two_developers "$DEV"
ok "playground up; alice and bob connected, each with a local server on :8080"

out=$(alice list)
[[ $out == *web*default*http* && $out == *echo*default*tcp* && $out == *cart*shop*http* ]]
alice list --output json | python3 -c 'import json,sys; w={x["name"]: x for x in json.load(sys.stdin)["workloads"]}; assert w["web"]["protocol"] == "http" and w["web"]["intercepts"] == [], w'
ok "list shows the interceptable workloads (text and JSON)"

[[ $(get http://web.default/) == "hello from web (cluster)" ]]
ok "without intercepts the app answers through the sidecar"

# --- two developers, one service, header intercepts
alice intercept web --port 8080 --http-header x-dev=alice --env-file "$STATE/alice.env" >/dev/null
bob intercept web --port 8080 --http-header x-dev=bob >/dev/null
[[ $(get -H 'x-dev: alice' http://web.default/hi) == "alice local: GET /hi" ]]
[[ $(get -H 'x-dev: bob' http://web.default/hi) == "bob local: GET /hi" ]]
[[ $(get http://web.default/) == "hello from web (cluster)" ]]
[[ $(get -H 'x-dev: carol' http://web.default/) == "hello from web (cluster)" ]]
ok "alice's header reaches alice, bob's reaches bob, everything else the app"

# A client that closes is told so (the proxy closes after the response).
get -D - -o /dev/null -H 'Connection: close' http://web.default/ | grep -qix $'connection: close\r'
ok "a Connection: close request gets Connection: close back"

caller python3 - <<'EOF'
import http.client
c = http.client.HTTPConnection("web.default", 80, timeout=10)
seen = []
for hdr, want in [({"x-dev": "alice"}, "alice local: GET /"), ({}, "hello from web (cluster)"),
                  ({"x-dev": "bob"}, "bob local: GET /"), ({"x-dev": "alice"}, "alice local: GET /"),
                  ({}, "hello from web (cluster)")]:
    c.request("GET", "/", headers=hdr)
    r = c.getresponse()
    body = r.read().decode().strip()
    assert body == want, (hdr, body, want)
    seen.append(c.sock)
assert all(s is seen[0] for s in seen), "the connection was not kept alive"
EOF
ok "alice, bob and the app interleaved on one keep-alive connection"

[[ $(stat -c %a "$STATE/alice.env") == 600 ]]
grep -qx 'SERVICE_NAME=web' "$STATE/alice.env"
grep -qx 'DATABASE_URL=postgres://db.default.svc.cluster.local:5432/web' "$STATE/alice.env"
no grep -q '^PATH=' "$STATE/alice.env"
grep -qx 'GREETING=hello world' "$STATE/alice.env"
ok "--env-file writes the workload's environment (mode 600, docker syntax)"

id=$(alice list --output json | python3 -c 'import json,sys; print([i["id"] for w in json.load(sys.stdin)["workloads"] for i in w["intercepts"] if i["mine"]][0])')
[[ $(get -H "x-kbridge-intercept-id: $id" http://web.default/byid) == "alice local: GET /byid" ]]
out=$(alice list)
[[ $out == *"alice* (x-dev: alice; id $id)"* && $out == *"bob (x-dev: bob"* ]]
[[ $(alice status) == *"intercepts:      web.default -> localhost:8080"* ]]
alice status --output json | python3 -c "import json,sys; i=json.load(sys.stdin)['intercepts']; assert i == [{'workload': 'web', 'namespace': 'default', 'id': '$id', 'port': 8080, 'address': 'localhost'}], i"
ok "x-kbridge-intercept-id routes to the intercept; list names owners, matches and ids; status shows ours"

# --- conflicts
rc=0; bob intercept web --port 8080 --http-header x-dev=alice 2>"$STATE/err" || rc=$?
[[ $rc -eq 1 ]]
grep -q "intercept failed:.*already intercept" "$STATE/err"
rc=0; bob intercept web -n default --port 8080 2>"$STATE/err" || rc=$?
[[ $rc -eq 1 ]]
grep -q "alice" "$STATE/err"
ok "conflicting intercepts are refused, naming the owner"

rc=0; QUIET=1 alice intercept api --port 8080 --http-header $'x-dev=a\rb' 2>"$STATE/err" || rc=$?
[[ $rc -eq 2 ]]
grep -q "CR or LF" "$STATE/err"
ok "a header value with CR or LF is refused by the CLI"

# The same requests on the daemon's socket without the CLI: the daemon checks
# every field itself (proto/api.c) and relays none of them. A control
# character or a \u0000 (which cut the value to "a") used to reach the manager,
# which made the intercept.
api() { # api PATH JSON: the HTTP code; the answer in $STATE/api.out
	pg ws sh -c 'curl -sS -m 10 -o "$1" -w "%{http_code}" --unix-socket "$KBRIDGE_SOCKET" \
	    -X POST --data-binary "$2" "http://kbridged$3"' sh "$STATE/api.out" "$2" "$1"
}
for v in 'a\r\nx-evil: 1' 'a\u0001b' 'a\u0000\r\nx-evil: 1' ' a'; do
	[[ $(api /v1/intercept "{\"workload\":\"api\",\"port\":8080,\"headers\":[{\"name\":\"x-dev\",\"value\":\"$v\"}]}") == 400 ]]
	python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert "headers[0].value" in e or "NUL" in e, e' "$STATE/api.out"
done
[[ $(api /v1/intercept '{"workload":"api","port":8080,"headers":[{"name":"x-dev","value":"a","extra":"b"}]}') == 400 ]]
[[ $(api /v1/intercept '{"workload":"api","port":8080,"resume":"0123"}') == 400 ]]
grep -q 'unknown field \\"resume\\"' "$STATE/api.out"
[[ $(api /v1/intercept '{"workload":"api.default","port":8080}') == 400 ]]
[[ $(api /v1/intercept '{"workload":"api","port":8080.5}') == 400 ]]
[[ $(api /v1/leave '{"workload":"api","namespace":"Bad"}') == 400 ]]
[[ $(alice list --output json | python3 -c 'import json,sys; print(sum(len(x["intercepts"]) for x in json.load(sys.stdin)["workloads"] if x["name"] == "api"))') == 0 ]]
ok "the daemon refuses bad fields on its raw API with 400 and relays none"

# --- bodies, upgrades, errors
head -c $((100 * 1024 * 1024)) /dev/urandom >"$STATE/up.bin"
want=$(sha256sum <"$STATE/up.bin" | cut -d' ' -f1)
got=$(caller curl -sS -m 120 -H 'x-dev: alice' -H 'Transfer-Encoding: chunked' --data-binary @"$STATE/up.bin" http://web.default/upload)
[[ $got == "$want" ]]
ok "100 MiB chunked upload through an intercept arrives byte-identical"

got=$(caller curl -sS -m 120 -H 'x-dev: alice' "http://web.default/big?n=$((100 * 1024 * 1024))" | sha256sum | cut -d' ' -f1)
want=$(python3 -c 'import hashlib; p=bytes(range(256))*256; h=hashlib.sha256(); [h.update(p) for _ in range(1600)]; print(h.hexdigest())')
[[ $got == "$want" ]]
ok "100 MiB download through an intercept is byte-identical"

[[ $(caller python3 "$DEV" wsclient web.default 80 /ws hello x-dev:alice) == "echo: hello" ]]
ok "a WebSocket echo works through an intercept"

# (A line that is not HTTP/1 at all goes to the app untouched: h2pass.sh.)
out=$(caller bash -c 'printf "GET / HTTP/1.1\r\nHost: web\r\nBad Header: x\r\n\r\n" | socat -t 3 - TCP:web.default:80')
[[ $(sed -n 1p <<<"$out") == *" 400 "* && $out == *"kbridge: malformed HTTP request"* ]]
[[ $(get http://web.default/) == "hello from web (cluster)" ]]
ok "malformed HTTP gets 400; other connections continue"

big=$(python3 -c 'print("x" * 70000)')
code=$(caller curl -sS -m 10 -o /dev/null -w '%{http_code}' -H "x-big: $big" http://web.default/)
[[ $code == 431 ]]
ok "a header block over 64 KiB gets 431"

# --- path prefix, leave, global (alice's header intercept would overlap bob's prefix)
bob leave web >/dev/null
alice leave web >/dev/null
bob intercept web --port 8080 --http-path-prefix /api >/dev/null
[[ $(get http://web.default/api/x) == "bob local: GET /api/x" ]]
[[ $(get http://web.default/other) != *"bob local"* ]]
bid=$(bob list --output json | python3 -c 'import json,sys; print([i["id"] for w in json.load(sys.stdin)["workloads"] for i in w["intercepts"] if i["mine"]][0])')
[[ $(get -H "x-kbridge-intercept-id: $bid" http://web.default/) == "hello from web (cluster)" ]]
[[ $(get -H "x-kbridge-intercept-id: $bid" http://web.default/api/y) == "bob local: GET /api/y" ]]
ok "path-prefix intercept (its id header routes only within the prefix)"
bob leave web >/dev/null
[[ $(get http://web.default/api/x) != *"bob local"* ]]
ok "leave ends the intercept at once"

alice intercept web --port 8080 >/dev/null
[[ $(get http://web.default/anything) == "alice local: GET /anything" ]]
rc=0; bob intercept web --port 8080 --http-header x-dev=bob 2>"$STATE/err" || rc=$?
[[ $rc -eq 1 ]]
grep -q "alice" "$STATE/err"
alice leave web >/dev/null
ok "global HTTP intercept takes all requests and excludes others"

# --- TCP workload
pg ws socat TCP-LISTEN:9999,fork,reuseaddr SYSTEM:'echo from-alice; cat' >/dev/null 2>&1 &
poll 50 listening ws 9999
alice intercept echo --port 9999 >/dev/null
[[ $(echo ping | caller socat -t 3 - TCP:echo.default:7 | sed -n 1p) == "from-alice" ]]
alice leave echo >/dev/null
[[ $(echo ping | caller socat -t 3 - TCP:echo.default:7) == "ping" ]]
ok "global intercept of a TCP workload, and back"

# --- the local port is closed: 502, no hang
alice intercept web --port 8089 --http-header x-dev=alice >/dev/null
code=$(caller curl -sS -m 10 -o "$STATE/body" -w '%{http_code}' -H 'x-dev: alice' http://web.default/)
[[ $code == 502 ]]
grep -q "localhost:8089 (127.0.0.1 and ::1)" "$STATE/body"
ok "a request to a workstation whose local port is closed gets 502 ($(head -c 80 "$STATE/body"))"
alice leave web >/dev/null

# --- the manager restarts: sidecars register again, daemons make their intercepts again
alice intercept web --port 8080 --http-header x-dev=alice --http-path-prefix /r >/dev/null
[[ $(get -H 'x-dev: alice' http://web.default/r1) == "alice local: GET /r1" ]]
old=$(alice list --output json | python3 -c 'import json,sys; print([i["id"] for w in json.load(sys.stdin)["workloads"] for i in w["intercepts"] if i["mine"]][0])')
"$PG" restart-manager >/dev/null
poll 100 bash -c "[[ \$($PG exec api curl -sS -m 2 -H 'x-dev: alice' http://web.default/r2) == 'alice local: GET /r2' ]]"
[[ $(get -H 'x-dev: alice' http://web.default/) == "hello from web (cluster)" ]]
new=$(alice list --output json | python3 -c 'import json,sys; print([i["id"] for w in json.load(sys.stdin)["workloads"] for i in w["intercepts"] if i["mine"]][0])')
[[ $new == "$old" ]]
grep -q "made again on the restarted manager" "$STATE/ws/kbridged.sock.log"
alice leave web >/dev/null
ok "after a manager restart the sidecar registers again and alice's intercept (header and path) is made again, under its id"

# --- the owner's daemon dies: released after the grace period
alice intercept web --port 8080 --http-header x-dev=alice >/dev/null
pid=$(alice status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon"]["pid"])')
kill -9 "$pid"
poll 100 bash -c "$PG exec ws -- $KB_BIN/kbridge list 2>/dev/null; ! $PG exec bob -- $KB_BIN/kbridge list | grep -q alice"
[[ $(get -H 'x-dev: alice' http://web.default/) == "hello from web (cluster)" ]]
ok "killing the owner's daemon releases its intercepts after the grace period"

if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/*.log "$STATE"/*/*.log
	ok "no sanitizer reports in the daemon, manager and sidecar logs"
fi
echo "1..$n"
