#!/bin/bash
# shellcheck disable=SC2143,SC2016 # '! cmd' would not trip set -e
# Tests the playground itself: topology, services, DNS, isolation, teardown.
#
#   ws 192.168.50.2 --- node (cbr0 10.244.0.1, DNAT 10.96/16, dns 10.96.0.10)
#   bob 192.168.51.2 -/  |  \- mate 192.168.60.2
#        mgr 10.244.0.10  web 10.244.1.10  api 10.244.1.11
#        echo 10.244.1.20 cart 10.244.2.10
#
# The manager is tested elsewhere: this runs with KB_PG_NO_MANAGER=1 and a
# socat stand-in on the manager's ports.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
PG=$here/../../scripts/playground
export KB_PG=kbpgt$$
export KB_PG_STATE=/run/kbridge-playground/$KB_PG
export KB_PG_NO_MANAGER=1
STATE=$KB_PG_STATE
NODES="ws bob mate node mgr web api echo cart"
n=0
pids=()

cleanup() {
	local rc=$?
	"$PG" down >/dev/null 2>&1 || true
	((rc == 0)) || echo "not ok - failed (rc $rc) at test $((n + 1))"
	exit $rc
}
trap cleanup EXIT

ok() { n=$((n + 1)); echo "ok $n - $*"; }
# pretty-print and run in a namespace: "ws curl ..." etc.
pg() { local node=$1; shift; echo "  [$node] $*" >&2; "$PG" exec "$node" -- "$@"; }
ws() { pg ws "$@"; }
web() { pg web "$@"; }
fails() { ! "$@" >/dev/null 2>&1; }

"$PG" up >/dev/null
ok "up"

[[ $("$PG" up) == *"already up"* ]]
ok "second up is a no-op"

"$PG" status >/dev/null
ok "status reports up"

for node in $NODES; do ip netns list | grep -q "^$KB_PG-$node\b"; done
ok "all nine namespaces exist"

[[ $(web curl -sS -m2 http://api.default.svc.cluster.local/) == "hello from api (cluster)" ]]
ok "web -> api.default.svc.cluster.local via cluster DNS and service"

[[ $(web curl -sS -m2 http://api/) == "hello from api (cluster)" ]]
ok "web -> http://api/ via the search list"

[[ $(web curl -sS -m2 http://10.96.2.1/) == "hello from cart (cluster)" ]]
ok "web -> cart service by cluster IP"

[[ $(pg cart curl -sS -m2 http://web.default/api/hello) == "cluster api" ]]
ok "cart -> web.default/api/hello"

[[ $(pg api curl -sS -m2 http://10.244.2.10/) == "hello from cart (cluster)" ]]
ok "api -> cart pod IP"

[[ $(web curl -sS -m2 http://web/) == "hello from web (cluster)" ]]
ok "web -> its own service (hairpin)"

[[ $(echo "ping $$" | pg api socat -t2 - TCP:10.96.1.3:7,connect-timeout=2) == "ping $$" ]]
[[ $(echo "pong" | web socat -t2 - TCP:echo.default.svc.cluster.local:7) == "pong" ]]
ok "echo service echoes"

web dig +time=1 +tries=1 @10.96.0.10 nope.default.svc.cluster.local | grep -q 'status: NXDOMAIN'
[[ $(web dig +short @10.96.0.10 kbridge-manager.kbridge.svc.cluster.local) == 10.96.0.20 ]]
[[ $(web dig +short @10.96.0.10 kube-dns.kube-system.svc.cluster.local) == 10.96.0.10 ]]
ok "cluster DNS: records and NXDOMAIN"

head -c 3000000 /dev/urandom >"$STATE/data/blob"
[[ $(web curl -sS -m5 http://cart.shop/data/blob | sha256sum) == "$(sha256sum <"$STATE/data/blob")" ]]
ok "/data/ serves state dir files"

web ss -Hltn 'sport = :5201' | grep -q LISTEN
pg api iperf3 -c 10.244.1.10 -p 5201 -n 1M >/dev/null
ok "iperf3 server in web"

fails ws curl -sS -m2 http://10.96.1.1/
fails ws curl -sS -m2 http://10.244.1.10/
[[ -z $(ws ip route show 10.96.0.0/16) && -z $(ws ip route show default) ]]
ok "ws has no route into the cluster"

[[ $(ws getent hosts outside.test) == "192.0.2.10"*outside.test ]]
fails ws getent hosts web.default.svc.cluster.local
ok "ws resolves outside.test only"

[[ $(pg mate getent hosts x.preview.kb.test) == "192.168.60.1"*x.preview.kb.test ]]
[[ $(pg mate getent hosts preview.kb.test) == "192.168.60.1"*preview.kb.test ]]
fails pg mate getent hosts web.default.svc.cluster.local
ok "mate resolves preview.kb.test and *.preview.kb.test to the preview listener"

[[ $(pg api curl -sS -m2 http://web.default/) == "hello from web (cluster)" ]]
pg api curl -sS -m2 -H 'Accept: text/html' http://web.default/ | grep -q "web: the cluster's version"
ok "web serves a browser (Accept: text/html) an HTML page, curl the text"

[[ -z $(ip -4 route show table all | grep -E '(^|[^0-9.])10\.(96|244)\.') ]]
[[ -z $(ip -4 addr show | grep -E 'inet 10\.(96|244)\.') ]]
ok "host namespace has no cluster routes or addresses"

# stand-ins for the manager's TLS and preview ports
for port in 8443 8080; do
	ip netns exec "$KB_PG-mgr" socat TCP-LISTEN:$port,fork,reuseaddr SYSTEM:"echo mgr$port" </dev/null >/dev/null 2>&1 &
	pids+=($!)
done
for port in 8443 8080; do
	for _ in $(seq 100); do
		[[ -n $(ip netns exec "$KB_PG-mgr" ss -Hltn "sport = :$port") ]] && break
		sleep 0.05
	done
done
[[ $(ws socat -t1 - TCP:192.168.50.1:8443,connect-timeout=2 </dev/null) == mgr8443 ]]
[[ $(pg bob socat -t1 - TCP:192.168.51.1:8443,connect-timeout=2 </dev/null) == mgr8443 ]]
[[ $(pg bob socat -t1 - TCP:192.168.50.1:8443,connect-timeout=2 </dev/null) == mgr8443 ]]
[[ $(web socat -t1 - TCP:10.96.0.20:8443,connect-timeout=2 </dev/null) == mgr8443 ]]
ok "manager port reachable from ws, bob and pods"

[[ $(pg mate socat -t1 - TCP:192.168.60.1:8080,connect-timeout=2 </dev/null) == mgr8080 ]]
fails pg mate socat -t1 - TCP:192.168.60.1:8443,connect-timeout=1
fails ws socat -t1 - TCP:192.168.50.1:8080,connect-timeout=1
fails ws socat -t1 - TCP:192.168.50.1:53,connect-timeout=1
ok "mate reaches only the preview port; ws only the TLS port"

# even with routes of its own, ws gets nothing but the DNATed port
ip -n "$KB_PG-ws" route add 10.244.0.0/16 via 192.168.50.1
ip -n "$KB_PG-ws" route add 10.96.0.0/16 via 192.168.50.1
fails ws curl -sS -m1 http://10.244.1.10/
fails ws curl -sS -m1 http://10.244.0.10:8443/
fails ws dig +time=1 +tries=1 @10.96.0.10 web.default.svc.cluster.local
ip -n "$KB_PG-ws" route del 10.244.0.0/16
ip -n "$KB_PG-ws" route del 10.96.0.0/16
ok "node forwards nothing else from ws, even with routes"

ip netns exec "$KB_PG-ws" socat TCP-LISTEN:9999,reuseaddr SYSTEM:'echo ws' </dev/null >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	[[ -n $(ip netns exec "$KB_PG-ws" ss -Hltn "sport = :9999") ]] && break
	sleep 0.05
done
fails pg mgr socat -t1 - TCP:192.168.50.2:9999,connect-timeout=1
[[ $(ws socat -t1 - TCP:127.0.0.1:9999,connect-timeout=1 </dev/null) == ws ]]
ok "the cluster cannot connect to the workstation"

[[ $("$PG" exec ws -- sh -c 'echo $KBRIDGE_SOCKET') == "$STATE/ws/kbridged.sock" ]]
[[ $(KBRIDGE_SOCKET=/x "$PG" exec bob -- sh -c 'echo $KBRIDGE_SOCKET') == /x ]]
ok "exec sets KBRIDGE_SOCKET for workstations"

kill "$(cat "$STATE/node/dnsmasq.pid")"
for _ in $(seq 100); do "$PG" status >/dev/null || break; sleep 0.05; done
fails "$PG" status
[[ $("$PG" up) == *"partially up"* ]]
"$PG" status >/dev/null
[[ $(web curl -sS -m2 http://api/) == "hello from api (cluster)" ]]
ok "up recreates a partial playground"

( KB_PG_NO_MANAGER='' KB_BIN=/nonexistent KB_PG=kbpgu$$ "$PG" up 2>&1 || true ) | grep -q "build first: make"
[[ -z $(ip netns list | grep "^kbpgu$$-") ]]
ok "up without kbridge-agent fails clearly and creates nothing"

# everything that runs in the playground, to check it is gone after down
before=()
for node in $NODES; do mapfile -t -O "${#before[@]}" before < <(ip netns pids "$KB_PG-$node"); done
((${#before[@]} >= 10))
"$PG" down
[[ -z $(ip netns list | grep "^$KB_PG-") ]]
[[ -z $(ls -d /etc/netns/"$KB_PG"-* 2>/dev/null) ]]
[[ ! -e $STATE ]]
for pid in "${before[@]}" "${pids[@]}"; do
	st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1) || true
	[[ -z $st || $st == Z ]]
done
ok "down removes namespaces, /etc/netns, state and ${#before[@]} processes"

"$PG" down
fails "$PG" status
ok "down is idempotent; status reports down"
