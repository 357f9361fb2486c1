#!/bin/bash
# End-to-end test: preview URLs of an owner whose local app speaks only h2c
# (issue 16): browsers keep speaking HTTP/1.1 to the preview, the manager
# speaks HTTP/2 to the app (agent/h1h2.c), and gRPC-web to a gRPC server.
#
#   mate (curl --http1.1, headless chromium, grpcweb.py: HTTP/1.1 only)
#     | TOKEN.preview.kb.test:8080 -> manager preview listener
#     |   HTTP/1.1 first; the sidecar's 502 marked "kbridge-upstream-proto:
#     |   not-http1" (the app answered HTTP/2 frames; h1h2.h) -> the same
#     |   request again as h2c, learnt
#     v
#   web.default:80 -> web pod sidecar (h2c routed per stream by intercept id)
#       -> manager -> alice's kbridged (ws) -> 127.0.0.1:8090 nginx (listen http2, no TLS)
#                                                  / /api/hello: here; /upload /big: devserver :8091
#                                           -> 127.0.0.1:8092 grpcpeer.py (python3-grpcio)
#
# Every statement is an assertion (set -e); every network call and browser
# run has a timeout. Screenshots and DOM dumps go to build/test-artifacts/previewh2/.
set -euo pipefail

KB_PG_PREFIX=kbq
PG_TIMEOUT=60
FAIL_LOGS=(ws/kbridged.sock.log manager.log web/sidecar.log ws/h2c-error.log ws-grpc.log)
. "$(dirname "$0")/common.bash"
PY=/usr/bin/python3	# Debian's, with python3-grpcio
DEV=$here/devserver.py
PEER=$here/grpcpeer.py
GW=$here/grpcweb.py
ART=$top/build/test-artifacts/previewh2

mcurl() { pg mate curl -sS -m 10 --http1.1 "$@"; }
pfield() { json "p=j.get('preview', j); print(p['$1'])"; }
replays() { grep -c "does not speak $1: the request goes again" "$STATE/manager.log" || true; }
gw() { pg mate "$PY" "$GW" "$@"; }

cleanup_extra() { kill_pidfiles "$STATE/ws/h2c.pid" "$STATE/ws-dev.pid" "$STATE/ws-grpc.pid" "$STATE/ws-h1.pid"; }


# No skip: without these tools this test checks nothing.
[[ -x $KB_BIN/kbridge-agent ]]
command -v chromium >/dev/null
command -v nginx >/dev/null
nginx -V 2>&1 | grep -q -- --with-http_v2_module
"$PY" -c 'import grpc'
rm -rf "$ART"
mkdir -p "$ART"

"$PG" up >/dev/null
poll 50 listening mgr 8080
alice connect --profile "$STATE/alice.json" >/dev/null

# --- alice's local web app speaks only h2c: nginx, HTTP/2 without TLS, in
# front of a devserver for the uploads and big answers
d=$STATE/ws/h2c
mkdir -p "$d/www/api"
cat >"$d/www/index.html" <<'EOF'
<!doctype html>
<html><head><meta charset="utf-8"><title>alice's h2c web</title></head>
<body><h1>alice's h2c web</h1>
<p>/api/hello says: <b id="api">(loading)</b></p>
<script>
fetch('/api/hello').then(r => r.text()).then(t => {
  document.getElementById('api').textContent = t.trim();
}).catch(e => { document.getElementById('api').textContent = 'fetch failed: ' + e; });
</script>
</body></html>
EOF
printf 'alice h2c api\n' >"$d/www/api/hello"
head -c $((3 * 1024 * 1024)) /dev/urandom | base64 >"$d/www/big.txt"
cat >"$d/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon on;
pid $STATE/ws/h2c.pid;
error_log $STATE/ws/h2c-error.log;
events { worker_connections 64; }
http {
	access_log $STATE/ws/h2c-access.log;
	client_body_temp_path $d/body;
	proxy_temp_path $d/proxy;
	fastcgi_temp_path $d/fastcgi;
	uwsgi_temp_path $d/uwsgi;
	scgi_temp_path $d/scgi;
	client_max_body_size 8m;
	gzip on;
	gzip_types text/plain;
	gzip_min_length 0;
	server {
		listen 127.0.0.1:8090 http2;
		root $d/www;
		default_type text/plain;
		location = /api/hello { }
		location = /big.txt { }
		location = / { index index.html; }
		location = /index.html { }
		location / { proxy_pass http://127.0.0.1:8091; proxy_http_version 1.1; }
		location = /h2only { return 200 "protocol \$server_protocol\n"; }
	}
}
EOF
pg ws nginx -p "$d/" -c "$d/nginx.conf" -e "$STATE/ws/h2c-error.log"
"$PG" exec ws -- python3 "$DEV" alice 8091 >/dev/null 2>&1 &
echo $! >"$STATE/ws-dev.pid"
poll 50 listening ws 8090
poll 50 listening ws 8091
# it is h2c only: HTTP/1.1 gets no HTTP answer
[[ $(pg ws curl -sS -m 5 --http2-prior-knowledge http://127.0.0.1:8090/h2only) == "protocol HTTP/2.0" ]]
no pg ws curl -sS -m 5 --http1.1 -o /dev/null http://127.0.0.1:8090/h2only 2>/dev/null
ok "alice's local app: nginx with 'listen 8090 http2' (no TLS) answers HTTP/2 prior knowledge, not HTTP/1.1"

alice intercept web --port 8090 --preview-url --output json >"$STATE/icpt.json"
url=$(pfield url <"$STATE/icpt.json")
[[ $url =~ ^http://[a-z2-7]{26}\.preview\.kb\.test:8080/$ ]]

# --- curl --http1.1: GET; the first request went as HTTP/1.1 once, then again as h2c
out=$(mcurl -w ' %{http_code} %{http_version}' "${url}h2only")
[[ $out == $'protocol HTTP/2.0\n 200 1.1' ]] || { echo "got: $out"; exit 1; }
[[ $(replays HTTP/1.1) == 1 ]]
grep -q "the owner's app speaks h2c only" "$STATE/manager.log"
out=$(mcurl -w ' %{http_code}' "${url}api/hello")
[[ $out == $'alice h2c api\n 200' ]]
for i in 1 2 3; do
	[[ $(mcurl "${url}h2only") == "protocol HTTP/2.0" ]]
done
[[ $(replays HTTP/1.1) == 1 ]]
ok "curl --http1.1 GET through the preview reaches the h2c-only app over HTTP/2; learnt once: later requests (new connections) go as h2c at once"

# keep-alive: several requests on one browser connection
pg mate curl -sS -m 10 --http1.1 -o /dev/null -w '%{num_connects}\n' "${url}api/hello" \
	--next -o "$STATE/k2" -w '%{num_connects} %{http_code}\n' "${url}h2only" >"$STATE/k.out"
[[ $(cat "$STATE/k.out") == $'1\n0 200' && $(cat "$STATE/k2") == "protocol HTTP/2.0" ]]
ok "two requests on one kept-alive HTTP/1.1 connection"

# --- POST with a body (the app's devserver returns its sha256), fixed length and chunked
head -c 300000 /dev/urandom >"$STATE/post.bin"
want=$(sha256sum <"$STATE/post.bin" | cut -d' ' -f1)
cp "$STATE/post.bin" "$STATE/mate-post.bin"
out=$(mcurl -w ' %{http_code}' --data-binary "@$STATE/mate-post.bin" "${url}upload")
[[ $out == "$want"$'\n 200' ]] || { echo "got: $out"; exit 1; }
out=$(mcurl -w ' %{http_code}' -H 'Transfer-Encoding: chunked' --data-binary "@$STATE/mate-post.bin" "${url}upload")
[[ $out == "$want"$'\n 200' ]]
out=$(mcurl -w ' %{http_code}' -X POST --data-binary 'hello' "${url}upload")
[[ $out == "$(printf hello | sha256sum | cut -d' ' -f1)"$'\n 200' ]]
ok "curl --http1.1 POST with a 300 KB body (Content-Length and chunked) and a small one: the app got every byte"

# over the 1 MiB kept for a replay: streamed to the learnt h2c app
head -c $((4 * 1024 * 1024)) /dev/urandom >"$STATE/mate-big.bin"
want=$(sha256sum <"$STATE/mate-big.bin" | cut -d' ' -f1)
out=$(mcurl -m 30 -w ' %{http_code}' -H 'Expect:' --data-binary "@$STATE/mate-big.bin" "${url}upload")
[[ $out == "$want"$'\n 200' ]] || { echo "got: $out"; exit 1; }
out=$(mcurl -m 30 -w ' %{http_code}' -H 'Transfer-Encoding: chunked' --data-binary "@$STATE/mate-big.bin" "${url}upload")
[[ $out == "$want"$'\n 200' ]] || { echo "got: $out"; exit 1; }
no grep -q ' 413: ' "$STATE/manager.log"
[[ $(mcurl "${url}h2only") == "protocol HTTP/2.0" ]]
ok "a 4 MiB body (Content-Length and chunked) to the learnt h2c app is streamed, not refused: the app got every byte (sha256); the preview still serves"

# --- an answer without a length (gzip on the fly): chunked HTTP/1.1; 4 MiB through the windows
mcurl --compressed -D "$STATE/gz.h" -o "$STATE/gz.body" "${url}big.txt"
tr -d '\r' <"$STATE/gz.h" | grep -qix 'transfer-encoding: chunked'
tr -d '\r' <"$STATE/gz.h" | grep -qix 'content-encoding: gzip'
cmp "$STATE/gz.body" "$d/www/big.txt"
mcurl -D "$STATE/big.h" -o "$STATE/big.body" "${url}big.txt"
tr -d '\r' <"$STATE/big.h" | grep -qi "^content-length: $(stat -c %s "$d/www/big.txt")\$"
cmp "$STATE/big.body" "$d/www/big.txt"
[[ $(mcurl -I -w '%{http_code}' -o /dev/null "${url}big.txt") == 200 ]]
ok "an answer of unknown length comes chunked (gzip, 4 MiB), one with a length keeps it; HEAD works"

# --- chromium: the page and its fetch, over HTTP/1.1 to the preview
chrome mate "$ART/page.html" --dump-dom "$url"
grep -q "alice's h2c web" "$ART/page.html"
grep -q '<b id="api">alice h2c api</b>' "$ART/page.html"
chrome mate /dev/null --window-size=1024,768 --screenshot="$ART/page.png" "$url"
[[ -s $ART/page.png ]]
ok "headless chromium opens the preview: alice's page and its fetch('/api/hello') from the h2c-only app"

# --- gRPC-web to a gRPC server (python3-grpcio, h2c only)
"$PG" exec ws -- "$PY" "$PEER" serve alice 127.0.0.1:8092 >"$STATE/ws-grpc.log" 2>&1 &
echo $! >"$STATE/ws-grpc.pid"
poll 100 listening ws 8092
alice leave web >/dev/null
alice intercept web --port 8092 --preview-url --output json >"$STATE/g.json"
gurl=$(pfield url <"$STATE/g.json")
r0=$(replays HTTP/1.1)
gw "${gurl}kb.Echo/Unary" hi >"$STATE/gw1"
[[ $(cat "$STATE/gw1") == $'http 200 1.1 application/grpc-web+proto\nmsg alice: hi\nstatus 0 \nwhere trailer' ]] ||
	{ cat "$STATE/gw1"; exit 1; }
[[ $(replays HTTP/1.1) == $((r0 + 1)) ]]
gw "${gurl}kb.Echo/Unary" again application/grpc-web >"$STATE/gw2"
[[ $(cat "$STATE/gw2") == $'http 200 1.1 application/grpc-web\nmsg alice: again\nstatus 0 \nwhere trailer' ]]
gw "${gurl}kb.Echo/Stream" 3 >"$STATE/gw3"
[[ $(cat "$STATE/gw3") == $'http 200 1.1 application/grpc-web+proto\nmsg alice 0\nmsg alice 1\nmsg alice 2\nstatus 0 \nwhere trailer' ]]
[[ $(replays HTTP/1.1) == $((r0 + 1)) ]]
ok "gRPC-web (binary, +proto and plain) over HTTP/1.1 to alice's gRPC server: messages and the trailer frame (grpc-status 0), server streaming too"

rc=0; gw "${gurl}kb.Echo/Fail" x >"$STATE/gw4" || rc=$?
grep -qx 'status 3 alice says no' "$STATE/gw4" || { cat "$STATE/gw4"; exit 1; }
grep -qx 'http 200 1.1 application/grpc-web+proto' "$STATE/gw4"
no grep -q '^msg' "$STATE/gw4"
ok "a gRPC error (INVALID_ARGUMENT 'alice says no') reaches the gRPC-web client as grpc-status 3 with its message ($(tail -n1 "$STATE/gw4"))"

# gRPC-web text (grpc-web JS clients' default): base64 both ways
gw "${gurl}kb.Echo/Unary" text application/grpc-web-text+proto >"$STATE/gt1"
[[ $(cat "$STATE/gt1") == $'http 200 1.1 application/grpc-web-text+proto\nmsg alice: text\nstatus 0 \nwhere trailer' ]] ||
	{ cat "$STATE/gt1"; exit 1; }
gw "${gurl}kb.Echo/Stream" 3 application/grpc-web-text >"$STATE/gt2"
[[ $(cat "$STATE/gt2") == $'http 200 1.1 application/grpc-web-text\nmsg alice 0\nmsg alice 1\nmsg alice 2\nstatus 0 \nwhere trailer' ]] ||
	{ cat "$STATE/gt2"; exit 1; }
rc=0; gw "${gurl}kb.Echo/Fail" x application/grpc-web-text+proto >"$STATE/gt3" || rc=$?
grep -qx 'status 3 alice says no' "$STATE/gt3" || { cat "$STATE/gt3"; exit 1; }
rc=0; gw "${gurl}kb.Echo/Unary" '!bad' application/grpc-web-text+proto >"$STATE/gt4" || rc=$?
grep -qx 'http 400 1.1 text/plain' "$STATE/gt4" || { cat "$STATE/gt4"; exit 1; }
grep -qx 'status 3 kbridge: the gRPC-web text request body is not base64' "$STATE/gt4"
ok "gRPC-web text (base64, request padded per piece) to alice's gRPC server: unary, server streaming, an error status; bad base64 gets 400 with grpc-status 3"

# --- gRPC-web to an HTTP/1.1 app (a gRPC-web proxy, say): passed untouched
kill "$(cat "$STATE/ws-grpc.pid")"
poll 50 no listening ws 8092
# (answers a POST with the headers it got and the sha256 of the body)
"$PG" exec ws -- python3 -c '
import hashlib, json
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        b = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        out = json.dumps({"h": {k.lower(): v for k, v in self.headers.items()},
                          "sha": hashlib.sha256(b).hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def do_GET(self):
        out = b"alice h1 again\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
HTTPServer(("127.0.0.1", 8092), H).serve_forever()
' >/dev/null 2>&1 &
echo $! >"$STATE/ws-h1.pid"
poll 50 listening ws 8092
# the preview learnt h2c: the HTTP/1 app refuses the preface, the request goes again as HTTP/1.1
r2=$(replays h2c)
printf '\0\0\0\0\3abc' >"$STATE/gwf.bin"
pg mate curl -sS -m 10 --http1.1 -H 'Content-Type: application/grpc-web+proto' \
	--data-binary "@$STATE/gwf.bin" "${gurl}kb.Echo/Unary" >"$STATE/h.json"
json "h=j['h']; assert h.get('content-type') == 'application/grpc-web+proto' and 'te' not in h, h; assert j['sha'] == '$(sha256sum <"$STATE/gwf.bin" | cut -d' ' -f1)', j" <"$STATE/h.json"
[[ $(replays h2c) == $((r2 + 1)) ]]
[[ $(mcurl "${gurl}x") == "alice h1 again" ]]
[[ $(replays h2c) == $((r2 + 1)) ]]
ok "the owner's app became HTTP/1.1: the preview goes back to HTTP/1.1 (once), and gRPC-web reaches it untouched"

# a WebSocket through the preview to an HTTP/1.1 app: relayed as it is
kill "$(cat "$STATE/ws-h1.pid")"
poll 50 no listening ws 8092
"$PG" exec ws -- python3 "$DEV" alice 8092 >/dev/null 2>&1 &
echo $! >"$STATE/ws-h1.pid"
poll 50 listening ws 8092
host=${gurl#http://}
host=${host%%:*}
[[ $(pg mate python3 "$DEV" wsclient "$host" 8080 /ws "hello ws") == "echo: hello ws" ]]
[[ $(mcurl "${gurl}x") == "alice local: GET /x" ]]
ok "a WebSocket (Upgrade) through the preview reaches the HTTP/1.1 app and echoes"

no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/manager*.log
echo "artifacts: ${ART#"$top"/}/ (page.html, page.png)"
echo "1..$n"
