#!/bin/bash
# End-to-end test: what is not HTTP/1 passes through a sidecar that holds a
# header intercept, untouched, to the app (HTTP/2 prior knowledge is routed
# per stream instead: here its streams without alice's header reach the
# h2c app; tests/e2e/h2route.sh tests the routing itself):
#
#   api pod (a caller in the cluster)
#      | web.default:80 -> web pod :8081 = sidecar --+--> nginx :80 (HTTP/1 app)
#      |                                             +--> manager --> alice (x-dev: alice)
#      | 10.244.1.10:8082 -> web pod :8082 = sidecar2 --+--> nginx 127.0.0.1:81 (h2c app)
#      |                                                +--> manager --> alice (x-dev: alice)
#
# sidecar2 is a second replica of workload web, started here, whose app
# speaks HTTP/2 without TLS (prior knowledge, as gRPC clients do): the
# playground's nginx (1.22) cannot serve h2c and HTTP/1 on one port, and
# the web service's app must stay HTTP/1 for the other tests. Every [[ ]]
# is an assertion (set -e).
set -euo pipefail

KB_PG_PREFIX=kbh
FAIL_LOGS=(ws/kbridged.sock.log manager.log web/sidecar.log web/sidecar2.log web/h2c-error.log)
. "$(dirname "$0")/common.bash"
DEV=$here/devserver.py
POD=10.244.1.10

caller() { pg api "$@"; }
get() { caller curl -sS -m 10 "$@"; }
passed() { grep -c "connection is not HTTP/1 ($2): passed to the app untouched" "$STATE/web/$1.log" || true; }
routed() { grep -c "HTTP/2 connection (prior knowledge): routed per stream" "$STATE/web/$1.log" || true; }

cleanup_extra() { kill_pidfiles "$STATE/web/sidecar2.pid" "$STATE/web/h2c.pid"; }

[[ -x $KB_BIN/kbridge-agent ]]
# No skip: without nginx's HTTP/2 module or curl's, this test cannot check anything.
nginx -V 2>&1 | grep -q -- --with-http_v2_module
curl --version | grep -qw HTTP2

"$PG" up >/dev/null
alice connect --profile "$STATE/alice.json" >/dev/null
"$PG" exec ws -- python3 "$DEV" alice 8080 >/dev/null 2>&1 &
poll 50 listening ws 8080

# The h2c app and a second sidecar for web in front of it.
d=$STATE/web/h2c
mkdir -p "$d"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$d/big.bin"
cat >"$d/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon on;
pid $STATE/web/h2c.pid;
error_log $STATE/web/h2c-error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $d/body;
	proxy_temp_path $d/proxy;
	fastcgi_temp_path $d/fastcgi;
	uwsgi_temp_path $d/uwsgi;
	scgi_temp_path $d/scgi;
	server {
		listen 127.0.0.1:81 http2;
		location / { default_type text/plain; return 200 "hello over h2c"; }
		location = /big.bin { alias $d/big.bin; }
	}
}
EOF
pg web nginx -p "$d/" -c "$d/nginx.conf" -e "$STATE/web/h2c-error.log"
"$KB_BIN/kbridge-agent" issue --state-dir "$STATE/cluster" --name web2.default --sidecar \
	--workload web --namespace default \
	--out "$STATE/web/sidecar2.json" >/dev/null
"$PG" exec web -- "$KB_BIN/kbridge-agent" sidecar --profile "$STATE/web/sidecar2.json" \
	--workload web --namespace default --listen 0.0.0.0:8082 --app 127.0.0.1:81 \
	--manager kbridge-manager.kbridge.svc.cluster.local:8443 >"$STATE/web/sidecar2.log" 2>&1 &
echo $! >"$STATE/web/sidecar2.pid"
poll 50 listening web 8082
poll 50 grep -q "registered web.default" "$STATE/web/sidecar2.log"
[[ $(caller curl -sS -m 10 --http2-prior-knowledge -w ' %{http_version}' "http://$POD:8082/") == "hello over h2c 2" ]]
ok "two sidecars for web; without intercepts HTTP/2 prior knowledge reaches the h2c app"

alice intercept web --port 8080 --http-header x-dev=alice >/dev/null
poll 50 grep -q "1 intercept(s) on web.default" "$STATE/web/sidecar2.log"
[[ $(get -H 'x-dev: alice' "http://$POD:8082/hi") == "alice local: GET /hi" ]]
[[ $(get -H 'x-dev: alice' http://web.default/hi) == "alice local: GET /hi" ]]
[[ $(get http://web.default/) == "hello from web (cluster)" ]]
ok "alice's header intercept is active on both sidecars"

# --- A: HTTP/2 prior knowledge while alice intercepts (it got 400 before;
# now each stream is routed: these carry no header, so the app gets them)
for i in 1 2 3; do
	[[ $(caller curl -sS -m 10 --http2-prior-knowledge -w ' %{http_version}' "http://$POD:8082/x$i") == "hello over h2c 2" ]]
done
# Bulk: 8 MiB down over HTTP/2, byte-identical.
[[ $(caller curl -sS -m 30 --http2-prior-knowledge "http://$POD:8082/big.bin" | sha256sum) == "$(sha256sum <"$d/big.bin")" ]]
[[ $(passed sidecar2 "HTTP/2 preface") == 0 ]]
[[ $(routed sidecar2) == 1 ]]
[[ $(get -H 'x-dev: alice' "http://$POD:8082/after") == "alice local: GET /after" ]]
ok "with alice intercepting, HTTP/2 prior-knowledge requests without her header (8 MiB down) reach the h2c app, routed per stream, logged once; HTTP/1 with alice's header still reaches alice"

# --- B: HTTP/0.9 and other non-HTTP/1 bytes go to the app (nginx answers, not the sidecar)
[[ $(printf 'GET /\r\n' | caller socat -t 3 - TCP:web.default:80) == "hello from web (cluster)" ]]
[[ $(passed sidecar "HTTP/0.9 request") == 1 ]]
out=$(printf 'GARBAGE\r\n\r\n' | caller socat -t 3 - TCP:web.default:80)
[[ $out == *"HTTP/1.1 400 Bad Request"* && $out == *"Server: nginx"* && $out != *kbridge* ]]
# The start of a TLS ClientHello: nginx (plain HTTP) answers it, so it got there.
out=$(printf '\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00' | caller socat -t 3 - TCP:web.default:80)
[[ $out == *"HTTP/1.1 400 Bad Request"* && $out == *"Server: nginx"* ]]
[[ $(passed sidecar "TLS") == 1 ]]
[[ $(get -H 'x-dev: alice' http://web.default/still) == "alice local: GET /still" ]]
ok "an HTTP/0.9 request, a garbage line and TLS reach the app (its own answers); alice still gets hers"

# --- a malformed HTTP/1 request is still the sidecar's to refuse
out=$(printf 'GET / HTTP/1.1\r\nHost: web\r\nBad Header: x\r\n\r\n' | caller socat -t 3 - TCP:web.default:80)
[[ $out == *"HTTP/1.1 400 Bad Request"* && $out == *"kbridge: malformed HTTP request"* ]]
ok "a malformed header in an HTTP/1 request gets the sidecar's 400"

if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/*.log "$STATE"/*/*.log
	ok "no sanitizer reports in the daemon, manager and sidecar logs"
fi
echo "1..$n"
