#!/bin/bash
# The manager Pod that `kbridge install`'s Deployment makes, really run:
# scripts/playground run-pod creates the ReplicaSet and the Pod a
# controller would (owner references, node, pod IP) and starts the pod
# template's command, args and environment, as its securityContext's user,
# with a service-account token bound to that Pod, in the network namespace
# that has the Pod's IP (mgr). No hand-run manager (KB_PG_NO_MANAGER=1).
#
# The manifest as written runs: the manager in-cluster makes its CA in the
# Secret kbridge-manager-ca at the first start, learns the subnets and
# namespaces from the API, and reuses the CA when its pod is replaced.
set -euo pipefail
KB_PG_PREFIX=kbip
FAIL_LOGS=(kube/apiserver.log pods/kbridge/kbridge-manager/pod.log ws/kbridged.sock.log)
. "$(dirname "$0")/common.bash"

control_plane
K=$STATE/kube
P=$STATE/pods/kbridge/kbridge-manager
adm() { "$PG" kubectl "$@"; }
cleanup_extra() { alice quit >/dev/null 2>&1 || true; }
pod_name() { adm -n kbridge get pods -l app.kubernetes.io/name=kbridge-manager -o 'jsonpath={.items[*].metadata.name}'; }

KB_PG_NO_MANAGER=1 "$PG" up --k8s >/dev/null
pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" >/dev/null
ok "playground up --k8s without a hand-run manager; kbridge install into its kbridge namespace"

out=$("$PG" run-pod kbridge kbridge-manager)
pod=$(pod_name)
[[ $out == "pod kbridge/$pod runs in $KB_PG-mgr (10.244.0.10), pid "* ]] || { echo "$out"; exit 1; }
pid=$(cat "$P/pod.pid")
mapfile -d '' run <"$P/run"
want=(unshare --mount --propagation private -- bash -c)
[[ ${run[*]:0:${#want[@]}} == "${want[*]}" ]] || { echo "${run[*]}"; exit 1; }
run=("${run[@]:$((${#want[@]} + 2))}")
want=(setpriv --reuid=65532 --regid=65532 --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all env -i)
[[ ${run[*]:0:${#want[@]}} == "${want[*]}" ]] || { echo "${run[*]}"; exit 1; }
[[ " ${run[*]} " == *" $KB_BIN/kbridge-agent manager --in-cluster --listen=0.0.0.0:8443 --ca-secret=kbridge-manager-ca --state-secret=kbridge-manager-state --webhook-listen=0.0.0.0:8444 --sidecar-image=ghcr.io/kbridge/kbridge-agent:"* ]] ||
	{ echo "${run[*]}"; exit 1; }
[[ " ${run[*]} " == *" KB_NAMESPACE=kbridge "*" KB_POD_IP=10.244.0.10 "* ]]
# It listens once discovery has told the subnets and namespaces.
poll 100 listening mgr 8443
[[ $(pg mgr ss -Hltn 'sport = :8443' | awk '{print $4}') == 0.0.0.0:8443 ]]
[[ $(awk '/^Uid:/ {print $2, $3}' "/proc/$pid/status") == "65532 65532" ]]
[[ $(awk '/^NoNewPrivs:/ {print $2}' "/proc/$pid/status") == 1 ]]
[[ $(awk '/^CapBnd:/ {print $2}' "/proc/$pid/status") == 0000000000000000 ]]
env=$(tr '\0' '\n' <"/proc/$pid/environ")
for e in KB_NAMESPACE=kbridge "KB_POD_NAME=$pod" KB_POD_IP=10.244.0.10 KUBERNETES_SERVICE_HOST=10.96.0.1 \
	KUBERNETES_SERVICE_PORT=443 "KB_SERVICEACCOUNT_DIR=$P/serviceaccount"; do
	grep -qx "$e" <<<"$env" || { echo "missing $e in: $env"; exit 1; }
done
# readOnlyRootFilesystem: its mounts are read-only (the host's are not)
[[ $(awk '$5 == "/" {print substr($6, 1, 3)}' "/proc/$pid/mountinfo") == "ro," ]]
no nsenter -t "$pid" -m -- touch "$STATE/written" 2>/dev/null
touch "$STATE/rw" && rm "$STATE/rw"
no grep -q "stays writable" "$P/pod.log"
ok "run-pod starts the manifest as written (--in-cluster, uid 65532, no capabilities, read-only mounts, the pod's env); the manager listens on the Pod's 8443"

grep -q "created a cluster CA in Secret kbridge/kbridge-manager-ca" "$P/pod.log"
[[ $(adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.metadata.labels.app\.kubernetes\.io/managed-by} {.type}') == "kbridge Opaque" ]]
ca1=$(adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d)
[[ $ca1 == "-----BEGIN CERTIFICATE-----"* ]]
grep -q "discovery: cluster subnet 10.96.0.0/16" "$P/pod.log"
grep -q "discovery: cluster subnet 10.244.0.0/16" "$P/pod.log"
grep -q "manager listening on 0.0.0.0:8443: 2 subnets, " "$P/pod.log"
grep -q "certificate for DNS:kbridge-manager.kbridge.svc,DNS:kbridge-manager.kbridge.svc.cluster.local,IP:10.244.0.10,IP:10.96.0.20$" "$P/pod.log"
ok "at its first start the manager made its CA in Secret kbridge/kbridge-manager-ca (labelled managed-by=kbridge) and learnt the service range (ServiceCIDR) and the pod CIDR (the node's) from the API"

# Interim, until developers get their identity from Kubernetes (a CSR):
# the admin reads the CA out of the Secret and issues alice's profile
# offline with it.
mkdir -m 700 "$STATE/ca"
adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$STATE/ca/ca.crt"
adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.key}' | base64 -d >"$STATE/ca/ca.key"
echo '{"address":"192.168.50.1:8443"}' >"$STATE/ca/config.json"
"$KB_BIN/kbridge-agent" issue --state-dir "$STATE/ca" --name alice --out "$STATE/alice-pod.json" >/dev/null
rm "$STATE/ca/ca.key"

[[ $(adm -n kbridge get pod "$pod" -o 'jsonpath={.status.phase} {.status.podIP} {.spec.nodeName} {.metadata.ownerReferences[0].kind}') == "Running 10.244.0.10 playground-node ReplicaSet" ]]
rs=$(adm -n kbridge get pod "$pod" -o 'jsonpath={.metadata.ownerReferences[0].name}')
[[ $(adm -n kbridge get rs "$rs" -o 'jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.spec.template.spec.containers[0].args}') == *'Deployment/kbridge-manager ["--in-cluster"'* ]]
[[ $pod == "$rs-"????? ]]
ok "the Pod is the Deployment's: owned by a ReplicaSet it owns, Running on playground-node with the Pod IP"

sa=$P/serviceaccount
review=$(QUIET=1 pg mgr curl -sS -m 5 --cacert "$sa/ca.crt" -H "Authorization: Bearer $(cat "$sa/token")" \
	-H 'Content-Type: application/json' -X POST \
	-d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \
	https://10.96.0.1/apis/authentication.k8s.io/v1/selfsubjectreviews)
[[ $review == *'"username": "system:serviceaccount:kbridge:kbridge-manager"'* ]]
[[ $review == *'"authentication.kubernetes.io/pod-name": ['*"\"$pod\""* ]]
[[ $(stat -c %a "$sa/token") == 644 && $(cat "$sa/namespace") == kbridge ]]
ok "its service-account token (readable by the pod's user) authenticates as kbridge-manager, bound to that Pod"

alice connect --profile "$STATE/alice-pod.json" >/dev/null
[[ $(pg ws curl -sS -m 5 http://web.default/) == *web* ]]
ok "alice (a profile from the Secret's CA) connects through the pod's manager and reaches web.default"

# A namespace made after connect: the cluster DNS knows a name in it (the
# playground's DNS is static: the record is added by hand), the daemon
# sends it to the cluster once the manager has told it the namespace.
echo "10.96.0.31 web.late.svc.cluster.local" >>"$STATE/node/k8s.hosts"
kill -HUP "$(cat "$STATE/node/dnsmasq.pid")"
no pg ws getent hosts web.late >/dev/null 2>&1
t0=$(date +%s%N)
adm create namespace late >/dev/null
poll 50 pg ws getent hosts web.late
t1=$(date +%s%N)
[[ $(pg ws getent hosts web.late) == "10.96.0.31 "* ]]
echo "# namespace late resolved on ws $(((t1 - t0) / 1000000)) ms after kubectl create (bound: 2000 ms)"
ok "a namespace created after connect resolves on the workstation (polled up to 5 s)"

# A changed subnet list reaches the daemon and applies on its link and
# table (in ws's namespace), added and removed.
# (whole outputs, not grep -q in a pipe: an early exit is a SIGPIPE under pipefail)
route99() { [[ $(pg ws ip -4 route show 10.99.0.0/24) == *" dev kbridge"* ]]; }
nft99() { [[ $(pg ws nft list ruleset) == *10.99.0.0/24* ]]; }
link() { pg ws ip -o link show | awk -F': ' '/kbridge/ {print $1 ":" $2}'; }
l0=$(link)
[[ $l0 == *:kbridge* ]]
no route99
adm create -f - >/dev/null <<<'{"apiVersion":"networking.k8s.io/v1","kind":"ServiceCIDR","metadata":{"name":"extra"},"spec":{"cidrs":["10.99.0.0/24"]}}'
poll 50 route99 || { pg ws ip -4 route; pg ws ip -4 route show 10.99.0.0/24; exit 1; }
poll 50 nft99 || { pg ws nft list ruleset; exit 1; }
[[ $(pg ws nft list ruleset) == *10.96.0.0/16* ]]
grep -q "discovery: cluster subnet 10.99.0.0/24" "$P/pod.log"
[[ $(pg ws curl -sS -m 5 http://web.default/) == *web* ]]
adm delete servicecidr extra --wait=false >/dev/null
poll 100 no route99
poll 50 no nft99
[[ $(pg ws curl -sS -m 5 http://web.default/) == *web* && $(link) == "$l0" ]]
# One that takes the workstation link's own address is refused whole: the
# routes and the table stay as they were.
before=$(pg ws ip -4 route; pg ws nft list ruleset)
adm create -f - >/dev/null <<<'{"apiVersion":"networking.k8s.io/v1","kind":"ServiceCIDR","metadata":{"name":"clash"},"spec":{"cidrs":["198.18.0.0/24"]}}'
refused() { grep -q "subnets changed (3 now) but cannot be applied, the old ones stay: the link address collides with cluster subnet 198.18.0.0/24" "$STATE/ws/kbridged.sock.log"; }
poll 50 refused
[[ $(pg ws ip -4 route; pg ws nft list ruleset) == "$before" ]]
[[ $(pg ws curl -sS -m 5 http://web.default/) == *web* && $(link) == "$l0" ]]
adm delete servicecidr clash --wait=false >/dev/null
ok "a ServiceCIDR added and removed in the cluster: the daemon's route and redirect for it come and go on the same link and table, the session stays; one over the link's address is refused whole"

"$PG" run-pod kbridge kbridge-manager >/dev/null
new=$(pod_name)
[[ -n $new && $new != "$pod" ]]
[[ ! -r /proc/$pid/stat || $(cut -d' ' -f3 "/proc/$pid/stat") == [ZX] ]]
no adm -n kbridge get pod "$pod" >/dev/null 2>&1
poll 100 grep -q "the cluster CA is the one in Secret kbridge/kbridge-manager-ca" "$P/pod.log"
[[ $(adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d) == "$ca1" ]]
poll 100 pg ws curl -sS -m 2 -o /dev/null http://web.default/
[[ $(pg ws curl -sS -m 5 http://web.default/) == *web* ]]
ok "run-pod again replaces the pod (new name, the old process and object gone); the new manager reuses the Secret's CA and alice's daemon reconnects with the same profile"

# Where ServiceCIDRs cannot be read (an API server before v1.33, or RBAC):
# the range is in the error of a dry-run Service (the API server's own
# text, checked here as the admin sees it), and the manager uses it.
svc='{"apiVersion":"v1","kind":"Service","metadata":{"name":"probe"},"spec":{"clusterIP":"1.1.1.1","ports":[{"port":80}]}}'
out=$(adm -n kbridge create --dry-run=server -f - <<<"$svc" 2>&1) && { echo "$out"; exit 1; }
[[ $out == *"The range of valid IPs is 10.96.0.0/16"* ]] || { echo "$out"; exit 1; }
adm get clusterrole kbridge-manager -o json |
	python3 -c 'import json,sys
o = json.load(sys.stdin)
o["rules"] = [r for r in o["rules"] if "servicecidrs" not in r.get("resources", [])]
for r in o["rules"]:
	r["resources"] = [x for x in r.get("resources", []) if x != "nodes"]
print(json.dumps(o))' |
	adm replace -f - >/dev/null
[[ $(adm auth can-i list servicecidrs.networking.k8s.io --as=system:serviceaccount:kbridge:kbridge-manager 2>/dev/null || true) == no ]]
[[ $(adm auth can-i list nodes --as=system:serviceaccount:kbridge:kbridge-manager 2>/dev/null || true) == no ]]
n0=$(wc -l <"$P/pod.log")
"$PG" run-pod kbridge kbridge-manager >/dev/null
newlog() { tail -n "+$((n0 + 1))" "$P/pod.log"; }
up_again() { [[ $(newlog) == *"manager listening on"* ]]; }
poll 100 up_again
log=$(newlog)
[[ $log == *"discovery: ServiceCIDRs not available (403"* ]]
[[ $log == *"discovery: cluster subnet 10.96.0.0/16"* ]]
# no nodes to read: a range narrower than the node's /16 that holds every
# pod's address
[[ $log == *"discovery: nodes not available (403"* ]]
cover=$(grep -o "cluster subnet 10\.244\.[0-9.]*/[0-9]*" <<<"$log" | awk '{print $3}')
ips=$(adm get pods -A -o 'jsonpath={.items[*].status.podIP}')
python3 -c 'import ipaddress, sys
n = ipaddress.ip_network(sys.argv[1])
assert n.prefixlen > 16 and len(sys.argv) > 3
assert all(ipaddress.ip_address(i) in n for i in sys.argv[2:])' "$cover" $ips
[[ $log == *"manager listening on 0.0.0.0:8443: 2 subnets, "* ]]
no adm -n kbridge get service probe >/dev/null 2>&1
poll 100 pg ws curl -sS -m 2 -o /dev/null http://web.default/
ok "without ServiceCIDRs and nodes (RBAC) the manager takes the service range from a dry-run Service's error (nothing created) and the pod range from the pods' addresses; alice reconnects"

alice quit >/dev/null
npid=$(cat "$P/pod.pid")
"$PG" down >/dev/null
[[ ! -d /proc/$npid ]] || [[ $(cut -d' ' -f3 "/proc/$npid/stat") == [ZX] ]]
ok "down stops the pod's process"
