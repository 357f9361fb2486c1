#!/bin/bash
# Issue 13's acceptance, the numeric targetPort (tests/e2e/kaccept.sh has the
# named one): Deployment num (2 replicas of the playground's app image, its
# containerPort 8080 unnamed) behind Service num (port 80, targetPort 8080),
# run by scripts/playground follow-deployments --run; alice intercepts it.
#   - kbridge intercept num -H x-dev=alice: kbridge.dev/port 8080; the
#     webhook's pods have init container kbridge-redirect (run to the end as
#     root with NET_ADMIN in the pod's namespace: its nftables table sends
#     the pod's port 8080 to the sidecar's 9901) and the sidecar (running,
#     registered); the EndpointSlice keeps port 8080;
#   - with the header: alice's server, through each pod's own IP:8080 (the
#     redirect) and through the Service; without: the app, both pods;
#   - uninstall --agents: `kubectl get -o yaml` of the Deployment as before
#     (apart from generation, resourceVersion, status), pods without the
#     sidecar or the redirect, the app on both pods through the Service.
set -euo pipefail
KB_PG_PREFIX=kbkn
FAIL_LOGS=(kube/apiserver.log pods/kbridge/kbridge-manager/pod.log follow.log ws/kbridged.sock.log)
. "$(dirname "$0")/common.bash"

L=8090
kube_developer "$L"

app_workload Deployment num 2 numeric | adm apply -f - >/dev/null
before=$(spec_of num)
follow --run 300
poll 300 ready deployment num 2

# the running pods: name, address, network namespace, init containers, containers
pods() {
	adm get pods -l app=num -o json | json '
for p in j["items"]:
    if p["metadata"].get("deletionTimestamp") or p["status"].get("phase") != "Running":
        continue
    s = p["spec"]
    print(p["metadata"]["name"], p["status"]["podIP"], p["metadata"]["annotations"]["playground.kbridge.dev/netns"],
          ",".join(c["name"] for c in s.get("initContainers", [])) or "-",
          ",".join(c["name"] for c in s["containers"]))'
}
# the names and addresses of the 2 running pods whose containers are $1
two_pods() {
	local l nm ip nsn ic cs
	mapfile -t P < <(pods)
	((${#P[@]} == 2)) || return 1
	names=() ips=() nss=()
	for l in "${P[@]}"; do
		read -r nm ip nsn ic cs <<<"$l"
		[[ "$ic $cs" == "$1" ]] || return 1
		names+=("$nm") ips+=("$ip") nss+=("$nsn")
	done
}
poll 100 two_pods "- app"
cip=$(adm get service num -o 'jsonpath={.spec.clusterIP}')
both_apps() { eq "$(answers 16 "$@")" "$(printf 'hello from %s\n' "${names[@]}" | sort)"; }
poll 100 serves "$cip"
both_apps "http://$cip/"
for i in 0 1; do eq "$(get "http://${ips[i]}:8080/")" "hello from ${names[i]}"; done
first_ns=("${nss[@]}")
ok "Service num (numeric targetPort 8080, the container port unnamed): both pods answer, through the cluster IP and their own address"

out=$(kb intercept num --port "$L" --http-header x-dev=alice --wait-timeout 90 2>&1) ||
	{ echo "$out"; exit 1; }
echo "$out" | sed 's/^/#   /'
grep -qx "waiting for 2 replicas of deployment/num to run the kbridge sidecar: 2/2 ready" <<<"$out"
eq "$(adm get deployment num -o 'jsonpath={.spec.template.metadata.annotations.kbridge\.dev/port}')" 8080
poll 100 two_pods "kbridge-redirect app,kbridge-sidecar"
for i in 0 1; do
	d=$STATE/runpods/p${ips[i]##*.}
	[[ " ${first_ns[*]} " != *" ${nss[i]} "* && -e /run/netns/${nss[i]} ]]
	grep -q "registered num.default (http) with the manager" "$d/kbridge-sidecar.log"
	# the init container ran (and ended: no process of it left), the table is there
	[[ -e $d/kbridge-redirect.log ]]
	rules=$(ip netns exec "${nss[i]}" nft list ruleset)
	grep -q "tcp dport 8080 redirect to :9901" <<<"$rules" || { echo "$rules"; exit 1; }
	for p in $(ip netns pids "${nss[i]}"); do
		! tr '\0' ' ' <"/proc/$p/cmdline" | grep -q "kbridge-agent redirect"
	done
done
eq "$(adm get pods -l app=num -o 'jsonpath={.items[0].spec.initContainers[0].securityContext.capabilities.add[0]}')" NET_ADMIN
slice8080() {
	adm get endpointslices -l kubernetes.io/service-name=num -o json | json '
eps = sorted(a for s in j["items"] for e in s.get("endpoints") or [] for a in e["addresses"])
ports = {p["port"] for s in j["items"] if s.get("endpoints") for p in s["ports"]}
assert eps == sorted(sys.argv[1].split()) and ports == {8080}, (eps, ports)' "$1"
}
poll 100 slice8080 "${ips[*]}"
ok "intercept: kbridge.dev/port 8080; the new pods ran init container kbridge-redirect (NET_ADMIN; its table sends 8080 to the sidecar's 9901) and registered their sidecar; the EndpointSlice keeps port 8080"

poll 50 to_alice "$cip"
for i in 0 1; do
	# the pod's own IP and port 8080: the redirect takes it to the sidecar
	eq "$(answers 4 -H 'x-dev: alice' "http://${ips[i]}:8080/direct")" "alice local: GET /direct"
	eq "$(answers 4 "http://${ips[i]}:8080/")" "hello from ${names[i]}"
	eq "$(get -H 'x-dev: bob' "http://${ips[i]}:8080/")" "hello from ${names[i]}"
done
eq "$(answers 8 -H 'x-dev: alice' "http://$cip/x")" "alice local: GET /x"
eq "$(answers 8 -H 'x-dev: alice' http://num.default.svc.cluster.local/x)" "alice local: GET /x"
both_apps "http://$cip/"
both_apps -H 'x-dev: bob' http://num.default.svc.cluster.local/
ok "with x-dev=alice: alice's server, on both pods' IP:8080 (redirected to the sidecar) and through the Service; without (or bob's): the app, both pods"

inj_ns=("${nss[@]}")
out=$(kb uninstall --agents)
[[ $out == "deployment/num in namespace default: sidecar removed"* ]] || { echo "$out"; exit 1; }
poll 300 two_pods "- app"
poll 100 ready deployment num 2
eq "$(spec_of num)" "$before"
for x in "${inj_ns[@]}"; do [[ ! -e /run/netns/$x ]]; done
for i in 0 1; do
	[[ -z $(ip netns exec "${nss[i]}" nft list ruleset) ]]
done
poll 100 slice8080 "${ips[*]}"
poll 50 serves "$cip"
both_apps -H 'x-dev: alice' "http://$cip/"
for i in 0 1; do eq "$(get -H 'x-dev: alice' "http://${ips[i]}:8080/")" "hello from ${names[i]}"; done
ok "uninstall --agents: the Deployment's kubectl get -o yaml as before (but generation, resourceVersion, status); new pods without redirect or sidecar (the injected ones' namespaces gone); with alice's header the app answers, both pods"

kill "$follower"; wait "$follower" 2>/dev/null || true; follower=
eq "$(ip netns list | grep "^$KB_PG-p" || true)" ""
ok "the follower stopped: no pod namespace left"
