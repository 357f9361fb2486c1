#!/bin/bash
# `kbridge connect` with a kubeconfig, as a developer of a real cluster
# would: nothing but their kubeconfig and an admin's binding to
# kbridge-developer. The manager runs from `kbridge install`'s manifest
# (run-pod); the workstation reaches it only through the kube-apiserver's
# pod port-forward (WebSocket, to kwok's kubelet API, to the pod's IP), with
# a certificate the manager signed through a CSR:
#   alice (client certificate), carol (exec plugin) on ws, bob (token) on
#   bob: connect, status shows context and cluster, a service by name;
#   dave, not bound: one line, nothing left running;
#   connect again: nothing to do; quit: the forwarder ends;
#   a namespace created after connect resolves within 2 s, a Service
#   created after connect answers by name;
#   reinstall keeps the CA; the manager pod replaced: bob's session comes
#   back through the port-forward to the new pod, with the same certificate;
#   --manager-address reaches an exposed manager without the port-forward.
set -euo pipefail
KB_PG_PREFIX=kbkc
FAIL_LOGS=(kube/apiserver.log kube/kwok.log pods/kbridge/kbridge-manager/pod.log ws/kbridged.sock.log
	cache-alice/kbridge/port-forward.log)
. "$(dirname "$0")/common.bash"

control_plane
K=$STATE/kube
P=$STATE/pods/kbridge/kbridge-manager
adm() { "$PG" kubectl "$@"; }
# kb NODE USER ARGS: kbridge as USER (their kubeconfig, their cache)
kb() {
	local node=$1 user=$2
	shift 2
	QUIET=1 pg "$node" env XDG_CACHE_HOME="$STATE/cache-$user" HOME=/nonexistent \
		KUBECONFIG="$K/$user.kubeconfig" "$KB_BIN/kbridge" "$@"
}
cleanup_extra() { alice quit >/dev/null 2>&1 || true; bob quit >/dev/null 2>&1 || true; }
json() { python3 -c 'import json,sys; j=json.load(sys.stdin); '"$1"; }
bind() {
	adm create clusterrolebinding "kbridge-dev-$1" --clusterrole=kbridge-developer --user="$1" >/dev/null
	adm -n kbridge create rolebinding "kbridge-dev-$1" --role=kbridge-developer --user="$1" >/dev/null
}
# the pid of the port-forward serving 127.0.0.1:PORT in NODE
fwd_pid() { pg "$1" ss -Hltnp "sport = :$2" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1; }
# listeners of kbridge port-forward processes in NODE
forwarders() { pg "$1" ss -Hltnp | grep -c 'users:(("kbridge",' || true; }
mgr_port() { "$1" status -o json | json 'print(j["manager"].split(":")[1])'; }
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

KB_PG_NO_MANAGER=1 "$PG" up --k8s >/dev/null
pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" >/dev/null
"$PG" run-pod kbridge kbridge-manager >/dev/null
poll 100 listening mgr 8443
for u in alice bob carol; do bind "$u"; done
ok "install, the manager pod from the manifest, alice, bob and carol bound to kbridge-developer"

# alice: client certificate. The first connect makes her certificate.
t0=$(date +%s%N)
out=$(kb ws alice connect)
t_first=$(ms "$t0")
[[ $out == "Connected to 127.0.0.1:"*" (the API server's port-forward) as alice (namespace default)"* ]] ||
	{ echo "$out"; exit 1; }
[[ $out == *"context:         alice@playground"* && $out == *"cluster:         playground (https://192.168.50.1:6443)"* ]] ||
	{ echo "$out"; exit 1; }
st=$(alice status -o json)
json 'k=j["kube"]; assert j["state"] == "connected" and j["user"] == "alice", j
assert k == {"context": "alice@playground", "cluster": "playground", "server": "https://192.168.50.1:6443",
             "install_namespace": "kbridge", "via": "port-forward"}, k
assert j["manager"].startswith("127.0.0.1:"), j' <<<"$st"
text=$(alice status)
[[ $text == *"context:         alice@playground"* && $text == *"(the API server's port-forward)"* ]] || { echo "$text"; exit 1; }
[[ $(pg ws curl -sS -m 5 http://web.default/) == *web* ]]
# The manager's peer is kwok on the node (the port-forward), not the workstation.
peers=$(pg mgr ss -Htn state established 'sport = :8443' | awk '{print $4}')
[[ -n $peers ]] && no grep -q '^192\.168\.' <<<"$peers" || { echo "$peers"; exit 1; }
pf=$(fwd_pid ws "$(mgr_port alice)")
[[ -n $pf && $(tr '\0' ' ' <"/proc/$pf/cmdline") == *" port-forward "* ]]
echo "# alice: first connect (CSR, forwarder, daemon start, session) in $t_first ms"
ok "alice (client certificate): connect with her kubeconfig only: a CSR-signed identity, the manager through the API server's port-forward; status shows context and cluster; web.default answers"

out=$(kb ws alice connect)
[[ $out == "Connected to 127.0.0.1:"* ]] || { echo "$out"; exit 1; }
[[ $(fwd_pid ws "$(mgr_port alice)") == "$pf" ]]
[[ $(forwarders ws) == 1 ]] || { pg ws ss -Hltnp; exit 1; }
ok "connect again with the same kubeconfig: nothing to do (the same forwarder, no second one)"

# A namespace created now resolves within 2 s (discovery -> cluster message).
adm create namespace late >/dev/null
t0=$(date +%s%N)
has_late() { alice status -o json | json 'assert "late" in j["namespaces"]' 2>/dev/null; }
poll 20 has_late
echo "# namespace late known on the workstation after $(ms "$t0") ms"
ok "a namespace created after connect is served on the workstation within 2 s"

# A Service created now: the playground's follower does what kube-proxy
# and CoreDNS would; kbridge needs nothing for it.
adm apply -f - >/dev/null <<'EOF2'
apiVersion: v1
kind: Service
metadata: {name: late, namespace: default}
spec:
  clusterIP: 10.96.3.1
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
EOF2
late() { [[ $(QUIET=1 pg ws curl -sS -m 2 http://late.default/ 2>/dev/null) == *web* ]]; }
poll 100 late
ok "a Service created after connect is reachable by name from the workstation"

alice quit >/dev/null
gone() { [[ ! -e /proc/$pf ]]; }
poll 150 gone
ok "quit: the forwarder ends by itself once kbridged is gone"

# carol: an exec credential plugin (run as the user, by the CLI and the forwarder)
runs0=$(wc -l <"$K/carol-credential.log")
t0=$(date +%s%N)
kb ws carol connect >/dev/null 2>"$STATE/carol-connect.err"
t_carol=$(ms "$t0")
no grep -q 'timing' "$STATE/carol-connect.err"
alice status -o json | json 'assert j["user"] == "carol" and j["kube"]["context"] == "carol@playground", j'
[[ $(pg ws curl -sS -m 5 http://web.default/) == *web* ]]
(($(wc -l <"$K/carol-credential.log") > runs0))
echo "# carol: first connect in $t_carol ms"
alice quit >/dev/null
t0=$(date +%s%N)
KBRIDGE_TIMING=1 kb ws carol connect >/dev/null 2>"$STATE/carol-timing.err"
[[ $(pg ws curl -sS -m 5 -o /dev/null -w '%{http_code}' http://web.default/) == 200 ]]
t_warm=$(ms "$t0")
echo "# carol: connect (cached certificate) to the first answer from web.default in $t_warm ms"
# KBRIDGE_TIMING: one line (scripts/bench k8sconnect reads it); the cached
# certificate: API requests (who am I, the CA, permissions) but no wait for a signature
python3 - "$STATE/carol-timing.err" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
m = re.fullmatch(r'kbridge: timing: prepare_ms=([\d.]+) api_ms=([\d.]+) api_requests=(\d+) csr_wait_ms=([\d.]+) '
                 r'daemon_ms=([\d.]+) connect_ms=([\d.]+) total_ms=([\d.]+)\n', t)
assert m, repr(t)
prep, api, n, wait, daemon, conn, total = map(float, m.groups())
assert n >= 3 and wait == 0 and 0 < api <= prep and conn > 0 and prep + daemon + conn <= total + 0.5, t
PY
alice quit >/dev/null
ok "carol (exec plugin): connects, reaches web.default; again with the cached certificate (KBRIDGE_TIMING: where the time went)"

# bob: a bearer token, on his own machine
kb bob bob connect >/dev/null
bob status -o json | json 'assert j["user"] == "bob" and j["kube"]["context"] == "bob@playground", j'
[[ $(pg bob curl -sS -m 5 http://api.default/) == *api* ]]
ok "bob (token): connects from his machine and reaches api.default"

# dave: a certificate of the cluster's CA, no binding: one line, nothing left.
no_forwarders() { [[ $(forwarders ws) == 0 ]]; }
poll 100 no_forwarders	# carol's ended with her session
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=dave \
	-keyout "$K/dave.key" -out "$STATE/dave.csr" 2>/dev/null
openssl x509 -req -in "$STATE/dave.csr" -CA "$K/ca.crt" -CAkey "$K/ca.key" -days 1 \
	-out "$K/dave.crt" 2>/dev/null
sed -e "s|client-certificate: alice.crt|client-certificate: dave.crt|" \
	-e "s|client-key: alice.key|client-key: dave.key|" -e "s/alice/dave/g" "$K/alice.kubeconfig" >"$K/dave.kubeconfig"
chmod 600 "$K/dave.kubeconfig" "$K/dave.key"
out=$(kb ws dave connect 2>&1) && { echo "$out"; exit 1; }
[[ $(wc -l <<<"$out") == 1 && $out == "kbridge: connect: dave may not "*"(ask an admin to bind "*"kbridge-developer"*")" ]] ||
	{ echo "$out"; exit 1; }
rc=0; out=$(alice status) || rc=$?
[[ $rc == 1 && $out == "kbridged: not running" ]] || { echo "$rc $out"; exit 1; }
[[ $(forwarders ws) == 0 ]]
# bound to the CSR part only (ClusterRole), not to the namespace's Role: the port-forward is missing
adm create clusterrolebinding kbridge-dev-dave --clusterrole=kbridge-developer --user=dave >/dev/null
adm -n kbridge create rolebinding dave-ca --role=kbridge-developer --user=dave >/dev/null
adm -n kbridge get role kbridge-developer -o json | python3 -c 'import json,sys
r=json.load(sys.stdin); r["rules"]=[x for x in r["rules"] if "pods/portforward" not in x.get("resources",[])]
r["metadata"]={"name":"dave-ca","namespace":"kbridge"}; print(json.dumps(r))' | adm apply -f - >/dev/null
adm -n kbridge patch rolebinding dave-ca --type=json -p '[{"op":"replace","path":"/roleRef/name","value":"dave-ca"}]' >/dev/null 2>&1 ||
	{ adm -n kbridge delete rolebinding dave-ca >/dev/null; adm -n kbridge create rolebinding dave-ca --role=dave-ca --user=dave >/dev/null; }
out=$(kb ws dave connect 2>&1) && { echo "$out"; exit 1; }
[[ $out == "kbridge: connect: dave may not get pods/portforward in namespace kbridge (ask an admin to bind ClusterRole kbridge-developer)" ]] ||
	{ echo "$out"; exit 1; }
ok "dave, not bound: one line naming what to ask for, no daemon or forwarder left; without pods/portforward: that permission named"

# Reinstall keeps the CA; then the manager pod is replaced: bob's session
# comes back by itself through the port-forward, to the new pod.
ca0=$(adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}')
pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" >/dev/null
[[ $(adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}') == "$ca0" ]]
r0=$(bob status -o json | json 'print(j["reconnects"])')
pod0=$(adm -n kbridge get pods -l app.kubernetes.io/name=kbridge-manager -o 'jsonpath={.items[*].metadata.name}')
"$PG" run-pod kbridge kbridge-manager >/dev/null
pod1=$(adm -n kbridge get pods -l app.kubernetes.io/name=kbridge-manager -o 'jsonpath={.items[*].metadata.name}')
[[ $pod1 != "$pod0" ]]
back() { bob status -o json | json "assert j['state'] == 'connected' and j['reconnects'] >= $r0 + 1, j" 2>/dev/null; }
poll 300 back
[[ $(pg bob curl -sS -m 5 http://api.default/) == *api* ]]
ok "reinstall keeps the CA; the manager pod replaced ($pod0 -> $pod1): bob's session is back through the port-forward to the new pod with the same certificate"
bob quit >/dev/null

# An exposed manager: --manager-address, no port-forward (and no forwarder).
bob_no_forwarders() { [[ $(forwarders bob) == 0 ]]; }
poll 100 bob_no_forwarders	# the last one ended with bob's session
kb bob bob connect --manager-address 192.168.51.1:8443 >/dev/null
bob status -o json | json 'assert j["manager"] == "192.168.51.1:8443" and j["kube"]["via"] == "address", j'
[[ $(pg bob curl -sS -m 5 http://api.default/) == *api* ]]
[[ $(forwarders bob) == 0 ]]
out=$(kb bob bob connect --profile /dev/null --context x 2>&1) && exit 1
[[ $out == "kbridge: connect: --profile names the manager and identity; it cannot be combined with --kubeconfig, --context or --manager-*" ]] ||
	{ echo "$out"; exit 1; }
bob quit >/dev/null
ok "--manager-address: the same identity straight to an exposed manager; --profile with kubeconfig options: one line"

# Uninstall after real use (the manager made its CA Secret and ConfigMap and
# state): nothing of kbridge's is left; a second uninstall has nothing to do.
out=$(kb ws admin uninstall 2>&1) || { echo "$out"; exit 1; }
left=$(adm get clusterroles,clusterrolebindings -l app.kubernetes.io/managed-by=kbridge -o name)
[[ -z $left ]] || { echo "$left"; exit 1; }
# (the playground made the namespace kbridge before install: it stays; no
# garbage collector runs here: the ReplicaSet and Pod run-pod made stay)
[[ -z $(adm get ns kbridge -o 'jsonpath={.metadata.deletionTimestamp}') ]]
left=$(adm -n kbridge get deployments,services,serviceaccounts,roles,rolebindings,secrets,configmaps \
	-l app.kubernetes.io/managed-by=kbridge -o name)
[[ -z $left ]] || { echo "$left"; exit 1; }
out=$(kb ws admin uninstall)
[[ $out == "nothing to do: kbridge is not installed in namespace kbridge" ]] || { echo "$out"; exit 1; }
ok "uninstall after use leaves nothing of kbridge's (its Secrets and CA ConfigMap too); again: nothing to do"
