#!/bin/bash
# Issue 13's acceptance: kbridge intercept on a Deployment whose pods RUN
# (scripts/playground follow-deployments --run: each pod a network namespace
# of its own, its containers processes, Ready once they listen), as alice
# connected with her kubeconfig. The manager is the manifest's pod
# (run-pod), the webhook registered by install injects the sidecar.
#   - hello: 2 replicas of the playground's app image behind Service hello
#     (targetPort named http); both pods answer with their own name, through
#     the cluster IP, the DNS name and each pod address;
#   - a pod whose image the playground does not run: one line, pod not Ready;
#   - intercept hello -H x-dev=alice: injected pods (sidecar running and
#     registered) replace the others; the Service's named targetPort now
#     reaches the sidecar (EndpointSlice, DNAT); with the header: alice's
#     local server, through the Service and on BOTH pods' sidecar ports;
#     without: the app, both pod names;
#   - leave: the sidecar stays, the header reaches the app;
#   - uninstall --agents: pods replaced without the sidecar, the app again;
#     the replaced pods' processes and namespaces are gone;
#   - the follower stopped: no namespace or process of its pods left.
set -euo pipefail
KB_PG_PREFIX=kbka
FAIL_LOGS=(kube/apiserver.log pods/kbridge/kbridge-manager/pod.log follow.log ws/kbridged.sock.log
	node/svcsync/follow.log)
. "$(dirname "$0")/common.bash"

L=8090
kube_developer "$L"

adm apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      initContainers:
      - name: prep
        image: ghcr.io/kbridge/kbridge-agent:0.1.0
        command: [kbridge-agent, --help]
        securityContext: {runAsUser: 0, capabilities: {drop: [ALL], add: [NET_ADMIN]}}
      containers:
      - name: app
        image: playground.kbridge.dev/hello:1
        ports: [{name: http, containerPort: 8080}]
        securityContext: {runAsUser: 0, capabilities: {drop: [ALL], add: [NET_ADMIN]}}
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: default}
spec:
  selector: {app: hello}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: odd, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: odd}}
  template:
    metadata: {labels: {app: odd}}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        ports: [{name: http, containerPort: 80}]
EOF
follow --run 300
poll 300 ready deployment hello 2

# the running pods: name, address, network namespace
pods() {
	adm get pods -l app=hello -o json | json '
for p in j["items"]:
    if p["metadata"].get("deletionTimestamp") or p["status"].get("phase") != "Running":
        continue
    a = p["metadata"]["annotations"]
    print(p["metadata"]["name"], p["status"]["podIP"], a["playground.kbridge.dev/netns"],
          ",".join(c["name"] for c in p["spec"]["containers"]))'
}
mapfile -t P < <(pods)
((${#P[@]} == 2)) || { printf '%s\n' "${P[@]}"; exit 1; }
names=() ips=() nss=()
for l in "${P[@]}"; do
	read -r nm ip nsn cs <<<"$l"
	[[ $ip == 10.244.3.* && $cs == app && -e /run/netns/$nsn && $nsn == "$KB_PG-p"* ]] || { echo "$l"; exit 1; }
	names+=("$nm") ips+=("$ip") nss+=("$nsn")
	[[ $(get "http://$ip:8080/") == "hello from $nm" ]]
	# one process in that namespace: root with NET_ADMIN (1 << 12) alone,
	# the pod's name as host name
	pid=$(ip netns pids "$nsn")
	[[ $pid =~ ^[0-9]+$ && $(stat -c %u "/proc/$pid") == 0 ]]
	eq "$(awk '$1 == "CapEff:" || $1 == "CapBnd:" {print $2}' "/proc/$pid/status" | sort -u)" 0000000000001000
	eq "$(nsenter -t "$pid" -u hostname)" "$nm"
	[[ $(ip netns exec "$nsn" ip -4 route show default) == "" ]]
	# its init container ran first, to the end
	grep -q "^usage: kbridge-agent" "$STATE/runpods/p${ip##*.}/prep.log"
done
first_ns=("${nss[@]}")
ok "hello's 2 replicas run: its init container, then the app in its own namespace (10.244.3.0/24, no default route) as root with NET_ADMIN only, Ready once listening, answering with its pod name"

odd_line() { grep -E "^follow-deployments: pod default/odd-[a-z0-9-]+: not run: image 'nginx:1.27' is not one the playground runs" "$STATE/follow.log"; }
poll 100 odd_line
[[ $(adm get pods -l app=odd -o 'jsonpath={.items[0].status.conditions[?(@.type=="Ready")].status}') != True ]]
[[ $(adm get pods -l app=odd -o 'jsonpath={.items[0].metadata.annotations.playground\.kbridge\.dev/not-run}') == *nginx:1.27* ]]
r=$(adm get deployment odd -o 'jsonpath={.status.replicas}/{.status.readyReplicas}')
[[ $r == 1/ || $r == 1/0 ]] || { echo "odd: $r"; exit 1; }
ok "a pod whose image the playground does not run: one line, annotation not-run, never Ready"

cip=$(adm get service hello -o 'jsonpath={.spec.clusterIP}')
# every name in N answers of URL (with curl ARGS), one per line
both_apps() { eq "$(answers 16 "$@")" "$(printf 'hello from %s\n' "${names[@]}" | sort)"; }
poll 100 serves "$cip"
both_apps "http://$cip/"
both_apps http://hello.default.svc.cluster.local/
both_apps http://hello/
# the pods' own resolver (cluster DNS, search default.svc.cluster.local ...)
[[ $(ip netns exec "${nss[0]}" getent hosts hello) == "$cip "*" hello.default.svc.cluster.local" ]]
ok "Service hello (named targetPort http): the cluster IP, hello.default.svc.cluster.local and hello reach both pods; a run pod resolves hello"

out=$(kb intercept hello --port "$L" --http-header x-dev=alice --wait-timeout 90 2>&1) ||
	{ echo "$out"; exit 1; }
echo "$out" | sed 's/^/#   /'
grep -qx "waiting for 2 replicas of deployment/hello to run the kbridge sidecar: 2/2 ready" <<<"$out"
mapfile -t P < <(pods)
((${#P[@]} == 2)) || { printf '%s\n' "${P[@]}"; exit 1; }
names=() ips=()
for l in "${P[@]}"; do
	read -r nm ip nsn cs <<<"$l"
	[[ $cs == app,kbridge-sidecar && $ip == 10.244.3.* ]] || { echo "$l"; exit 1; }
	[[ " ${first_ns[*]} " != *" $nsn "* ]]
	names+=("$nm") ips+=("$ip")
	grep -q "registered hello.default (http) with the manager" "$STATE/runpods/p${ip##*.}/kbridge-sidecar.log"
done
for nsn in "${first_ns[@]}"; do [[ ! -e /run/netns/$nsn ]]; done
# (the EndpointSlice follows the pods' readiness, as a controller's does: soon after)
slice_is() {
	adm get endpointslices -l kubernetes.io/service-name=hello -o json | json '
eps = sorted(a for s in j["items"] for e in s.get("endpoints") or [] for a in e["addresses"])
ports = {p["port"] for s in j["items"] if s.get("endpoints") for p in s["ports"]}
assert eps == sorted(sys.argv[1].split()) and ports == {int(sys.argv[2])}, (eps, ports)' "$@"
}
poll 100 slice_is "${ips[*]}" 9901
slice_is "${ips[*]}" 9901
ok "intercept: the webhook's pods replace the first ones (theirs gone), each sidecar runs and registered; hello's EndpointSlice: both, port 9901 (http is the sidecar's now)"

# (node's DNAT follows the slice within the same sync)
poll 50 to_alice "$cip"
for ip in "${ips[@]}"; do
	eq "$(get -H 'x-dev: alice' "http://$ip:9901/direct")" "alice local: GET /direct"
	[[ $(get "http://$ip:9901/") == "hello from "* ]]
done
for u in "http://$cip/x" http://hello.default.svc.cluster.local/x; do
	eq "$(answers 8 -H 'x-dev: alice' "$u")" "alice local: GET /x"
	[[ $(answers 4 -H 'x-dev: bob' "$u") == "hello from "* ]]
done
both_apps "http://$cip/"
both_apps http://hello.default.svc.cluster.local/
ok "with x-dev=alice: alice's server, on both pods' sidecars and through the Service (IP and name); without: the app, both pods"

out=$(kb leave hello)
gone() { [[ $(get -H 'x-dev: alice' "http://$cip/") == "hello from "* ]]; }
poll 50 gone
both_apps -H 'x-dev: alice' "http://$cip/"
for ip in "${ips[@]}"; do [[ $(get -H 'x-dev: alice' "http://$ip:9901/") == "hello from "* ]]; done
[[ $(adm get pods -l app=hello -o 'jsonpath={.items[*].spec.containers[*].name}') == "app kbridge-sidecar app kbridge-sidecar" ]]
ok "leave: the sidecars stay, with the header the app answers (both pods)"

inj_ips=("${ips[@]}")
out=$(kb uninstall --agents)
[[ $out == "deployment/hello in namespace default: sidecar removed (annotations kbridge.dev/inject, kbridge.dev/port), its pod template restored" ]] ||
	{ echo "$out"; exit 1; }
plain() {
	mapfile -t P < <(pods)
	((${#P[@]} == 2)) && [[ ${P[0]##* } == app && ${P[1]##* } == app ]] && ready deployment hello 2
}
poll 300 plain
names=()
for l in "${P[@]}"; do read -r nm _ <<<"$l"; names+=("$nm"); done
ips=()
for l in "${P[@]}"; do read -r _ ip _ <<<"$l"; ips+=("$ip"); done
poll 100 slice_is "${ips[*]}" 8080
slice_is "${ips[*]}" 8080
to_new() { [[ " ${names[*]} " == *" $(get "http://$cip/" | sed 's/^hello from //') "* ]]; }
poll 50 to_new
both_apps -H 'x-dev: alice' "http://$cip/"
both_apps http://hello.default.svc.cluster.local/
for ip in "${inj_ips[@]}"; do [[ ! -e /run/netns/$KB_PG-p${ip##*.} ]]; done
ok "uninstall --agents: pods without the sidecar replace the injected ones (whose namespaces are gone); the Service reaches the app on port 8080"

mapfile -t left < <(ls "$STATE"/runpods/ | grep -x 'p[0-9]*')
# hello's two and odd's (which holds an address, not run)
eq "${#left[@]}" 3
kill "$follower"; wait "$follower" 2>/dev/null || true; follower=
for d in "${left[@]}"; do [[ ! -e /run/netns/$KB_PG-$d ]]; done
eq "$(ip netns list | grep "^$KB_PG-p" || true)" ""
eq "$(ls "$STATE"/runpods/)" gone
no_pods() { [[ -z $(adm get pods -l app=hello -o name) ]]; }
poll 100 no_pods
ok "the follower stopped: its pods' processes and namespaces are gone, and their Pods (nothing serves them)"

# again, then scripts/playground down while it runs
follow --run 300
two() { mapfile -t P < <(pods); ((${#P[@]} == 2)) && ready deployment hello 2 && serves "$cip"; }
poll 300 two
pids=()
for l in "${P[@]}"; do read -r _ _ nsn _ <<<"$l"; pids+=($(ip netns pids "$nsn")); done
((${#pids[@]} == 2))
"$PG" down >/dev/null
for p in "$follower" "${pids[@]}"; do [[ ! -e /proc/$p ]] || [[ $(awk '/^State:/{print $2}' "/proc/$p/status") == Z ]]; done
wait "$follower" 2>/dev/null || true; follower=
eq "$(ip netns list | grep "^$KB_PG-" || true)" ""
[[ -z $(ls -d /etc/netns/"$KB_PG"-* 2>/dev/null) ]]
ok "a new follower runs new pods; scripts/playground down ends it, its pods' processes and namespaces"
