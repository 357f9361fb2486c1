#!/bin/bash
# shellcheck disable=SC2016 # jsonpath in single quotes
# A Service created after `kbridge connect` is reachable: the playground
# (up --k8s) does what the EndpointSlice controller, kube-proxy and CoreDNS
# would for Services created in the API server later (scripts/playground
# sync-services, and its follower started by up --k8s):
#
#   alice connects first; then the admin creates
#     default/late    ClusterIP 10.96.3.1:80, selector app=web, targetPort http
#     late-ns/echo    allocated ClusterIP :7, no selector, its author's
#                     EndpointSlice -> the echo pod 10.244.1.20:7
#     late-ns/evil    no selector, EndpointSlice -> 192.168.50.2 (ws): refused
#     default/late-headless (selector app=api), default/both (two endpoints)
#   -> node's table ip playground-services DNATs them, node's dnsmasq answers
#      NAME.NS.svc.cluster.local, from node, pods and alice's workstation;
#   deleting the Services removes the rules, records and the sync's slices;
#   the static playground's table is untouched throughout.
set -euo pipefail
KB_PG_PREFIX=kbs
FAIL_LOGS=(node/svcsync/follow.log node/services.hosts kube/apiserver.log manager.log)
. "$(dirname "$0")/common.bash"

control_plane
adm() { "$PG" kubectl "$@"; }
FOLLOW=$STATE/node/svcsync/follow.pid
# the cluster DNS's answer for NAME (empty: none)
answer() { QUIET=1 pg node dig +short +time=1 +tries=1 @10.96.0.10 "$1" A; }
resolves() { [[ $(answer "$1") == "$2" ]]; }
svc_rules() { QUIET=1 pg node nft list chain ip playground-services svc; }
has_rule() { [[ $(svc_rules) == *"$1"* ]]; }
hasnt_rule() { [[ $(svc_rules) != *"$1"* ]]; }
WEB="hello from web (cluster)"

"$PG" up --k8s >/dev/null
follower=$(cat "$FOLLOW")
[[ -d /proc/$follower && $("$PG" status) == *"svcsync(node)    pid $follower"* ]]
ok "up --k8s starts the sync follower (pid $follower, in status)"

static_before=$(pg node nft list table ip playground)
no resolves late.default.svc.cluster.local 10.96.3.1
alice connect --profile "$STATE/alice.json" >/dev/null
[[ $(pg ws curl -sS -m 5 http://web.default/) == "$WEB" ]]
# she even tries the name before it exists (a negative answer on her side)
no pg ws curl -sS -m 3 http://late.default/ 2>/dev/null
ok "alice connected before the Services exist (late.default does not resolve yet)"

t0=$(date +%s%N)
adm apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: late, namespace: default}
spec:
  clusterIP: 10.96.3.1
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: late-headless, namespace: default}
spec:
  clusterIP: None
  selector: {app: api}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: both, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: both-by-hand
  namespace: default
  labels: {kubernetes.io/service-name: both}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
- addresses: [10.244.1.10]
- addresses: [10.244.1.11]
---
apiVersion: v1
kind: Namespace
metadata: {name: late-ns}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: late-ns}
spec:
  ports: [{name: echo, port: 7}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-by-hand
  namespace: late-ns
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: echo, port: 7, protocol: TCP}]
endpoints:
- addresses: [10.244.1.20]
  conditions: {ready: true}
---
apiVersion: v1
kind: Service
metadata: {name: evil, namespace: late-ns}
spec:
  ports: [{name: ssh, port: 22}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: evil-by-hand
  namespace: late-ns
  labels: {kubernetes.io/service-name: evil}
addressType: IPv4
ports: [{name: ssh, port: 22, protocol: TCP}]
endpoints:
- addresses: [192.168.50.2]
EOF
eip=$(adm -n late-ns get svc echo -o 'jsonpath={.spec.clusterIP}')
[[ $eip == 10.96.* ]]
poll 30 resolves late.default.svc.cluster.local 10.96.3.1
poll 30 resolves echo.late-ns.svc.cluster.local "$eip"
poll 30 has_rule "ip daddr $eip tcp dport 7 dnat to 10.244.1.20:7"
ms=$((($(date +%s%N) - t0) / 1000000))
ok "the follower made records and rules ${ms} ms after the apply (echo.late-ns got $eip)"

ws_web() { [[ $(QUIET=1 pg ws curl -sS -m 5 "$1") == "$WEB" ]]; }
t0=$(date +%s%N)
poll 100 ws_web http://late.default/
ms=$((($(date +%s%N) - t0) / 1000000))
ws_web http://late.default.svc.cluster.local/
[[ $(printf 'ping from ws\n' | pg ws socat -t 3 - "TCP:$eip:7") == "ping from ws" ]]
ok "from alice's workstation (connected before): http://late.default/ reaches web (after ${ms} ms more), echo.late-ns at $eip"

[[ $(adm -n default get endpointslice late-sync -o 'jsonpath={.metadata.labels.kubernetes\.io/service-name} {.endpoints[*].addresses[0]}:{.ports[0].port} {.endpoints[0].targetRef.name}') == "late 10.244.1.10:80 web" ]]
has_rule "ip daddr 10.96.3.1 tcp dport 80 dnat to 10.244.1.10:80"
ok "EndpointSlice late-sync written as a controller would (named targetPort http -> 80), DNAT from it"

[[ $("$PG" sync-services) == "sync-services: 5 services, 0 slices written, 0 deleted" ]]
ok "sync-services one-shot: same result, nothing to rewrite"

[[ $(answer late-headless.default.svc.cluster.local) == 10.244.1.11 ]]
[[ $(pg api curl -sS -m 5 http://late-headless/) == "hello from api (cluster)" ]]
ok "a headless Service resolves to its pod (10.244.1.11)"

got=$(for i in $(seq 20); do QUIET=1 pg cart curl -sS -m 5 http://both.default/; done | sort | uniq -c)
[[ $got == *" hello from api (cluster)"*" hello from web (cluster)" ]] || { echo "$got"; exit 1; }
ok "a Service with two endpoints: both answer over 20 requests ($(echo $got))"

hasnt_rule 192.168.50.2
grep -q 'evil-by-hand: endpoint 192.168.50.2 is not a pod address' "$STATE/node/svcsync/follow.log"
ok "an EndpointSlice pointing outside the pod network (ws) is left out, with a warning"

lip=$(answer late.default.svc.cluster.local)
[[ $(pg node curl -sS -m 5 --resolve "late.default.svc.cluster.local:80:$lip" http://late.default.svc.cluster.local/) == "$WEB" ]]
[[ $(printf 'ping from node\n' | pg node socat -t 2 - "TCP:$eip:7") == "ping from node" ]]
ok "from node: late.default.svc.cluster.local reaches web, echo.late-ns answers at its ClusterIP"

[[ $(pg api curl -sS -m 5 http://late.default.svc.cluster.local/) == "$WEB" ]]
[[ $(pg api curl -sS -m 5 http://late/) == "$WEB" ]]
[[ $(pg cart curl -sS -m 5 http://late.default/) == "$WEB" ]]
[[ $(printf 'ping from api\n' | pg api socat -t 2 - TCP:echo.late-ns.svc.cluster.local:7) == "ping from api" ]]
ok "from pods: late (search path), late.default (from shop), echo.late-ns.svc.cluster.local"


adm delete svc late late-headless both >/dev/null
adm -n late-ns delete svc echo evil >/dev/null
poll 30 hasnt_rule 10.96.3.1
poll 30 hasnt_rule "$eip"
poll 30 resolves late.default.svc.cluster.local ""
poll 30 resolves echo.late-ns.svc.cluster.local ""
poll 30 resolves late-headless.default.svc.cluster.local ""
hasnt_rule "dnat to"
[[ -z $(adm -n default get endpointslices -l kubernetes.io/service-name=late -o name) ]]
no pg node curl -sS -m 3 http://10.96.3.1/ 2>/dev/null
no pg api curl -sS -m 3 http://10.96.3.1/ 2>/dev/null
ok "deleting the Services removes their rules, records and the sync's EndpointSlice"

[[ $(pg node nft list table ip playground) == "$static_before" ]]
[[ $(pg api curl -sS -m 5 http://web/) == "$WEB" && $(pg ws curl -sS -m 5 http://web.default/) == "$WEB" ]]
[[ $(pg ws curl -sS -m 5 http://cart.shop/) == "hello from cart (cluster)" ]]
ok "the static table ip playground is unchanged; static services still answer"

"$PG" down >/dev/null
if [[ -r /proc/$follower/stat ]]; then
	[[ $(cut -d' ' -f3 "/proc/$follower/stat") == [ZX] ]] || { echo "follower $follower runs after down"; exit 1; }
fi
[[ -z $(ip netns list | grep "^$KB_PG-") && ! -e $STATE ]]
ok "down stops the follower and removes everything"
