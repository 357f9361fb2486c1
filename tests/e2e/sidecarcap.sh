#!/bin/bash
# The sidecar's cap on open connections per client address
# (--max-per-address), in the playground: a second sidecar of web in web's
# pod (its identity, the real manager, web's app on :80) listens on :18090
# with a cap of 4.
#
#   web pod: held.py, 7 idle connections from 127.0.0.1 --> :18090 sidecar --> app :80
#            a request from 10.244.1.10 (the pod's own address) --> :18090
#
# 1. Nothing intercepted (the sidecar joins each connection to the app): of 7
#    connections from one address the 3 over the cap are closed at once, the
#    4 others stay open; meanwhile a request from another address gets its
#    answer and one from the capped address does not; the sidecar logs one
#    line for the 3; once the 4 are closed, the address is served again.
# 2. The same with a header intercept (alice's): the connections go through
#    the HTTP proxy, which gives their places back when it closes them.
set -euo pipefail

KB_PG_PREFIX=kbs
FAIL_LOGS=(web/capped.log manager.log)
FAIL_LINES=30
. "$(dirname "$0")/common.bash"
AGENT=$KB_BIN/kbridge-agent
CAP=4
capped=
cleanup_extra() { [[ -n $capped ]] && kill "$capped" 2>/dev/null; true; }

[[ -x $AGENT ]]
"$PG" up >/dev/null
"$PG" exec web -- env -i PATH=/usr/bin:/bin "$AGENT" sidecar --profile "$STATE/web/sidecar.json" \
	--workload web --namespace default --listen 0.0.0.0:18090 --app 127.0.0.1:80 \
	--protocol http --manager kbridge-manager.kbridge.svc.cluster.local:8443 \
	--max-per-address "$CAP" >"$STATE/web/capped.log" 2>&1 &
capped=$!
poll 100 listening web 18090
poll 100 grep -q "registered web.default" "$STATE/web/capped.log"
ok "a second sidecar of web with --max-per-address $CAP listens on :18090"

# held.py N: N idle connections from 127.0.0.1; after 1 s which were closed
# by the sidecar; with them held, a request from 10.244.1.10 and one from
# 127.0.0.1; then all closed, and after 0.5 s a request from 127.0.0.1. One
# JSON object. Every socket operation is bounded (5 s).
held() {
	pg web python3 - "$1" "${2:-}" <<'EOF'
import json, select, socket, sys, time
n, header = int(sys.argv[1]), sys.argv[2]

def get(src):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.bind((src, 0))
        s.connect((src, 18090))
        req = "GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n"
        if header:
            req += header + "\r\n"
        s.sendall((req + "\r\n").encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        return data.decode(errors="replace").split("\r\n")[0] if data else "closed"
    except OSError as e:
        return "error: %s" % e
    finally:
        s.close()

conns = []
for _ in range(n):
    s = socket.socket()
    s.settimeout(5)
    s.bind(("127.0.0.1", 0))
    s.connect(("127.0.0.1", 18090))
    s.setblocking(False)
    conns.append(s)
time.sleep(1)
closed = []
for i, s in enumerate(conns):
    if select.select([s], [], [], 0)[0]:
        try:
            b = s.recv(1)
        except OSError:
            b = b""
        if not b:
            closed.append(i)
res = {"closed": closed, "other": get("10.244.1.10"), "same": get("127.0.0.1")}
for s in conns:
    s.close()
time.sleep(0.5)
res["after"] = get("127.0.0.1")
print(json.dumps(res))
EOF
}
check() { # JSON: the 3 over the cap closed, the others served, the address again after
	python3 -c '
import json, sys
r = json.loads(sys.argv[1]); cap = int(sys.argv[2])
assert r["closed"] == list(range(cap, cap + 3)), r
assert r["other"] == "HTTP/1.1 200 OK", r
assert r["same"] in ("closed",) or r["same"].startswith("error"), r
assert r["after"] == "HTTP/1.1 200 OK", r' "$1" "$CAP"
}
logged() { grep -c "sidecar listener: 127.0.0.1 has $CAP connections open already (--max-per-address): closed a new one" "$STATE/web/capped.log" || true; }

r=$(held $((CAP + 3)))
echo "  $r" >&2
check "$r"
[[ $(logged) == 1 ]]
ok "no intercept: $((CAP + 3)) connections from one address, the 3 over the cap closed at once, the $CAP others held; another address served meanwhile; one log line; the address served again once they close"

"$PG" exec ws -- python3 "$here/devserver.py" alice 8080 >/dev/null 2>&1 &
pg ws "$KB_BIN/kbridge" connect --profile "$STATE/alice.json" >/dev/null
poll 50 listening ws 8080
pg ws "$KB_BIN/kbridge" intercept web --port 8080 --http-header x-dev=alice >/dev/null
poll 100 grep -q "1 intercept(s) on web.default" "$STATE/web/capped.log"
r=$(held $((CAP + 3)))
echo "  $r" >&2
check "$r"
r=$(held 0 "x-dev: alice")
[[ $r == *'"other": "HTTP/1.1 200 OK"'* ]]
[[ $(pg web curl -sS -m 10 -H 'x-dev: alice' http://127.0.0.1:18090/i) == "alice local: GET /i" ]]
ok "with a header intercept (HTTP proxy): the same, and the intercept still answers through the capped sidecar"

kill "$capped"; wait "$capped" 2>/dev/null || true; capped=
if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE/web/capped.log"
	ok "no sanitizer reports in the capped sidecar's log"
fi
echo "1..$n"
