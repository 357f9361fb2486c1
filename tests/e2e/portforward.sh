#!/bin/bash
# shellcheck disable=SC2016 # jsonpath in single quotes
# The API server's pod port-forward, in the playground with --k8s: kwok is
# the node's kubelet API (TLS, verified by kube-apiserver with its kubelet
# client certificate) and forwards a pod's port to the pod's address.
#
#   ws: kbridge port-forward / kubectl port-forward (alice's kubeconfig)
#     127.0.0.1:N --wss 192.168.50.1:6443--> node: kube-apiserver
#         --https 10.244.0.1:10250 (kwok, node-local only)--> pod IP:PORT
#
# The manager is `kbridge install`'s, its pod run by `scripts/playground
# run-pod`. Alice holds what install's kbridge-developer ClusterRole and
# Role give (pods/portforward in the kbridge namespace only), and for the
# transfers the same in default (a Role of this test). Checked: bytes
# identical both ways (20 MiB, and 4 streams at once), a refused pod port
# and a missing permission each give one line, a cap of 64 streams, the
# pod picked again for each connection (a replaced manager pod, a newer
# Ready pod), kubectl's own port-forward. The transport: SPDY/3.1 tunnelled
# in the WebSocket (the API server takes SPDY/3.1+portforward.k8s.io), logged
# once on stderr; a half-close through it; KBRIDGE_PF_PROTOCOL=v4 falls back
# to v4.channel.k8s.io (bytes, the error channel, its log line).
set -euo pipefail
KB_PG_PREFIX=kbpf
FAIL_LOGS=(kube/apiserver.log kube/kwok.log pods/kbridge/kbridge-manager/pod.log pf.err)
. "$(dirname "$0")/common.bash"

control_plane
K=$STATE/kube
adm() { "$PG" kubectl "$@"; }
PF_PIDS=()
cleanup_extra() { local p; for p in "${PF_PIDS[@]}"; do kill "$p" 2>/dev/null; done; return 0; }

# kbridge port-forward as USER in ws, in the background: sets $addr, $port
# (PF_ENV: NAME=VALUE for it)
forward() { # USER NS SERVICE PORTS
	: >"$STATE/pf.out"
	: >"$STATE/pf.err"
	"$PG" exec ws -- env ${PF_ENV:-} timeout 300 "$KB_BIN/kbridge" port-forward --kubeconfig "$K/$1.kubeconfig" \
		-n "$2" "$3" "$4" >"$STATE/pf.out" 2>"$STATE/pf.err" &
	PF_PIDS+=($!)
	poll 50 test -s "$STATE/pf.out"
	addr=$(cat "$STATE/pf.out")
	port=${addr#127.0.0.1:}
	[[ $addr == 127.0.0.1:* && $port -gt 0 ]] || { echo "bad address '$addr'"; cat "$STATE/pf.err"; exit 1; }
}
unforward() {
	local p=${PF_PIDS[-1]}
	kill "$p"
	wait "$p" 2>/dev/null || true
	unset 'PF_PIDS[-1]'
}
# the forwarder's stderr but its transport lines
errs() { grep -v ': transport ' "$STATE/pf.err" || true; }
# its transport lines naming WHAT
transports() { grep -c ": transport $1" "$STATE/pf.err" || true; }
SPDY='SPDY/3.1 over WebSocket (SPDY/3.1+portforward.k8s.io)$'
# the forwarder's error lines after one connection through it
one_error() { # what the connection reads, then: exactly one line on stderr
	local got
	got=$(pg ws curl -sS -m 10 "http://$addr/" 2>&1 || true)
	poll 50 test -n "$(errs)"
	sleep 0.2
	[[ $(errs | wc -l) == 1 ]] || { echo "not one line:"; cat "$STATE/pf.err"; exit 1; }
	[[ $got != *hello* ]]
}

# the manager as `kbridge install` makes it: its Deployment's pod, run by
# run-pod (no hand-run manager)
KB_PG_NO_MANAGER=1 "$PG" up --k8s >/dev/null
[[ $(adm get node playground-node -o 'jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port} {.status.addresses[?(@.type=="InternalIP")].address}') == "10250 10.244.0.1" ]]
[[ -n $("$PG" exec node -- ss -Hltn 'src 10.244.0.1 and sport = :10250') ]]
no pg web timeout 3 bash -c 'exec 3<>/dev/tcp/10.244.0.1/10250' 2>/dev/null
ok "kwok serves the kubelet API on 10.244.0.1:10250 (the node's daemonEndpoints); pods cannot reach it"

# kubectl's own port-forward, as the admin
out=$("$PG" exec ws -- timeout 20 bash -c "$bin/kubectl --kubeconfig $K/admin.kubeconfig -n default port-forward pod/web 18080:80 >/dev/null 2>&1 & p=\$!; for i in \$(seq 50); do curl -s -m 5 http://127.0.0.1:18080/ && break; sleep 0.2; done; kill \$p")
[[ $out == *"hello from web"* ]] || { echo "kubectl port-forward: '$out'"; exit 1; }
ok "kubectl port-forward (admin) from ws to pod web:80 through the API server and kwok"

# alice: the kbridge-developer RBAC of kbridge install, bound as the README says
pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" >/dev/null
"$PG" run-pod kbridge kbridge-manager >/dev/null
pod1=$(adm -n kbridge get pods -l app.kubernetes.io/name=kbridge-manager -o 'jsonpath={.items[*].metadata.name}')
[[ $pod1 == kbridge-manager-* ]]
ok "kbridge install, and its manager pod running ($pod1)"

forward alice kbridge kbridge-manager 0:8443
one_error
grep -q '^kbridge: port-forward: kbridge/kbridge-manager:8443: HTTP 403: services "kbridge-manager" is forbidden: User "alice" cannot get resource "services"' "$STATE/pf.err" || { cat "$STATE/pf.err"; exit 1; }
unforward
ok "without a binding alice gets the API's 403 in one line (the connection is closed)"

adm create clusterrolebinding kbridge-dev-alice --clusterrole=kbridge-developer --user=alice >/dev/null
forward alice kbridge kbridge-manager 0:8443
one_error
grep -Eq '^kbridge: port-forward: kbridge/kbridge-manager:8443: HTTP 403: pods "kbridge-manager-[a-z0-9-]+" is forbidden: User "alice" cannot (get|create) resource "pods/portforward" in API group "" in the namespace "kbridge"$' "$STATE/pf.err" || { cat "$STATE/pf.err"; exit 1; }
unforward
ok "with the ClusterRole only, alice may read the Service and pods but not port-forward (403 for pods/portforward, one line)"

adm -n kbridge create rolebinding kbridge-dev-alice --role=kbridge-developer --user=alice >/dev/null
forward alice kbridge kbridge-manager 0:8443
manager_cert() { pg ws timeout 10 openssl s_client -connect "$addr" </dev/null 2>&1 | grep -c '^subject=O = kbridge-manager, CN = kbridge-manager$'; }
[[ $(manager_cert) == 1 ]] || { cat "$STATE/pf.err"; exit 1; }
[[ $(transports "$SPDY") == 1 && -z $(errs) ]] || { cat "$STATE/pf.err"; exit 1; }
ok "with the Role in kbridge, alice reaches the manager pod's TLS port through kbridge port-forward (transport SPDY/3.1 in the WebSocket, logged)"

# the manager's pod replaced (a new name): the same forwarder reaches it
"$PG" run-pod kbridge kbridge-manager >/dev/null
pod2=$(adm -n kbridge get pods -l app.kubernetes.io/name=kbridge-manager -o 'jsonpath={.items[*].metadata.name}')
[[ $pod2 == kbridge-manager-* && $pod2 != "$pod1" ]]
[[ $(manager_cert) == 1 ]] || { cat "$STATE/pf.err"; exit 1; }
[[ -z $(errs) && $(transports "") == 1 ]] || { cat "$STATE/pf.err"; exit 1; }
unforward
ok "after run-pod replaced the manager's pod ($pod2) the running forwarder reaches the new one"

# the same permissions in default, for the echo and web pods
adm -n default create role pf --verb=create,get --resource=pods/portforward >/dev/null
adm -n default create rolebinding pf-alice --role=pf --user=alice >/dev/null
forward alice default echo 0:7
out=$(pg ws timeout 120 python3 "$here/pfecho.py" 127.0.0.1 "$port" $((20 << 20)))
[[ $out == "ok 1 $((20 << 20)) "* ]] || { echo "$out"; cat "$STATE/pf.err"; exit 1; }
ok "20 MiB to the echo pod and back through kbridge port-forward, byte-identical (sha256; $(echo "$out" | cut -d' ' -f4) s)"
out=$(pg ws timeout 120 python3 "$here/pfecho.py" 127.0.0.1 "$port" $((5 << 20)) 4)
[[ $out == "ok 4 $((5 << 20)) "* ]] || { echo "$out"; cat "$STATE/pf.err"; exit 1; }
[[ -z $(errs) && $(transports "$SPDY") == 1 && $(transports "") == 1 ]] || { cat "$STATE/pf.err"; exit 1; }
ok "4 streams at once, 5 MiB each way each, byte-identical; no error reported, the transport logged once"

# SPDY half-closes: 3 MiB sent, then our side shut (a FIN on the data
# stream); the echo still comes back whole, then EOF (the pod's, or ours
# once the answer was idle for 2 s: kwok never ends a half-closed stream)
out=$(pg ws timeout 60 python3 -c '
import os, socket, sys, threading
d = os.urandom(3 << 20)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
def send():
    s.sendall(d)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = b""
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    got += b
t.join()
print("ok" if got == d else "%d of %d bytes back" % (len(got), len(d)))' "$port")
# and none stays behind: the forwarder's connections to the API server end
api_conns() { "$PG" exec ws -- ss -Htn state established '( dport = :6443 )'; }
poll 60 test -z "$(api_conns)" || { echo "left open:"; api_conns; exit 1; }
[[ $out == ok ]] || { echo "half-close: $out"; cat "$STATE/pf.err"; exit 1; }
[[ -z $(errs) ]] || { cat "$STATE/pf.err"; exit 1; }
ok "a half-close through SPDY: 3 MiB sent then our side shut; all of it echoed back, then EOF; no connection to the API server left open"

unforward
# a new forwarder: the streams above may still wait (at most 2 s) for
# the API server's answer to their close frame
forward alice default echo 0:7
out=$(pg ws timeout 120 python3 "$here/pfecho.py" --hold 127.0.0.1 "$port" 65)
[[ $out == 64 ]] || { echo "echoed on $out of 65 held connections"; exit 1; }
poll 50 grep -q "64 streams open already, connection refused" "$STATE/pf.err"
unforward
ok "at most 64 streams at once: the 65th connection is closed, one line says why"

# each connection picks the pod again: a newer Ready pod of the Service
# (web-2, which kwok forwards nothing for) is chosen, then web once it goes
forward alice default web 0:80
[[ $(pg ws curl -sS -m 10 "http://$addr/") == "hello from web (cluster)" ]]
adm apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: web-2
  namespace: default
  labels: {app: web}
  annotations: {playground.kbridge.dev/pod-ip: 10.244.1.10}
spec:
  nodeName: playground-node
  containers: [{name: web, image: nginx:1.27}]
EOF
poll 100 test "$(adm -n default get pod web-2 -o 'jsonpath={.status.phase}')" = Running
sleep 1.1 # a Ready time after web's, at the API's one-second resolution
one_error
grep -q '^kbridge: port-forward: default/web:80: error forwarding port 80 to pod web-2/default, uid : no forward found for port 80 in pod "default/web-2"$' "$STATE/pf.err" || { cat "$STATE/pf.err"; exit 1; }
adm -n default delete pod web-2 --wait=false >/dev/null
poll 100 no adm -n default get pod web-2
[[ $(pg ws curl -sS -m 10 "http://$addr/") == "hello from web (cluster)" ]]
unforward
ok "each connection picks the Service's pod again: the newest Ready one (web-2), then web when web-2 is gone"

forward alice default web 0:9
one_error
grep -q '^kbridge: port-forward: default/web:9: error forwarding port 9 to pod .*connect: connection refused$' "$STATE/pf.err" || { cat "$STATE/pf.err"; exit 1; }
unforward
ok "a pod port nobody listens on: the kubelet's error stream (SPDY) in one line"

# the fallback: KBRIDGE_PF_PROTOCOL=v4 offers v4.channel.k8s.io only
PF_ENV=KBRIDGE_PF_PROTOCOL=v4 forward alice default echo 0:7
out=$(pg ws timeout 120 python3 "$here/pfecho.py" 127.0.0.1 "$port" $((5 << 20)) 2)
[[ $out == "ok 2 $((5 << 20)) "* ]] || { echo "$out"; cat "$STATE/pf.err"; exit 1; }
[[ $(transports 'WebSocket (v4.channel.k8s.io) (KBRIDGE_PF_PROTOCOL=v4)$') == 1 &&
	$(transports "") == 1 && -z $(errs) ]] || { cat "$STATE/pf.err"; exit 1; }
unforward
PF_ENV=KBRIDGE_PF_PROTOCOL=v4 forward alice default web 0:9
one_error
grep -q '^kbridge: port-forward: default/web:9: error forwarding port 9 to pod .*connect: connection refused$' "$STATE/pf.err" || { cat "$STATE/pf.err"; exit 1; }
unforward
out=$(QUIET=1 pg ws env KBRIDGE_PF_PROTOCOL=spdy2 timeout 20 "$KB_BIN/kbridge" port-forward \
	--kubeconfig "$K/alice.kubeconfig" -n default echo 0:7 2>&1 >/dev/null) && { echo "bad KBRIDGE_PF_PROTOCOL accepted"; exit 1; }
[[ $(wc -l <<<"$out") == 1 && $out == *"KBRIDGE_PF_PROTOCOL: 'spdy2' is not v4 or auto"* ]] || { echo "$out"; exit 1; }
ok "KBRIDGE_PF_PROTOCOL=v4: the WebSocket v4.channel.k8s.io fallback (2 x 5 MiB echoed, its error channel in one line, logged); another value: one line, exit 1"

out=$("$PG" exec ws -- timeout 60 bash -c "$bin/kubectl --kubeconfig $K/alice.kubeconfig -n default port-forward pod/echo 18007:7 >/dev/null 2>&1 & p=\$!; for i in \$(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/18007) 2>/dev/null && break; sleep 0.2; done; python3 $here/pfecho.py 127.0.0.1 18007 $((4 << 20)); kill \$p")
[[ $out == "ok 1 $((4 << 20)) "* ]] || { echo "kubectl: $out"; exit 1; }
ok "kubectl port-forward as alice (same permissions) to the echo pod: 4 MiB byte-identical"
