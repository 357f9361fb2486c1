#!/bin/bash
# End-to-end test: HTTP/2 prior knowledge (gRPC) routed per stream by a
# sidecar that holds a header intercept:
#
#   api pod (gRPC clients, curl, h2load)
#      | 10.244.1.10:8082 -> web pod :8082 = sidecar2 --+--> gRPC app 127.0.0.1:82
#      |                                                +--> manager --> alice's gRPC server
#      |                                                     (x-dev: alice)     127.0.0.1:8090
#
# sidecar2 is a second replica of workload web, started here, whose app is
# a gRPC server (tests/e2e/grpcpeer.py: python3-grpcio, generic handlers).
# Both servers say who they are in every answer and count their calls.
# Every [[ ]] is an assertion (set -e).
set -euo pipefail

KB_PG_PREFIX=kbg
FAIL_LOGS=(ws/kbridged.sock.log manager.log web/sidecar2.log web/grpc.log ws-grpc.log)
. "$(dirname "$0")/common.bash"
PY=/usr/bin/python3	# Debian's, with python3-grpcio
PEER=$here/grpcpeer.py
POD=10.244.1.10
T=$POD:8082

caller() { pg api "$@"; }
call() { caller "$PY" "$PEER" call "$T" "$@"; }
count() { pg "$1" "$PY" "$PEER" call "127.0.0.1:$2" Count x; }
routed() { grep -c "HTTP/2 connection (prior knowledge): routed per stream" "$STATE/web/sidecar2.log" || true; }
upgraded() { grep -c "HTTP/1.1 Upgrade: h2c: taken here, routed per stream" "$STATE/web/sidecar2.log" || true; }
# curl --http2 over http:// (Upgrade: h2c); the body's gRPC prefix cut
u() { caller curl -sS -m 10 --http2 -H 'content-type: application/grpc' -H 'te: trailers' \
	--data-binary "@$STATE/req.bin" -w '%{http_version}' "$@" "http://$T/kb.Echo/Unary" | tail -c +6; }

cleanup_extra() { kill_pidfiles "$STATE/web/sidecar2.pid" "$STATE/web/grpc.pid" "$STATE/ws-grpc.pid" "$STATE/ws-h1.pid"; }

[[ -x $KB_BIN/kbridge-agent ]]
# No skip: without these, this test cannot check anything.
"$PY" -c 'import grpc'
command -v h2load >/dev/null
curl --version | grep -qw HTTP2

"$PG" up >/dev/null
printf '\0\0\0\0\2hi' >"$STATE/req.bin"	# a gRPC frame "hi" (5-byte prefix)
alice connect --profile "$STATE/alice.json" >/dev/null

# The gRPC app, its sidecar, and alice's gRPC server.
"$PG" exec web -- "$PY" "$PEER" serve app 127.0.0.1:82 >"$STATE/web/grpc.log" 2>&1 &
echo $! >"$STATE/web/grpc.pid"
"$PG" exec ws -- "$PY" "$PEER" serve alice 127.0.0.1:8090 >"$STATE/ws-grpc.log" 2>&1 &
echo $! >"$STATE/ws-grpc.pid"
poll 100 listening web 82
poll 100 listening ws 8090
"$KB_BIN/kbridge-agent" issue --state-dir "$STATE/cluster" --name web2.default --sidecar \
	--workload web --namespace default \
	--out "$STATE/web/sidecar2.json" >/dev/null
"$PG" exec web -- "$KB_BIN/kbridge-agent" sidecar --profile "$STATE/web/sidecar2.json" \
	--workload web --namespace default --listen 0.0.0.0:8082 --app 127.0.0.1:82 \
	--manager kbridge-manager.kbridge.svc.cluster.local:8443 >"$STATE/web/sidecar2.log" 2>&1 &
echo $! >"$STATE/web/sidecar2.pid"
poll 50 listening web 8082
poll 50 grep -q "registered web.default" "$STATE/web/sidecar2.log"
[[ $(call Unary hi x-dev=alice) == "app: hi" ]]
[[ $(routed) == 0 ]]
# Upgrade: h2c goes to the gRPC app as it came: grpcio does not take it, and
# answers with HTTP/2 frames, which curl refuses (the app's bytes, not ours).
out=$(u -H 'x-dev: alice' 2>&1) && exit 1
[[ $out == *"Received HTTP/0.9 when not allowed"* ]]
[[ $(upgraded) == 0 ]]
ok "without intercepts gRPC reaches the app (passed through, not terminated), Upgrade: h2c too"

alice intercept web --port 8090 --http-header x-dev=alice >/dev/null
poll 50 grep -q "1 intercept(s) on web.default" "$STATE/web/sidecar2.log"
id=$(alice list --output json | "$PY" -c 'import json,sys; print([i["id"] for w in json.load(sys.stdin)["workloads"] for i in w["intercepts"] if i["mine"]][0])')

# --- unary calls, metadata as headers
[[ $(call Unary one x-dev=alice) == "alice: one" ]]
[[ $(call Unary two) == "app: two" ]]
[[ $(call Unary three x-dev=bob) == "app: three" ]]
[[ $(call Meta x x-dev=alice) == "alice: x-dev=alice" ]]
[[ $(call Unary four "x-kbridge-intercept-id=$id") == "alice: four" ]]
[[ $(routed) == 1 ]]
ok "unary gRPC calls with x-dev=alice (or alice's intercept id) reach alice's server, the others the app"

# --- one connection, streams of both kinds interleaved
out=$(caller "$PY" "$PEER" mixed "$T" 200 x-dev=alice)
[[ $out == $'with alice 100\nwithout app 100' ]]
ok "200 concurrent calls on one channel, every other one with the header: each answered by the right side"

# --- server streaming, error status, deadline
[[ $(call Stream 50 x-dev=alice | tail -n1) == "alice 49" ]]
[[ $(call Stream 50 x-dev=alice | wc -l) == 50 ]]
[[ $(call Stream 3) == $'app 0\napp 1\napp 2' ]]
out=$(call Fail x x-dev=alice) && exit 1
[[ $out == "status INVALID_ARGUMENT: alice says no" ]]
out=$(call Fail x) && exit 1
[[ $out == "status INVALID_ARGUMENT: app says no" ]]
out=$(call Slow 3 x-dev=alice deadline=0.5) && exit 1
[[ $out == "status DEADLINE_EXCEEDED: Deadline Exceeded" ]]
out=$(call Slow 3 deadline=0.5) && exit 1
[[ $out == "status DEADLINE_EXCEEDED: Deadline Exceeded" ]]
[[ $(call Slow 0.2 x-dev=alice) == "alice: slept" ]]
# 3 MiB each way, through every window (a stream's is 256 KiB)
[[ $(call Big 3145728 x-dev=alice) == "big 3145728 same" ]]
[[ $(call Big 3145728) == "big 3145728 same" ]]
ok "server streaming (50 messages), grpc-status trailers (INVALID_ARGUMENT), deadlines and 3 MiB messages each way pass through, to alice and to the app"

# --- curl with prior knowledge
g() { caller curl -sS -m 10 --http2-prior-knowledge -H 'content-type: application/grpc' \
	-H 'te: trailers' --data-binary "@$STATE/req.bin" "$@" "http://$T/kb.Echo/Unary" | tail -c +6; }
[[ $(g -H 'x-dev: alice') == "alice: hi" ]]
[[ $(g) == "app: hi" ]]
ok "curl --http2-prior-knowledge with and without the header"

# --- curl --http2 (Upgrade: h2c): the sidecar takes the upgrade, the
# request is stream 1, routed; later requests on the connection too
[[ $(u -H 'x-dev: alice') == "alice: hi2" ]]
[[ $(u) == "app: hi2" ]]
[[ $(upgraded) == 1 ]]
f=$STATE/up
caller curl -sS -m 10 --http2 -H 'content-type: application/grpc' -H 'te: trailers' \
	--data-binary "@$STATE/req.bin" -o "$f.1" -w '%{num_connects}\n' "http://$T/kb.Echo/Unary" \
	--next --http2 -H 'content-type: application/grpc' -H 'te: trailers' -H 'x-dev: alice' \
	--data-binary "@$STATE/req.bin" -o "$f.2" -w '%{num_connects} %{http_version}\n' \
	"http://$T/kb.Echo/Unary" >"$f.out"
[[ $(cat "$f.out") == $'1\n0 2' ]]
[[ $(tail -c +6 "$f.1") == "app: hi" && $(tail -c +6 "$f.2") == "alice: hi" ]]
ok "curl --http2 (Upgrade: h2c) with and without the header: the sidecar upgrades, each request routed, also the second one on the upgraded connection"

# --- load: two h2load runs at once, one with the header
a0=$(count ws 8090)
p0=$(count web 82)
h() { caller timeout 120 h2load -n 2000 -c 4 -m 10 -d "$STATE/req.bin" \
	-H 'content-type: application/grpc' -H 'te: trailers' "$@" "http://$T/kb.Echo/Unary"; }
h -H 'x-dev: alice' >"$STATE/h2load-alice.out" 2>&1 &
ha=$!
h >"$STATE/h2load-app.out" 2>&1
wait $ha
grep -q "2000 succeeded, 0 failed, 0 errored" "$STATE/h2load-alice.out"
grep -q "2000 succeeded, 0 failed, 0 errored" "$STATE/h2load-app.out"
grep -q "status codes: 2000 2xx" "$STATE/h2load-alice.out"
[[ $(($(count ws 8090) - a0)) == 2000 ]]
[[ $(($(count web 82) - p0)) == 2000 ]]
ok "h2load -n 2000 -c 4 -m 10 twice at once, with and without the header: 2000 calls at each server"

# --- alice's server gone: her calls fail as unavailable, the others still work
kill "$(cat "$STATE/ws-grpc.pid")"
poll 50 no listening ws 8090
out=$(call Unary x x-dev=alice) && exit 1
[[ $out == "status UNAVAILABLE: kbridge: nothing answers on localhost:8090 (127.0.0.1 and ::1) on the intercepting workstation ("* ]]
out=$(caller curl -sS -m 10 --http2-prior-knowledge -H 'x-dev: alice' -w ' %{http_code}' "http://$T/down")
[[ $out == "kbridge: nothing answers on localhost:8090 (127.0.0.1 and ::1) on the intercepting workstation ("*$')\n 502' ]]
[[ $(call Unary y) == "app: y" ]]
ok "with alice's server down her calls get UNAVAILABLE and her HTTP/2 requests 502, each with her workstation's reason; the app's still answer"

# --- alice's local app speaks HTTP/1 only: her HTTP/2 streams reach it as
# HTTP/1.1 requests (the first ones wait for its answer to the HTTP/2
# preface; then the sidecar knows, for her intercept); gRPC cannot go over
# HTTP/1: her calls get UNAVAILABLE saying so
"$PG" exec ws -- python3 "$here/devserver.py" alice 8091 >/dev/null 2>&1 &
echo $! >"$STATE/ws-h1.pid"
poll 50 listening ws 8091
alice leave web >/dev/null
alice intercept web --port 8091 --http-header x-dev=alice >/dev/null
h1ok() { [[ $(caller curl -sS -m 5 -H 'x-dev: alice' "http://$T/h1") == "alice local: GET /h1" ]]; }
poll 50 h1ok
noted() { grep -c "the local app answers HTTP/2 in HTTP/1" "$STATE/web/sidecar2.log" || true; }
[[ $(noted) == 0 ]]
# The first streams, many at once on two connections, before the sidecar knows.
caller timeout 60 h2load -n 200 -c 2 -m 20 -H 'x-dev: alice' "http://$T/load" >"$STATE/h2load-h1.out" 2>&1 || true
grep -q "200 succeeded, 0 failed, 0 errored" "$STATE/h2load-h1.out" || { cat "$STATE/h2load-h1.out"; exit 1; }
grep -q "status codes: 200 2xx" "$STATE/h2load-h1.out"
[[ $(noted) == 1 ]]
out=$(caller curl -sS -m 10 --http2-prior-knowledge -H 'x-dev: alice' -w ' %{http_code} %{http_version}' "http://$T/h2")
[[ $out == $'alice local: GET /h2\n 200 2' ]]
out=$(caller curl -sS -m 10 --http2 -H 'x-dev: alice' -w ' %{http_code} %{http_version}' "http://$T/up")
[[ $out == $'alice local: GET /up\n 200 2' ]]
ok "alice's HTTP/1-only local app answers her HTTP/2 requests: 200 streams at once (before the sidecar knew), prior knowledge and Upgrade"

head -c $((3 * 1024 * 1024)) /dev/urandom >"$STATE/body.bin"
want=$(sha256sum <"$STATE/body.bin" | cut -d' ' -f1)
# The answer, then its status and the bytes sent (on a mismatch the log
# shows them). The two HTTP/2 uploads go by h2post.py: with curl 7.88.1 the
# app sometimes got one 64 KiB piece twice, which points at curl (see there).
eq "$(caller python3 "$here/h2post.py" --content-length "${T%:*}" "${T#*:}" /upload "$STATE/body.bin" \
	x-dev:alice)" "$want"$'\n 200 3145728'
eq "$(caller python3 "$here/h2post.py" "${T%:*}" "${T#*:}" /upload "$STATE/body.bin" x-dev:alice)" \
	"$want"$'\n 200 3145728'
eq "$(caller curl -sS -m 30 --http2 -H 'x-dev: alice' --data-binary "@$STATE/body.bin" \
	-w ' %{http_code} %{size_upload}' "http://$T/upload")" "$want"$'\n 200 3145728'
got=$(caller curl -sS -m 30 --http2-prior-knowledge -H 'x-dev: alice' "http://$T/big?n=$((5 * 1024 * 1024 + 7))" | sha256sum | cut -d' ' -f1)
[[ $got == $(python3 -c 'import hashlib; p=bytes(range(256))*256; d=p*80+p[:7]; print(hashlib.sha256(d).hexdigest())') ]]
ok "POST bodies of 3 MiB (with content-length, without: chunked, and by Upgrade) and a 5 MiB answer pass byte-identical"

caller curl -sS -m 10 --http2-prior-knowledge -H 'x-dev: alice' -H 'cookie: a=1' -H 'cookie: b=2' \
	-H 'te: trailers' -H 'x-kind: h2' "http://$T/headers" >"$STATE/hdrs"
grep -qx "host: $T" "$STATE/hdrs"
grep -qx "cookie: a=1; b=2" "$STATE/hdrs"
grep -qx "x-kind: h2" "$STATE/hdrs"
grep -qx "connection: close" "$STATE/hdrs"
no grep -q "^te:" "$STATE/hdrs"
out=$(caller nghttp -v -H 'x-dev: alice' "http://$T/trailers")
# (nghttp -v writes the body and its frame log to one stdout, interleaved
# as they come: the body is read from a quiet second request)
body=$(caller nghttp -H 'x-dev: alice' "http://$T/trailers")
if ! { [[ $body == "part1 part2" ]] &&
	sed -n '/recv DATA frame/,$p' <<<"$out" | grep -q "recv (stream_id=[0-9]*) x-checksum: abc" &&
	no grep -qi "x-hop\|^ *transfer-encoding" <<<"$out"; }; then
	printf 'nghttp said:\n%s\nthe body: %s\n' "$out" "$body" >&2
	false
fi
ok "the HTTP/1.1 request has Host from :authority, one cookie field, no hop-by-hop fields; chunked trailers come back as HTTP/2 trailers, Connection-listed fields do not"

why="kbridge: the intercepting workstation's local app speaks HTTP/1 only: gRPC needs HTTP/2 without TLS (h2c, prior knowledge)"
out=$(call Unary z x-dev=alice) && exit 1
[[ $out == "status UNAVAILABLE: "$why ]]
[[ $(call Unary w) == "app: w" ]]
ok "alice's gRPC calls to her HTTP/1-only app get UNAVAILABLE saying why; the app's still answer"

# --- a preview link's request reaches the sidecar as HTTP/1.1 naming the
# intercept (the manager's preview hop speaks HTTP/1.1): it works while the
# side that answers speaks HTTP/1.1; the h2c-only gRPC app cannot answer it
id=$(alice list --output json | "$PY" -c 'import json,sys; print([i["id"] for w in json.load(sys.stdin)["workloads"] for i in w["intercepts"] if i["mine"]][0])')
[[ $(caller curl -sS -m 5 -H "x-kbridge-intercept-id: $id" "http://$T/p") == "alice local: GET /p" ]]
out=$(caller curl -sS -m 5 -w ' %{http_code}' "http://$T/p")
[[ $out == $'kbridge: the upstream sent an invalid HTTP response\n 502' ]]
ok "HTTP/1.1 naming alice's intercept id (as a preview link's request) reaches her HTTP/1 app; without it the h2c-only app cannot answer HTTP/1.1 (502)"

no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/web/sidecar2.log
echo "1..$n"
