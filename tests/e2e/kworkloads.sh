#!/bin/bash
# Issue 13's acceptance for the other workload kinds (tests/e2e/kaccept.sh
# has the Deployment): kbridge intercept on a StatefulSet and on a bare
# ReplicaSet whose pods RUN (scripts/playground follow-deployments --run,
# the stand-in for their controllers), as alice connected with her
# kubeconfig; the webhook registered by install injects.
#   - StatefulSet db: 2 replicas of the playground's app image, pods db-0
#     then db-1 (made once db-0 is Ready), behind Service db (targetPort
#     named http); ReplicaSet rs (no Deployment owns it): 2 replicas behind
#     Service rs;
#   - intercept db -H x-dev=alice: its template changes, the StatefulSet
#     replaces db-1 then db-0 (same names) with injected pods; progress up
#     to 2/2; with the header alice's server answers, through the Service
#     and on both pods' sidecars; without, the app on both pods;
#   - intercept rs: a ReplicaSet replaces no pod when its template changes,
#     so kbridge evicts them one at a time (the second once the first's
#     replacement is Ready), saying so; then as for db;
#   - StatefulSet odb (updateStrategy OnDelete, 1 replica): like a bare
#     ReplicaSet, it keeps its pod: kbridge evicts it, the StatefulSet makes
#     odb-0 again with the sidecar;
#   - list: the kinds, sidecar yes, alice's intercepts;
#   - leave: the sidecars stay (same pods), the header reaches the app;
#   - uninstall --agents: each workload's `kubectl get -o yaml` as before
#     (but generation, resourceVersion, status); the StatefulSet replaces
#     its pods, kbridge evicts the ReplicaSet's (and odb's): none has the
#     sidecar;
#   - the manager (so the webhook) gone: intercept rs evicts one pod, sees
#     it made again without the sidecar and stops there, with one line;
#   - the follower stopped: no pod namespace left.
set -euo pipefail
KB_PG_PREFIX=kbkw
FAIL_LOGS=(kube/apiserver.log pods/kbridge/kbridge-manager/pod.log follow.log ws/kbridged.sock.log)
. "$(dirname "$0")/common.bash"

L=8090
kube_developer "$L"

{
	app_workload StatefulSet db 2 "serviceName: db"
	app_workload ReplicaSet rs 2
	app_workload StatefulSet odb 1 "serviceName: odb" "updateStrategy: {type: OnDelete}"
} | adm apply -f - >/dev/null
before_odb=$(spec_of odb statefulset)
before_db=$(spec_of db statefulset)
before_rs=$(spec_of rs replicaset)
[[ $before_db == *"kind: StatefulSet"* && $before_db != *kbridge.dev/inject* && $before_rs == *"kind: ReplicaSet"* &&
	$before_rs != *kbridge.dev/inject* ]] || { echo "$before_db $before_rs"; exit 1; }
follow --run 400
poll 300 ready statefulset db 2
poll 300 ready replicaset rs 2
poll 300 ready statefulset odb 1

# the running pods of app $1: name, address, uid, containers, created, Ready since
pods() {
	adm get pods -l "app=$1" -o json | json '
for p in sorted(j["items"], key=lambda p: p["metadata"]["name"]):
    if p["metadata"].get("deletionTimestamp") or p["status"].get("phase") != "Running":
        continue
    r = [c.get("lastTransitionTime", "-") for c in p["status"].get("conditions", [])
         if c["type"] == "Ready" and c["status"] == "True"]
    print(p["metadata"]["name"], p["status"]["podIP"], p["metadata"]["uid"],
          ",".join(c["name"] for c in p["spec"]["containers"]), p["metadata"]["creationTimestamp"],
          (r or ["-"])[0])'
}
# the 2 running pods of app $1 whose containers are $2, Ready: names, ips, uids, created, readyat
two_pods() {
	local l nm ip uid cs cr ra
	mapfile -t P < <(pods "$1")
	((${#P[@]} == 2)) || return 1
	names=() ips=() uids=() created=() readyat=()
	for l in "${P[@]}"; do
		read -r nm ip uid cs cr ra <<<"$l"
		[[ $cs == "$2" && $ra != - && $ip == 10.244.3.* ]] || return 1
		names+=("$nm") ips+=("$ip") uids+=("$uid") created+=("$cr") readyat+=("$ra")
	done
}
# Through the Service: both pods answer. The Service's endpoints follow a
# replaced pod's readiness a moment later (as with a real kube-proxy), so a
# few tries, 1 s apart, before the mismatch counts.
both_apps() {
	local t want
	want=$(printf 'hello from %s\n' $1 | sort)
	for t in 1 2 3 4 5; do
		[[ $(answers 16 "${@:2}") == "$want" ]] && return 0
		sleep 1
	done
	eq "$(answers 16 "${@:2}")" "$want"
}

poll 100 two_pods db app
eq "${names[*]}" "db-0 db-1"
# OrderedReady: db-1 was made once db-0 was Ready (the API's times, in seconds)
[[ ! ${created[1]} < ${readyat[0]} ]] || { echo "db-1 made ${created[1]}, db-0 Ready ${readyat[0]}"; exit 1; }
for i in 0 1; do
	nsn=$(adm get pod "${names[i]}" -o 'jsonpath={.metadata.annotations.playground\.kbridge\.dev/netns}')
	eq "$(nsenter -t "$(ip netns pids "$nsn" | head -n1)" -u hostname)" "${names[i]}"
	eq "$(get "http://${ips[i]}:8080/")" "hello from ${names[i]}"
done
eq "$(adm get pod db-1 -o 'jsonpath={.spec.hostname}.{.spec.subdomain} {.metadata.labels.statefulset\.kubernetes\.io/pod-name}')" "db-1.db db-1"
db_uids=("${uids[@]}")
dbip=$(adm get service db -o 'jsonpath={.spec.clusterIP}')
poll 100 serves "$dbip"
both_apps "${names[*]}" "http://$dbip/"
both_apps "${names[*]}" http://db.default.svc.cluster.local/
poll 100 two_pods rs app
[[ ${names[0]} == rs-* && ${names[1]} == rs-* ]]
rs_names=("${names[@]}")
eq "$(adm get pod "${names[0]}" -o 'jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')" ReplicaSet/rs
rsip=$(adm get service rs -o 'jsonpath={.spec.clusterIP}')
poll 100 serves "$rsip"
both_apps "${names[*]}" "http://$rsip/"
ok "StatefulSet db runs db-0, then db-1 once db-0 is Ready (host names, hostname.subdomain db-1.db), bare ReplicaSet rs two pods rs-*; both Services reach both pods"

# (the pods' replacement: the stand-in's order, then the one kbridge chose)
out=$(kb intercept db --port "$L" --http-header x-dev=alice --wait-timeout 120 2>&1) ||
	{ echo "$out"; exit 1; }
echo "$out" | sed 's/^/#   /'
grep -qx 'added annotations kbridge.dev/inject: "true", kbridge.dev/port: "http" to the pod template of statefulset/db (kbridge uninstall --agents removes them)' <<<"$out"
grep -qx "waiting for 2 replicas of statefulset/db to run the kbridge sidecar: 2/2 ready" <<<"$out"
[[ $out != *evict* ]]
poll 100 two_pods db app,kbridge-sidecar
eq "${names[*]}" "db-0 db-1"
for i in 0 1; do
	[[ " ${db_uids[*]} " != *" ${uids[i]} "* ]]
	grep -q "registered db.default (http) with the manager" "$STATE/runpods/p${ips[i]##*.}/kbridge-sidecar.log"
done
# RollingUpdate from the highest ordinal: db-0 was made again once the new db-1 was Ready
[[ ! ${created[0]} < ${readyat[1]} ]] || { echo "db-0 made ${created[0]}, db-1 Ready ${readyat[1]}"; exit 1; }
poll 50 to_alice "$dbip"
for i in 0 1; do
	eq "$(get -H 'x-dev: alice' "http://${ips[i]}:9901/direct")" "alice local: GET /direct"
	eq "$(get "http://${ips[i]}:9901/")" "hello from ${names[i]}"
done
eq "$(answers 8 -H 'x-dev: alice' "http://$dbip/x")" "alice local: GET /x"
eq "$(answers 8 -H 'x-dev: alice' http://db.default.svc.cluster.local/x)" "alice local: GET /x"
both_apps "${names[*]}" "http://$dbip/"
both_apps "${names[*]}" -H 'x-dev: bob' http://db.default.svc.cluster.local/
db_uids=("${uids[@]}") db_ips=("${ips[@]}")
ok "intercept db: the StatefulSet replaced db-1, then db-0 (same names) with injected pods, sidecars registered; with x-dev=alice alice's server (Service IP and name, each pod's sidecar), without or bob's the app on both pods"

out=$(kb intercept rs --port "$L" --http-header x-dev=alice --wait-timeout 120 2>&1) ||
	{ echo "$out"; exit 1; }
echo "$out" | sed 's/^/#   /'
grep -qx 'added annotations kbridge.dev/inject: "true", kbridge.dev/port: "http" to the pod template of replicaset/rs (kbridge uninstall --agents removes them)' <<<"$out"
grep -qx "replicaset/rs does not replace its pods when its pod template changes: evicting 2 pods without the sidecar, one at a time" <<<"$out"
ev=$(grep -E "^evicted pod rs-[a-z0-9]+ of replicaset/rs \([12]/2\); replicaset makes it again$" <<<"$out" |
	sed -E 's/^evicted pod (rs-[a-z0-9]+) .*/\1/' | sort | tr '\n' ' ')
eq "$ev" "$(printf '%s\n' "${rs_names[@]}" | sort | tr '\n' ' ')"
grep -qx "waiting for 2 replicas of replicaset/rs to run the kbridge sidecar: 2/2 ready" <<<"$out"
poll 100 two_pods rs app,kbridge-sidecar
for i in 0 1; do
	[[ " ${rs_names[*]} " != *" ${names[i]} "* ]]
	grep -q "registered rs.default (http) with the manager" "$STATE/runpods/p${ips[i]##*.}/kbridge-sidecar.log"
done
# one at a time: the later replacement was made once the earlier one was Ready
if [[ ${created[0]} < ${created[1]} ]]; then a=0 b=1; else a=1 b=0; fi
[[ ! ${created[b]} < ${readyat[a]} ]] || { echo "second made ${created[b]}, first Ready ${readyat[a]}"; exit 1; }
poll 50 to_alice "$rsip"
for i in 0 1; do
	eq "$(get -H 'x-dev: alice' "http://${ips[i]}:9901/direct")" "alice local: GET /direct"
	eq "$(get "http://${ips[i]}:9901/")" "hello from ${names[i]}"
done
eq "$(answers 8 -H 'x-dev: alice' http://rs.default.svc.cluster.local/x)" "alice local: GET /x"
both_apps "${names[*]}" "http://$rsip/"
both_apps "${names[*]}" http://rs.default.svc.cluster.local/
rs_uids=("${uids[@]}") rs_ips=("${ips[@]}")
ok "intercept rs: the ReplicaSet keeps its pods on a template change, so kbridge evicted both, the second once the first's replacement was Ready, saying so; the replacements run the sidecar; alice's header reaches her, others the app on both pods"

odb_uid=$(adm get pod odb-0 -o 'jsonpath={.metadata.uid}')
out=$(kb intercept odb --port "$L" --http-header x-dev=alice --wait-timeout 120 2>&1) ||
	{ echo "$out"; exit 1; }
echo "$out" | sed 's/^/#   /'
grep -qx "statefulset/odb does not replace its pods when its pod template changes: evicting 1 pod without the sidecar, one at a time" <<<"$out"
grep -qx "evicted pod odb-0 of statefulset/odb (1/1); statefulset makes it again" <<<"$out"
grep -qx "waiting for 1 replica of statefulset/odb to run the kbridge sidecar: 1/1 ready" <<<"$out"
eq "$(adm get pod odb-0 -o 'jsonpath={.spec.containers[*].name}')" "app kbridge-sidecar"
[[ $(adm get pod odb-0 -o 'jsonpath={.metadata.uid}') != "$odb_uid" ]]
odbip=$(adm get service odb -o 'jsonpath={.spec.clusterIP}')
poll 50 to_alice "$odbip"
eq "$(get "http://$odbip/")" "hello from odb-0"
ok "StatefulSet odb (OnDelete) keeps its pod on a template change: kbridge evicted odb-0, made again with the sidecar; alice's header reaches her, others the app"

out=$(kb list)
echo "$out" | sed 's/^/#   /'
grep -Eq '^default +db +StatefulSet +2/2 +yes +.*alice' <<<"$out"
grep -Eq '^default +rs +ReplicaSet +2/2 +yes +.*alice' <<<"$out"
kb list -o json | json 'w = {x["name"]: x for x in j["workloads"]}
assert w["db"]["kind"] == "StatefulSet" and w["db"]["sidecar"] is True, w
assert w["rs"]["kind"] == "ReplicaSet" and w["rs"]["sidecar"] is True, w'
ok "list: db StatefulSet, rs ReplicaSet, 2/2, sidecar yes, intercepted by alice"

kb leave db >/dev/null
kb leave rs >/dev/null
gone() { [[ $(get -H 'x-dev: alice' "http://$1/") == "hello from "* ]]; }
poll 50 gone "$dbip"
poll 50 gone "$rsip"
poll 10 two_pods db app,kbridge-sidecar
eq "${uids[*]}" "${db_uids[*]}"
both_apps "${names[*]}" -H 'x-dev: alice' "http://$dbip/"
for ip in "${db_ips[@]}"; do [[ $(get -H 'x-dev: alice' "http://$ip:9901/") == "hello from db-"* ]]; done
poll 10 two_pods rs app,kbridge-sidecar
eq "${uids[*]}" "${rs_uids[*]}"
both_apps "${names[*]}" -H 'x-dev: alice' "http://$rsip/"
ok "leave: the same pods keep their sidecars; with alice's header the app answers (both workloads, both pods)"

out=$(kb uninstall --agents 2>"$STATE/uninstall.err")
echo "$out" | sed 's/^/#   /'
sed 's/^/#   /' "$STATE/uninstall.err"
eq "$(sort <<<"$out")" "replicaset/rs in namespace default: sidecar removed (annotations kbridge.dev/inject, kbridge.dev/port), its pod template restored
statefulset/db in namespace default: sidecar removed (annotations kbridge.dev/inject, kbridge.dev/port), its pod template restored
statefulset/odb in namespace default: sidecar removed (annotations kbridge.dev/inject, kbridge.dev/port), its pod template restored"
grep -qx "evicted pod odb-0 of statefulset/odb (1/1); statefulset makes it again" "$STATE/uninstall.err"
grep -qx "replicaset/rs does not replace its pods when its pod template changes: evicting 2 pods with the sidecar, one at a time" "$STATE/uninstall.err"
eq "$(grep -c '^evicted pod rs-[a-z0-9]* of replicaset/rs ([12]/2)' "$STATE/uninstall.err")" 2
poll 300 two_pods db app
poll 300 two_pods rs app
eq "$(spec_of db statefulset)" "$before_db"
eq "$(spec_of rs replicaset)" "$before_rs"
eq "$(spec_of odb statefulset)" "$before_odb"
plain_odb() { [[ $(adm get pod odb-0 -o 'jsonpath={.spec.containers[*].name}') == app ]] && ready statefulset odb 1; }
poll 300 plain_odb
poll 100 ready statefulset db 2
# (an address is free again once its pod is gone: count the namespaces)
five_ns() { [[ $(ip netns list | grep -c "^$KB_PG-p") == 5 ]]; }
poll 100 five_ns
poll 100 two_pods db app
poll 50 serves "$dbip"
both_apps "${names[*]}" -H 'x-dev: alice' "http://$dbip/"
poll 100 two_pods rs app
poll 50 serves "$rsip"
both_apps "${names[*]}" -H 'x-dev: alice' "http://$rsip/"
out=$(kb uninstall --agents 2>&1)
eq "$out" "nothing to do: no workload in namespace default has a sidecar kbridge added"
ok "uninstall --agents: db's and rs's kubectl get -o yaml as before (but generation, resourceVersion, status); the StatefulSet replaced its pods, kbridge evicted the ReplicaSet's; no sidecar left, the app answers with the header; again: nothing to do"

# The manager (so its webhook) gone: the first replacement comes back
# without the sidecar, and kbridge stops there instead of evicting on.
mpid=$(cat "$STATE/pods/kbridge/kbridge-manager/pod.pid")
[[ $mpid =~ ^[0-9]+$ ]] && kill "$mpid"
mgr_gone() { ! listening mgr 8444; }
poll 50 mgr_gone
set +e
out=$(kb intercept rs --port "$L" --http-header x-dev=alice --wait-timeout 60 2>&1)
rc=$?
set -e
echo "$out" | sed 's/^/#   /'
[[ $rc == 1 ]] || { echo "rc $rc"; exit 1; }
grep -qx "replicaset/rs does not replace its pods when its pod template changes: evicting 2 pods without the sidecar, one at a time" <<<"$out"
eq "$(grep -c '^evicted pod rs-' <<<"$out")" 1
[[ $(tail -n1 <<<"$out") =~ ^kbridge:\ intercept:\ pod\ rs-[a-z0-9]+\ of\ replicaset/rs\ was\ made\ again\ without\ the\ sidecar:\ the\ kbridge\ webhook\ did\ not\ inject\ it ]] ||
	{ echo "$out"; exit 1; }
eq "$(adm get pods -l app=rs -o 'jsonpath={.items[*].spec.containers[*].name}')" "app app"
ok "the manager (its webhook) gone: kbridge evicts one pod of rs, sees it made again without the sidecar and stops with one line (no further eviction)"

kill "$follower"; wait "$follower" 2>/dev/null || true; follower=
eq "$(ip netns list | grep "^$KB_PG-p" || true)" ""
ok "the follower stopped: no pod namespace left"
