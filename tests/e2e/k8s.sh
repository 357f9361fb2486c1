#!/bin/bash
# shellcheck disable=SC2016 # jsonpath and shell text in single quotes
# The playground's API server (scripts/playground up --k8s): a real
# kube-apiserver (Node,RBAC) on etcd in node, kwok for node and pod status.
#
#   ws   alice (client cert), carol (exec plugin) --> https://192.168.50.1:6443
#   bob  bob (static token)                       --> https://192.168.51.1:6443
#   mate                                           -X-> 6443 (dropped)
#   web pod                                        --> https://10.96.0.1:443
#   mgr pod (ServiceAccount token bound to it)     --> https://10.96.0.1:443
#
# It holds the playground as objects: namespaces, Services with the
# playground's cluster IPs, Pods Running with their namespace's address,
# EndpointSlices, the Node with its podCIDRs. Developers authenticate and,
# with no RoleBinding, may not list secrets. `down` leaves nothing.
set -euo pipefail
KB_PG_PREFIX=kbk
FAIL_LOGS=(kube/apiserver.log kube/kwok.log kube/etcd.log kube/apply.log)
. "$(dirname "$0")/common.bash"

control_plane
K=$STATE/kube
adm() { "$PG" kubectl "$@"; }
# kubectl as a developer: USER NODE ARG...
dev() { local u=$1 node=$2; shift 2; pg "$node" env KUBECACHEDIR="$K/cache" "$bin/kubectl" --kubeconfig "$K/$u.kubeconfig" --request-timeout=15s "$@"; }

# Missing binaries: a clear error, nothing created.
empty=$(mktemp -d /tmp/kbk8s.XXXXXX)
out=$(KB_CP_BIN=$empty "$PG" up --k8s 2>&1) && { echo "not ok - up --k8s without binaries succeeded"; exit 1; }
rmdir "$empty"
[[ $out == *"no $empty/etcd"* ]] || { echo "not ok - unclear error: $out"; exit 1; }
[[ ! -e $STATE && -z $(ip netns list | grep "^$KB_PG-") ]]
ok "up --k8s without the control plane binaries fails clearly, creates nothing"

"$PG" up --k8s >/dev/null
ok "up --k8s (the API server and its objects ready $(cat "$K/populate-seconds") s after the rest)"

[[ $("$PG" status) == *"kube-apiserver   https://192.168.50.1:6443"* ]]
for p in etcd apiserver kwok; do alive=$(cat "$K/$p.pid"); [[ -d /proc/$alive ]]; done
ok "status shows etcd, kube-apiserver and kwok running"

[[ $(adm get ns default shop kbridge -o 'jsonpath={range .items[*]}{.status.phase} {end}') == "Active Active Active " ]]
ok "namespaces default, shop, kbridge"

svcs=$(adm get svc -A -o 'jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}={.spec.clusterIP}:{.spec.ports[0].port} {end}')
for want in default/web=10.96.1.1:80 default/api=10.96.1.2:80 default/echo=10.96.1.3:7 \
	shop/cart=10.96.2.1:80 kbridge/kbridge-manager=10.96.0.20:8443 \
	default/kubernetes=10.96.0.1:443 kube-system/kube-dns=10.96.0.10:53; do
	[[ " $svcs " == *" $want "* ]] || { echo "missing service $want in: $svcs"; exit 1; }
done
ok "services with the playground's cluster IPs and ports"

pods=$(adm get pods -A -o 'jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}={.status.phase},{.status.podIP},{.spec.nodeName} {end}')
for want in default/web=Running,10.244.1.10 default/api=Running,10.244.1.11 \
	default/echo=Running,10.244.1.20 shop/cart=Running,10.244.2.10 \
	kbridge/kbridge-manager=Running,10.244.0.10; do
	[[ " $pods " == *" $want,playground-node "* ]] || { echo "missing pod $want in: $pods"; exit 1; }
done
ok "pods Running on playground-node with their namespace's address as podIP"

[[ $(adm -n default get svc web -o 'jsonpath={.spec.selector.app}') == web ]]
[[ $(adm -n default get pods -l app=web -o 'jsonpath={.items[*].metadata.name}') == web ]]
ok "service selectors match the pods' labels"

slices=$(adm get endpointslices -A -o 'jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.labels.kubernetes\.io/service-name}={.endpoints[0].addresses[0]}:{.ports[0].port},{.endpoints[0].conditions.ready} {end}')
for want in default/web=10.244.1.10: default/api=10.244.1.11: default/echo=10.244.1.20: \
	shop/cart=10.244.2.10: kbridge/kbridge-manager=10.244.0.10:8443 default/kubernetes=10.244.0.1:6443; do
	[[ " $slices " == *" $want"*",true "* ]] || { echo "missing endpointslice $want in: $slices"; exit 1; }
done
ok "EndpointSlices (discovery.k8s.io/v1) with the pod addresses, ready"

[[ $(adm get node playground-node -o 'jsonpath={.spec.podCIDRs[*]} {.status.conditions[?(@.type=="Ready")].status}') == "10.244.0.0/16 True" ]]
ok "node playground-node Ready with podCIDRs 10.244.0.0/16"

adm -n kbridge get secrets >/dev/null 2>&1
[[ $(adm auth can-i list secrets -n kbridge) == yes ]]
ok "admin (O=system:masters) may list secrets"

who() { dev "$1" "$2" auth whoami -o 'jsonpath={.status.userInfo.username}'; }
[[ $(who alice ws) == alice ]]
[[ $(who bob bob) == bob ]]
: >"$K/carol-credential.log"
[[ $(who carol ws) == carol ]]
[[ -s $K/carol-credential.log ]]
ok "alice (client cert, ws), bob (token, bob) and carol (exec plugin, ws) authenticate as themselves"

for u in alice:ws bob:bob carol:ws; do
	err=$(dev "${u%:*}" "${u#*:}" -n default get secrets 2>&1) && { echo "${u%:*} listed secrets"; exit 1; }
	[[ $err == *Forbidden*"User \"${u%:*}\" cannot list resource \"secrets\""* ]] || { echo "$err"; exit 1; }
done
ok "alice, bob and carol are forbidden to list secrets (RBAC)"

for u in admin alice carol; do grep -q 'server: https://192.168.50.1:6443' "$K/$u.kubeconfig"; done
grep -q 'server: https://192.168.51.1:6443' "$K/bob.kubeconfig"
ok "each kubeconfig names the address its developer's namespace reaches"

listening node 6443
no pg mate curl -sk -m 2 -o /dev/null https://192.168.60.1:6443/version
no pg mate curl -sk -m 2 -o /dev/null https://192.168.50.1:6443/version
pg node curl -sk -m 2 -o /dev/null https://192.168.60.1:6443/version
ok "mate cannot reach the API server (node itself can, at the same address)"

[[ $(pg web curl -sS -m 5 --cacert "$K/ca.crt" https://10.96.0.1:443/version) == *'"gitVersion": "v1.35'* ]]
[[ $(pg web curl -sS -m 5 --cacert "$K/ca.crt" https://kubernetes.default.svc/version) == *'"gitVersion"'* ]]
ok "the web pod reaches the API server at the kubernetes Service (https://10.96.0.1:443 and https://kubernetes.default.svc, certificate verified)"

sa=$STATE/mgr/serviceaccount
[[ $(cat "$sa/namespace") == kbridge ]]
review=$(QUIET=1 pg mgr curl -sS -m 5 --cacert "$sa/ca.crt" -H "Authorization: Bearer $(cat "$sa/token")" \
	-H 'Content-Type: application/json' -X POST \
	-d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \
	https://10.96.0.1/apis/authentication.k8s.io/v1/selfsubjectreviews)
[[ $review == *'"username": "system:serviceaccount:kbridge:kbridge-manager"'* ]]
[[ $review == *'"authentication.kubernetes.io/pod-name": ['*'"kbridge-manager"'* ]]
ok "the manager pod's ServiceAccount token (bound to the pod) authenticates in-cluster"

mapfile -t kpids < <(cat "$K"/{etcd,apiserver,kwok}.pid)
"$PG" down >/dev/null
for p in "${kpids[@]}"; do
	if [[ -r /proc/$p/stat ]]; then
		st=$(cut -d' ' -f3 "/proc/$p/stat")
		[[ $st == [ZX] ]] || { echo "pid $p still runs after down"; exit 1; }
	fi
done
[[ -z $(ip netns list | grep "^$KB_PG-") && ! -e $STATE ]]
ok "down stops etcd, kube-apiserver and kwok and removes every namespace and file"
