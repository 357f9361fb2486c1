#!/bin/bash
# End-to-end test of `kbridge connect` in the playground (scripts/playground):
#
#   ws (kbridged, kbridge, curl)  --TLS 192.168.50.1:8443-->  node  --> mgr 10.244.0.10
#     no route to 10.96/16 or 10.244/16                        |  DNAT 10.96.x -> pods
#     resolver 127.0.0.53 (outside.test, example.shop)         +--> web 10.244.1.10 (nginx)
#                                                              +--> echo 10.244.1.20 (:7 echo)
#                                                              +--> cart 10.244.2.10 (shop)
#
# Every [[ ]] is an assertion (set -e). KB_BIN selects the binaries (the
# sanitizer build runs this too, KB_SAN=1, and then no sanitizer report may
# appear in the logs).
set -euo pipefail

KB_PG_PREFIX=kbc
FAIL_LOGS=(ws/kbridged.sock.log manager.log)
FAIL_LINES=40
. "$(dirname "$0")/common.bash"
bg_pids=()
cleanup_extra() { local p; for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; done; }

ws() { pg ws "$@"; }
kb() { ws "$KB_BIN/kbridge" "$@"; }
fails() { ! "$@" >/dev/null 2>&1; }
# exited (a zombie counts: this machine's init reaps orphans late)
gone() { [[ ! -e /proc/$1/status ]] || grep -q '^State:.*Z' "/proc/$1/status"; }
daemon_pid() { kb status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon"]["pid"])'; }
state_is() { [[ $(kb status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])') == "$1" ]]; }
no_table() { [[ -z $(ws nft list tables) ]]; }
no_link() { ! ws ip -o link show | grep -q kbridge; }
clean_ws() { no_table && no_link && [[ -z $(ws ip route show 10.96.0.0/16) ]]; }
unreachable() { # nothing of the cluster resolves or answers
	fails ws getent hosts web.default.svc.cluster.local
	fails ws getent hosts web.default
	fails ws curl -sS -m 2 http://10.96.1.1/
	fails ws curl -sS -m 2 http://10.244.1.10/
}

[[ -x $KB_BIN/kbridge && -x $KB_BIN/kbridged && -x $KB_BIN/kbridge-agent ]]
"$PG" up >/dev/null
ok "playground up"

# --- before connect
unreachable
[[ $(ws getent hosts outside.test) == *192.0.2.10* ]]
clean_ws
ok "before connect: cluster unreachable, outside.test resolves, no rules"

# --- connect
out=$(kb connect --profile "$STATE/alice.json")
[[ $out == *"Connected to 192.168.50.1:8443 as alice"* && $out == *10.96.0.0/16* ]]
state_is connected
kb status --output json | python3 -m json.tool >/dev/null
ok "connect prints what is reachable; status json says connected"

# kbridge-agent opens libcurl at the manager's first API call (agent/curlload.c):
# not linked, and never mapped by a manager run with --state-dir
no grep -q 'libcurl\.so' < <(ldd "$KB_BIN/kbridge-agent")
mp=$(head -n1 "$STATE/manager.pid")
[[ -r /proc/$mp/maps ]]
no grep -q 'libcurl\.so' "/proc/$mp/maps"
ok "kbridge-agent does not link libcurl; the playground's manager (--state-dir) never maps it"

[[ $(ws curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
[[ $(ws curl -sS -m 5 http://web.default.svc.cluster.local/) == "hello from web (cluster)" ]]
[[ $(ws curl -sS -m 5 http://web.default.svc/) == "hello from web (cluster)" ]]
[[ $(ws curl -sS -m 5 http://web/) == "hello from web (cluster)" ]]
[[ $(ws curl -sS -m 5 http://cart.shop/) == "hello from cart (cluster)" ]]
ok "cluster names: NAME.NS, FQDN, NAME.NS.svc, NAME in the connected namespace, other namespace"

[[ $(ws curl -sS -m 5 http://10.96.1.1/) == "hello from web (cluster)" ]]
[[ $(ws curl -sS -m 5 http://10.244.2.10/) == "hello from cart (cluster)" ]]
ok "service address and pod address"

[[ $(echo "ping $$" | ws socat -t 5 - TCP:echo.default:7) == "ping $$" ]]
ok "plain TCP service (echo)"

[[ $(ws getent hosts outside.test) == *192.0.2.10* ]]
[[ $(ws dig +short +tcp outside.test @127.0.0.53) == 192.0.2.10 ]]
[[ $(ws dig +short +tcp web.default.svc.cluster.local @127.0.0.53) == 10.96.1.1 ]]
fails ws getent hosts nosuch.default.svc.cluster.local
ok "non-cluster names use the original resolver; DNS over TCP; unknown cluster name fails"

# The outside world's example.shop, while the cluster has a namespace "shop".
[[ $(ws getent hosts example.shop) == *192.0.2.11* ]]
[[ $(ws dig +short +tcp example.shop @127.0.0.53) == 192.0.2.11 ]]
[[ $(ws getent hosts cart.shop) == *10.96.2.1* ]]
ok "NAME.NS the cluster does not know (example.shop) resolves outside; cart.shop in the cluster"

# One local program floods the DNS proxy (20,000 queries in 1 s from one
# socket); another one's queries are all answered meanwhile.
ws python3 "$here/dnsflood.py" 127.0.0.53 20000 1
ok "a DNS flood from one socket does not starve another client"

# A closed port must fail at once with an error, not hang (curl exit 28 = timeout).
rc=0; ws curl -sS -m 10 http://10.96.1.1:81/ 2>/dev/null || rc=$?
[[ $rc -ne 0 && $rc -ne 28 ]]
rc=0; ws curl -sS -m 10 http://192.0.2.99/ 2>/dev/null || rc=$?
[[ $rc -ne 0 ]]
ok "closed cluster port fails promptly (curl exit $rc), outside addresses are not tunneled"

# --- bulk data: 256 MiB over 50 parallel connections, checksummed
size=$((256 * 1024 * 1024 / 50))
head -c $size /dev/urandom >"$STATE/data/blob"
want=$(sha256sum <"$STATE/data/blob" | cut -d' ' -f1)
ws bash -c '
	for i in $(seq 1 50); do
		( curl -sS -m 120 http://web.default/data/blob | sha256sum | cut -d" " -f1 ) &
	done; wait' >"$STATE/sums"
[[ $(wc -l <"$STATE/sums") -eq 50 ]]
[[ $(sort -u "$STATE/sums") == "$want" ]]
ok "256 MiB over 50 parallel connections arrive byte-identical"

# --- half-close: the client stops writing, the server still answers
pg echo socat TCP-LISTEN:9001,fork,reuseaddr EXEC:sha256sum >/dev/null 2>&1 &
bg_pids+=($!)
poll 50 pg echo bash -c 'ss -Hltn "sport = :9001" | grep -q 9001'
head -c $((8 * 1024 * 1024)) /dev/urandom >"$STATE/upload"
want=$(sha256sum <"$STATE/upload" | cut -d' ' -f1)
got=$(ws socat -t 30 - TCP:10.244.1.20:9001 <"$STATE/upload" | cut -d' ' -f1)
[[ $got == "$want" ]]
ok "half-close: 8 MiB upload, FIN, then the server's answer arrives"

# --- bad input; the session above must survive all of it
ws bash -c 'head -c 4096 /dev/urandom | socat -t 2 - TCP:192.168.50.1:8443' >/dev/null 2>&1 || true
ws bash -c 'printf "GET / HTTP/1.1\r\nHost: x\r\n\r\n" | socat -t 2 - TCP:192.168.50.1:8443' >/dev/null 2>&1 || true
fails ws bash -c 'echo | openssl s_client -connect 192.168.50.1:8443 -tls1_3 -quiet'
poll 20 grep -q "TLS handshake from" "$STATE/manager.log"
[[ $(ws curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
ok "garbage, plain HTTP and a certificate-less TLS client are refused; the session keeps working"

kb status --output json >"$STATE/status.json"
python3 - "$STATE/status.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["state"] == "connected", s
assert s["user"] == "alice" and s["namespace"] == "default", s
assert s["subnets"] == ["10.96.0.0/16", "10.244.0.0/16"], s
assert s["bytes_in"] > 256 * 1024 * 1024, s
EOF
ok "status counts the traffic"

# --- manager restart: in-flight streams are reset, the daemon reconnects
ws python3 -c 'import socket; s = socket.create_connection(("10.244.1.20", 7)); s.settimeout(60); s.recv(1)' >/dev/null 2>&1 &
held=$!
bg_pids+=($held)
poll 50 bash -c "[[ \$(\"$PG\" exec ws -- $KB_BIN/kbridge status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin).get(\"streams\", 0))') -ge 1 ]]"
"$PG" restart-manager >/dev/null
poll 100 gone "$held"
ok "a stream in flight ends when the manager restarts (no hang)"
poll 100 state_is connected
[[ $(ws curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
kb status --output json | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["reconnects"] >= 1, s'
ok "the daemon reconnected by itself; new connections work"

# --- the link drops: the heartbeat notices, the daemon reconnects afterwards
ws ip link set eth0 down
poll 100 state_is reconnecting
ws ip link set eth0 up
poll 150 state_is connected
[[ $(ws curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
ok "link down: status shows reconnecting; link up: connected again"

# --- quit leaves the workstation as it was
kb quit >/dev/null
clean_ws
unreachable
[[ $(ws getent hosts outside.test) == *192.0.2.10* ]]
ok "quit: no table, no link, no route; cluster unreachable; DNS works"

# --- signals and SIGKILL
for sig in TERM INT KILL; do
	kb connect --profile "$STATE/alice.json" >/dev/null
	[[ $(ws curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
	pid=$(daemon_pid)
	kill -$sig "$pid"
	poll 20 clean_ws
	poll 20 gone "$pid"
	[[ $(ws getent hosts outside.test) == *192.0.2.10* ]]
	unreachable
	ok "SIG$sig: workstation clean within 2 s, DNS works"
done
kb connect --profile "$STATE/alice.json" >/dev/null
[[ $(ws curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
kb quit >/dev/null
ok "connect after SIGKILL works without manual cleanup"

# --- bad input to connect: each fails with one line and leaves nothing
errs=$STATE/err
expect_fail() { # PATTERN CMD...
	local pat=$1; shift
	echo "  expect failure: $*" >&2
	if QUIET=1 "$@" >/dev/null 2>"$errs"; then echo "unexpectedly succeeded: $*"; return 1; fi
	[[ $(wc -l <"$errs") -eq 1 ]] || { cat "$errs"; return 1; }
	grep -qi -- "$pat" "$errs" || { cat "$errs"; return 1; }
	clean_ws
}
echo 'not json' >"$STATE/corrupt.json"
expect_fail "not valid JSON" kb connect --profile "$STATE/corrupt.json"
expect_fail "cannot read profile" kb connect --profile "$STATE/missing.json"
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); p["cert"]="garbage"; json.dump(p, open(sys.argv[2],"w"))' \
	"$STATE/alice.json" "$STATE/badcert.json"
chmod 600 "$STATE/badcert.json"	# private, as issued: no warning line
expect_fail "cert" kb connect --profile "$STATE/badcert.json"
ok "corrupt profile, missing profile, broken certificate: one-line errors"

"$KB_BIN/kbridge-agent" init --state-dir "$STATE/other-ca" --address 192.168.50.1:8443 >/dev/null
"$KB_BIN/kbridge-agent" issue --state-dir "$STATE/other-ca" --name eve --out "$STATE/eve.json" >/dev/null
expect_fail "manager's certificate is not trusted by this profile" kb connect --profile "$STATE/eve.json"
# eve's certificate with the right CA to check the manager: the manager refuses her
python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); a=json.load(open(sys.argv[2])); e["ca"]=a["ca"]; json.dump(e, open(sys.argv[3],"w"))' \
	"$STATE/eve.json" "$STATE/alice.json" "$STATE/mallory.json"
chmod 600 "$STATE/mallory.json"	# private, as issued: no warning line
expect_fail "manager refused this profile's certificate" kb connect --profile "$STATE/mallory.json"
ok "a profile from another CA is refused during the handshake, either way round, and says which side refused"

python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); p["manager"]="192.168.50.1:9"; json.dump(p, open(sys.argv[2],"w"))' \
	"$STATE/alice.json" "$STATE/closed.json"
chmod 600 "$STATE/closed.json"	# private, as issued: no warning line
expect_fail "cannot reach manager" kb connect --profile "$STATE/closed.json"
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); p["manager"]="203.0.113.1:8443"; json.dump(p, open(sys.argv[2],"w"))' \
	"$STATE/alice.json" "$STATE/unroutable.json"
chmod 600 "$STATE/unroutable.json"	# private, as issued: no warning line
expect_fail "cannot reach manager" kb connect --profile "$STATE/unroutable.json"
chmod 600 "$STATE/unroutable.json"	# private, as issued: no warning line
expect_fail "namespace" kb connect --profile "$STATE/alice.json" --namespace nosuchns
ok "unreachable manager (closed port, no route) and unknown namespace: clear errors"
# the daemon started for a failed connect is gone again
[[ $(kb status) == *"not running"* ]]
ok "no daemon is left behind by a failed connect"

for bad in 10.96.0.1/16 10.96.0.0/33 10.96.0.0 banana; do
	rc=0
	"$KB_BIN/kbridge-agent" manager --state-dir "$STATE/cluster" --listen 127.0.0.1:1 \
		--subnet "$bad" --namespace default 2>"$errs" || rc=$?
	[[ $rc -eq 2 && $(wc -l <"$errs") -eq 1 ]]
	grep -q "invalid subnet" "$errs"
done
ok "manager rejects invalid CIDRs with one line"

# manager still serves after all of the above
kb connect --profile "$STATE/alice.json" >/dev/null
[[ $(ws curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
kb quit >/dev/null
ok "manager still serves new sessions"

if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/ws/kbridged.sock.log "$STATE"/manager*.log
	ok "no sanitizer reports in the daemon and manager logs"
fi
echo "1..$n"
