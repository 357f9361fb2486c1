#!/bin/bash
# End-to-end test of the manager's intercept registry against the attacks of
# the hardening issue (points 2, 6 and 7), in the playground:
#
#   - a sidecar identity issued for echo.default that says it is web's sidecar
#     (or an old sidecar certificate bound to no workload) is refused: it gets
#     no intercept list, sets no protocol and no environment;
#   - the env file leaves out what would take over the developer's shell
#     (and says so); --env-all writes it;
#   - overlapping matches of different owners are refused naming the owner
#     ("/" is global); a request carrying x-kbridge-intercept-id is routed by
#     that id only;
#   - quit ends the daemon's intercepts at once (callers get the app, not 502);
#   - the same identity from a second workstation is refused unless
#     'connect --replace', and both workstations' status tell the truth;
#   - a daemon that says goaway (kbraw.py, a raw protocol peer, as bob) gets
#     the manager's goaway at once, a new stream is refused, its session ends
#     after the 2 s linger while a stream is open (at once with none), and
#     its identity is free at once: a second session of it is accepted while
#     the first still lingers.
#
# alice works in namespace ws, bob in bob. Every [[ ]] is an assertion (set -e).
set -euo pipefail

KB_PG_PREFIX=kbr
FAIL_LOGS=(ws/kbridged.sock.log bob/kbridged.sock.log manager.log web/sidecar.log echo/sidecar.log echo/impostor.log)
. "$(dirname "$0")/common.bash"
export KB_PG_GRACE=3
DEV=$here/devserver.py
AGENT=$KB_BIN/kbridge-agent
MGR=kbridge-manager.kbridge.svc.cluster.local:8443

get() { pg api curl -sS -m 10 "$@"; }
json() { python3 -c "import json,sys; j=json.load(sys.stdin); $1"; }
web_json() { alice list --output json | json "w=[x for x in j['workloads'] if x['name'] == 'web'][0]; $1"; }
my_id() { "$@" list --output json | json "print([i['id'] for w in j['workloads'] if w['name'] == 'web' for i in w['intercepts'] if i['mine']][0])"; }

cleanup_extra() { [[ -n ${imp:-} ]] && kill "$imp" 2>/dev/null; true; }

[[ -x $AGENT ]]
two_developers "$DEV"
ok "playground up; alice and bob connected, each with a local server on :8080"

# --- point 2: a sidecar identity for echo poses as web's sidecar
"$AGENT" issue --state-dir "$STATE/cluster" --sidecar --workload echo --namespace default \
	--name echo-2 --out "$STATE/echo-2.json" >/dev/null
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); open(sys.argv[2], "w").write(p["cert"])' \
	"$STATE/echo-2.json" "$STATE/echo-2.crt"
openssl x509 -in "$STATE/echo-2.crt" -noout -subject | grep -q "OU *= *echo.default"
alice intercept web --port 8080 --http-header x-dev=alice >/dev/null
"$PG" exec echo -- env -i PATH=/usr/bin:/bin SERVICE_NAME=evil EVIL_PATH=/tmp/evil "$AGENT" sidecar \
	--profile "$STATE/echo-2.json" --workload web --namespace default --listen 127.0.0.1:18081 \
	--app 127.0.0.1:7 --protocol tcp --manager "$MGR" >"$STATE/echo/impostor.log" 2>&1 &
imp=$!
poll 100 grep -q "is for workload echo.default, not web.default" "$STATE/manager.log"
grep -q "is for workload echo.default, not web.default" "$STATE/echo/impostor.log" ||
	poll 50 grep -q "is for workload echo.default, not web.default" "$STATE/echo/impostor.log"
kill "$imp"; wait "$imp" 2>/dev/null || true; imp=
no grep -q "intercept(s) on web.default" "$STATE/echo/impostor.log"
web_json "assert w['protocol'] == 'http' and w['replicas'] == 1, w"
[[ $(get -H 'x-dev: alice' http://web.default/h) == "alice local: GET /h" ]]
alice leave web >/dev/null
alice intercept web --port 8080 --http-header x-dev=alice --env-file "$STATE/a.env" >/dev/null
no grep -qE "evil|/tmp" "$STATE/a.env"
alice leave web >/dev/null
ok "a sidecar identity for echo.default saying workload web is refused: no intercept list, web stays http with one replica, no env"

# An old sidecar certificate (role sidecar, no workload) from the same CA.
ca=$STATE/cluster
openssl ecparam -name prime256v1 -genkey -noout -out "$STATE/old.key" 2>/dev/null
openssl req -new -key "$STATE/old.key" -subj "/O=kbridge-sidecar/CN=web.default" -out "$STATE/old.csr"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$STATE/old.ext"
openssl x509 -req -in "$STATE/old.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
	-days 1 -extfile "$STATE/old.ext" -out "$STATE/old.crt" 2>/dev/null
python3 - "$STATE/echo-2.json" "$STATE/old.crt" "$STATE/old.key" "$STATE/old.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["cert"], p["key"], p["name"] = open(sys.argv[2]).read(), open(sys.argv[3]).read(), "web.default"
open(sys.argv[4], "w").write(json.dumps(p))
EOF
chmod 600 "$STATE/old.json"
"$PG" exec web -- env -i PATH=/usr/bin:/bin "$AGENT" sidecar --profile "$STATE/old.json" --workload web \
	--namespace default --listen 127.0.0.1:18082 --app 127.0.0.1:80 --protocol tcp \
	--manager "$MGR" >"$STATE/web/old.log" 2>&1 &
imp=$!
poll 100 grep -q "sidecar certificate web.default is bound to no workload" "$STATE/manager.log"
kill "$imp"; wait "$imp" 2>/dev/null || true; imp=
web_json "assert w['protocol'] == 'http' and w['replicas'] == 1, w"
ok "an old sidecar certificate bound to no workload is refused, saying how to issue a bound one"

# --- the env file does not take over the developer's shell
alice intercept web --port 8080 --http-header x-dev=alice --env-file "$STATE/alice.env" --env-syntax sh >/dev/null 2>"$STATE/env.err"
grep -qx "SERVICE_NAME='web'" "$STATE/alice.env"
no grep -q '^LD_LIBRARY_PATH=' "$STATE/alice.env"
grep -q '^# left out (they would take over your own shell; --env-all writes them):.* LD_LIBRARY_PATH' "$STATE/alice.env"
grep -q 'left out .*LD_LIBRARY_PATH' "$STATE/env.err"
(set -a; . "$STATE/alice.env"; [[ $SERVICE_NAME == web && -z ${LD_LIBRARY_PATH:-} ]])
bob intercept web --port 8080 --http-header x-dev=bob --env-file "$STATE/bob.env" --env-all >/dev/null
grep -qx 'LD_LIBRARY_PATH=/opt/web/lib' "$STATE/bob.env"
no grep -q 'left out' "$STATE/bob.env"
ok "the env file leaves out LD_LIBRARY_PATH (and says so, in the file and on stderr); --env-all writes it"

# --- point 6: overlapping intercepts of different owners are refused
bob leave web >/dev/null
for m in "--http-path-prefix /" "--http-path-prefix /api" "--http-header x-env=staging" ""; do
	rc=0; bob intercept web --port 8080 $m 2>"$STATE/err" || rc=$?
	[[ $rc -eq 1 ]]
	grep -q "alice" "$STATE/err"
done
grep -q "already intercepted by alice" "$STATE/err"
bob list --output json | json "assert [i['owner'] for w in j['workloads'] if w['name'] == 'web' for i in w['intercepts']] == ['alice'], j"
ok "bob's --http-path-prefix / (global), /api, another header or nothing beside alice's header intercept are refused naming alice"

bob intercept web --port 8080 --http-header x-dev=bob >/dev/null
alice leave web >/dev/null
alice intercept web --port 8080 --http-header x-dev=alice >/dev/null
[[ $(get -H 'x-dev: alice' http://web.default/a) == "alice local: GET /a" ]]
[[ $(get -H 'x-dev: bob' http://web.default/b) == "bob local: GET /b" ]]
[[ $(get http://web.default/) == "hello from web (cluster)" ]]
ok "after alice re-made her intercept her requests still reach her (and bob's his)"

aid=$(my_id alice)
bid=$(my_id bob)
[[ $(get -H "x-kbridge-intercept-id: $aid" -H 'x-dev: bob' http://web.default/i) == "alice local: GET /i" ]]
[[ $(get -H "x-kbridge-intercept-id: $bid" -H 'x-dev: alice' http://web.default/j) == "bob local: GET /j" ]]
[[ $(get -H "x-kbridge-intercept-id: 0123456789abcdef01234567" -H 'x-dev: bob' http://web.default/) == "hello from web (cluster)" ]]
ok "a request carrying x-kbridge-intercept-id is routed by that id only (x-dev of the other developer changes nothing)"
bob leave web >/dev/null

# --- point 7: quit ends the intercepts at once
alice leave web >/dev/null
alice intercept web --port 8080 >/dev/null
[[ $(get http://web.default/g) == "alice local: GET /g" ]]
out=$(alice quit)
[[ $out == *"Ended intercept of web.default"* && $out == *"kbridged stopped"* ]]
[[ $(get http://web.default/) == "hello from web (cluster)" ]]
for _ in 1 2 3 4 5; do [[ $(get -o /dev/null -w '%{http_code}' http://web.default/) == 200 ]]; done
bob list --output json | json "assert not [i for w in j['workloads'] for i in w['intercepts']], j"
grep -q "left web.default (its daemon quit)" "$STATE/manager.log"
ok "alice quits with a global intercept: callers get the app at once (not 502), and quit says what ended"

# A SIGTERM is a deliberate stop too.
alice connect --profile "$STATE/alice.json" >/dev/null
alice intercept web --port 8080 >/dev/null
[[ $(get http://web.default/t) == "alice local: GET /t" ]]
pid=$(alice status --output json | json "print(j['daemon']['pid'])")
kill -TERM "$pid"
poll 50 bash -c "! kill -0 $pid"
[[ $(get http://web.default/) == "hello from web (cluster)" ]]
bob list --output json | json "assert not [i for w in j['workloads'] for i in w['intercepts']], j"
ok "alice's daemon stopped by SIGTERM with a global intercept: callers get the app at once, not 502"

# --- one session per identity: a second workstation
alice connect --profile "$STATE/alice.json" >/dev/null
alice intercept web --port 8080 --http-header x-dev=alice >/dev/null
bob quit >/dev/null
rc=0; QUIET=1 bob connect --profile "$STATE/alice.json" 2>"$STATE/err" || rc=$?
[[ $rc -eq 1 ]]
grep -qE "alice is already connected from [0-9.]+:[0-9]+.*connect --replace" "$STATE/err"
[[ $(alice status --output json | json "print(j['state'])") == connected ]]
[[ $(get -H 'x-dev: alice' http://web.default/s) == "alice local: GET /s" ]]
ok "the same identity from a second workstation is refused, naming the first's address ($(head -c 120 "$STATE/err"))"

bob connect --profile "$STATE/alice.json" --replace >/dev/null
[[ $(bob status --output json | json "print(j['state'], j['user'])") == "connected alice" ]]
poll 50 bash -c "[[ \$($PG exec ws -- $KB_BIN/kbridge status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])') == disconnected ]]"
rc=0; alice status --output json >"$STATE/st.json" || rc=$?
[[ $rc == 1 ]]
json "assert j['state'] == 'disconnected' and j['intercepts'] == [] and 'replaced by another session of alice from' in j['last_error'] and j.get('replaced_by'), j" <"$STATE/st.json"
[[ $(alice status) == *"replaced by another session from"* ]]
bob list --output json | json "assert not [i for w in j['workloads'] for i in w['intercepts']], j"
[[ $(get -H 'x-dev: alice' http://web.default/) == "hello from web (cluster)" ]]
sleep 2
[[ $(alice status --output json | json "print(j['state'])") == disconnected ]]
[[ $(bob status --output json | json "print(j['state'])") == connected ]]
ok "connect --replace takes over: the first workstation's status says it was replaced (and stays down), its intercepts ended; the second is connected"

# --- goaway: the manager answers with its own; the identity is free at once
out=$(pg bob python3 "$here/kbraw.py" --wait 8 "$STATE/bob.json" goaway 10.244.1.10:80)
echo "  $out" >&2
json "
r = j
assert r['accepted'] and r['goaway'] == 'goodbye' and r['t_goaway'] < 1.0, r
assert r['resets']['3'][0] == 7, r  # a stream opened after it: the session is going away
assert r['closed'] and 1.5 <= r['t_closed'] <= 4.0, r  # the 2 s linger, stream 1 open
assert r['second_hello'] and r['t_second_hello'] < r['t_closed'], r
assert r['second_goaway'] == 'goodbye' and r['second_closed'] and r['second_t_closed'] < 1.0, r
" <<<"$out"
grep -q "session bob from [0-9.]*:[0-9]* leaving: kbraw leaving" "$STATE/manager.log"
ok "goaway: the manager answers with its goaway at once, refuses a new stream, ends the session after its 2 s linger with a stream open (at once with none); a second session of the identity is accepted during the linger"

if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/*.log "$STATE"/*/*.log
	ok "no sanitizer reports in the daemon, manager and sidecar logs"
fi
echo "1..$n"
