#!/bin/bash
# kbridge intercept on a Deployment, as a developer connected with her
# kubeconfig (alice, bound to kbridge-developer; the manager pod from the
# manifest, the webhook registered by install). The playground's stand-in
# for the Deployment controller (follow-deployments) rolls out each new pod
# template through the API, so the webhook injects; kwok reports every
# container ready (no sidecar process runs here: the intercept itself then
# fails at the manager, which no sidecar registered with, and that is
# asserted as such).
#   - through the Service that selects it (targetPort web): the annotations
#     inject and port: web are added to the pod template (and the markers to
#     the Deployment), the progress shows 0/2 up to 2/2 ready replicas
#     running the sidecar, which took over the container port web;
#   - two Services selecting web2: one line naming both, --service picks;
#     a Service with two ports: one line naming them, --port LOCAL:SVCPORT
#     picks by name or number; a port other than the one web2's template
#     takes already: one line, nothing changed; a targetPort no container
#     port has: one line naming those there are;
#   - a Service selecting two Deployments: one line naming both;
#   - a Deployment selecting its pods with matchExpressions too: the wait
#     finds them (In, NotIn, Exists, DoesNotExist in the query);
#   - a template with the user's own kbridge.dev/port: only inject added;
#   - list -A: web2 with sidecar yes, dupa with no;
#   - uninstall --agents: each Deployment as `kubectl get -o yaml` showed it
#     before (apart from generation, resourceVersion, status), the user's
#     kbridge.dev/port kept; again: nothing to do; a template the user
#     annotated is never touched;
#   - the wait times out with one line.
set -euo pipefail
KB_PG_PREFIX=kbki
FAIL_LOGS=(kube/apiserver.log kube/kwok.log pods/kbridge/kbridge-manager/pod.log ws/kbridged.sock.log follow.log)
. "$(dirname "$0")/common.bash"

kube_developer

for d in web2:2:web2:web:'' dupa:1:dupa:http:'' dupb:1:dupb:http:'' own:1:own:http:'{kbridge.dev/inject: "true"}' \
	userport:1:userport:http:'{kbridge.dev/port: http}'; do
	IFS=: read -r name n label port ann <<<"$d"
	adm create -f - >/dev/null <<EOF2
apiVersion: apps/v1
kind: Deployment
metadata: {name: $name, namespace: default}
spec:
  replicas: $n
  selector: {matchLabels: {app: $label}}
  template:
    metadata:
      labels: {app: $label, tier: ki-$( [[ $name == dup* ]] && echo dup || echo "$name")}
$( [[ -n $ann ]] && echo "      annotations: $ann")
    spec:
      containers:
      - name: app
        image: nginx
        ports: [{name: $port, containerPort: 8080}, {name: metrics, containerPort: 9000}]
EOF2
done
adm create -f - >/dev/null <<'EOF2'
apiVersion: apps/v1
kind: Deployment
metadata: {name: exprs, namespace: default}
spec:
  replicas: 1
  selector:
    matchLabels: {app: exprs}
    matchExpressions:
    - {key: tier, operator: In, values: [ki-exprs, other]}
    - {key: track, operator: NotIn, values: [canary]}
    - {key: app, operator: Exists}
    - {key: gone, operator: DoesNotExist}
  template:
    metadata:
      labels: {app: exprs, tier: ki-exprs}
    spec:
      containers:
      - name: app
        image: nginx
        ports: [{name: http, containerPort: 8080}]
EOF2
adm apply -f - >/dev/null <<'EOF2'
apiVersion: v1
kind: Service
metadata: {name: web2-svc, namespace: default}
spec:
  selector: {app: web2}
  ports: [{name: http, port: 80, targetPort: web}]
---
apiVersion: v1
kind: Service
metadata: {name: web2-alt, namespace: default}
spec:
  selector: {app: web2}
  ports: [{name: http, port: 80, targetPort: web}, {name: admin, port: 9000, targetPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: badport, namespace: default}
spec:
  selector: {app: dupa}
  ports: [{port: 80, targetPort: nosuch}]
---
apiVersion: v1
kind: Service
metadata: {name: exprs-svc, namespace: default}
spec:
  selector: {app: exprs}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: userport, namespace: default}
spec:
  selector: {app: userport}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: dup, namespace: default}
spec:
  selector: {tier: ki-dup}
  ports: [{name: http, port: 80, targetPort: http}]
EOF2
follow 400
rolled() { [[ $(adm get deployment "$1" -o 'jsonpath={.status.readyReplicas}') == "$2" ]]; }
poll 300 rolled web2 2
poll 300 rolled dupa 1
poll 300 rolled exprs 1
poll 300 rolled userport 1
before=$(spec_of web2)
before_exprs=$(spec_of exprs)
before_userport=$(spec_of userport)
[[ $before != *kbridge* && $before == *"name: web2"* && $before == *"containerPort: 8080"* ]] ||
	{ echo "$before"; exit 1; }
[[ $(adm get pods -l app=web2 -o 'jsonpath={.items[*].spec.containers[*].name}') == "app app" ]]
ok "web2 (2 replicas, no annotations on its pod template) rolled out by the playground's stand-in controller, without the sidecar"

set +e
out=$(kb intercept web2-svc --port 8080 -H x-dev=alice --wait-timeout 60 2>&1)
rc=$?
set -e
echo "$out" | sed 's/^/#   /'
[[ $rc == 1 ]] || { echo "rc $rc"; exit 1; }
grep -qx "service web2-svc selects deployment/web2: intercepting it" <<<"$out"
grep -qx 'added annotations kbridge.dev/inject: "true", kbridge.dev/port: "web" to the pod template of deployment/web2 (kbridge uninstall --agents removes them)' <<<"$out"
grep -qx "waiting for 2 replicas of deployment/web2 to run the kbridge sidecar: 0/2 ready" <<<"$out"
grep -qx "waiting for 2 replicas of deployment/web2 to run the kbridge sidecar: 2/2 ready" <<<"$out"
# the step after the wait: the manager, which no running sidecar registered with
[[ $(tail -n1 <<<"$out") == "kbridge: intercept failed: "* ]] || { echo "$out"; exit 1; }
[[ $(adm get deployment web2 -o 'jsonpath={.spec.template.metadata.annotations.kbridge\.dev/inject} {.spec.template.metadata.annotations.kbridge\.dev/port} {.metadata.annotations.kbridge\.dev/injected-by} {.metadata.annotations.kbridge\.dev/port-added-by}') == "true web kbridge kbridge" ]]
# what the comparison at the end looks at does show the injection
no diff <(echo "$before") <(spec_of web2) >/dev/null
pods=$(adm get pods -l app=web2 -o json)
json 'ps = [p for p in j["items"] if not p["metadata"].get("deletionTimestamp")]
assert len(ps) == 2, len(ps)
for p in ps:
    cs = p["spec"]["containers"]
    assert [c["name"] for c in cs] == ["app", "kbridge-sidecar"], cs
    # the sidecar took over port web: the app'"'"'s is renamed
    assert [x["name"] for x in cs[1]["ports"]] == ["web"], cs[1]
    assert [x["name"] for x in cs[0]["ports"]] == ["kb-app-web", "metrics"], cs[0]
    assert "--app=127.0.0.1:8080" in cs[1]["args"], cs[1]
    assert p["metadata"]["annotations"]["kbridge.dev/injected"] == "web2.default"
    assert [s["ready"] for s in p["status"]["containerStatuses"] if s["name"] == "kbridge-sidecar"] == [True]' <<<"$pods"
ok "intercept web2-svc: finds deployment web2 through its Service, adds the annotations (inject, port: web, its targetPort) as alice, shows progress until both replicas (re-created, injected by the webhook, the sidecar on port web) run a ready sidecar; the intercept itself then fails at the manager (no sidecar process runs in this harness)"

# fails CMD...: its one line of output
fails() { local o; o=$("$@" 2>&1) && { echo "succeeded: $*: $o"; return 1; }; echo "$o"; }
gen=$(adm get deployment web2 -o 'jsonpath={.metadata.generation}')
out=$(fails kb intercept web2 --port 8080)
[[ $out == "kbridge: intercept: services web2-alt, web2-svc in namespace default select the pod template of deployment/web2: pass --service NAME" ]] ||
	{ echo "$out"; exit 1; }
out=$(fails kb intercept web2 --service web2-alt --port 8080)
[[ $out == "kbridge: intercept: service web2-alt has several ports, 80 (http), 9000 (admin): pass --port LOCAL:PORT, PORT the name or number of one" ]] ||
	{ echo "$out"; exit 1; }
out=$(fails kb intercept web2-alt --port 8080:nosuch)
[[ $out == "kbridge: intercept: service web2-alt has no TCP port named or numbered nosuch (it has 80 (http), 9000 (admin))" ]] ||
	{ echo "$out"; exit 1; }
# admin's targetPort (9000, the app's metrics port) is not the port web2 gives kbridge
for p in admin 9000; do
	out=$(fails kb intercept web2 --service web2-alt --port 8080:$p)
	[[ $out == "kbridge: intercept: the pod template of deployment/web2 has kbridge.dev/port: \"web\" (from an earlier intercept), but service web2-alt targets port 9000: 'kbridge uninstall --agents' removes it" ]] ||
		{ echo "$out"; exit 1; }
done
out=$(fails kb intercept web2 --service dup --port 8080)
[[ $out == "kbridge: intercept: service dup in namespace default does not select the pod template of deployment/web2" ]] ||
	{ echo "$out"; exit 1; }
out=$(fails kb intercept web2-svc --service web2-alt --port 8080)
[[ $out == "kbridge: intercept: deployment/web2 was named through service web2-svc; --service web2-alt names another" ]] ||
	{ echo "$out"; exit 1; }
out=$(fails kb intercept dupa --service badport --port 8080)
[[ $out == "kbridge: intercept: service badport port 80 targets port nosuch, but no container of deployment/dupa has a TCP port named nosuch (named TCP ports: http, metrics)" ]] ||
	{ echo "$out"; exit 1; }
out=$(fails kb intercept web2 --port 8080:x_y)
[[ $out == "kbridge: --port must be LOCAL or LOCAL:SVCPORT (SVCPORT the name or number of a Service port), not '8080:x_y'" ]] ||
	{ echo "$out"; exit 1; }
[[ $(adm get deployment web2 -o 'jsonpath={.metadata.generation}') == "$gen" ]]
[[ $(adm get deployment dupa -o 'jsonpath={.spec.template.metadata.annotations}') == "" ]]
# the same port by the name and the number of web2-alt's port: nothing to add
for p in http 80; do
	set +e
	out=$(kb intercept web2 --service web2-alt --port 8080:$p --wait-timeout 60 2>&1)
	rc=$?
	set -e
	[[ $rc == 1 && $out != *"added annotation"* && $(tail -n1 <<<"$out") == "kbridge: intercept failed: "* ]] ||
		{ echo "rc $rc: $out"; exit 1; }
	grep -qx "waiting for 2 replicas of deployment/web2 to run the kbridge sidecar: 2/2 ready" <<<"$out"
done
[[ $(adm get deployment web2 -o 'jsonpath={.metadata.generation}') == "$gen" ]]
ok "two Services select web2: one line naming both, --service picks; web2-alt's two ports: one line naming them, --port 8080:http (or :80) picks (the port web2 takes already: nothing changed); :admin (or :9000), another port than web2's template gives kbridge: one line; a Service that does not select it, a targetPort no container has: one line each; nothing changed"

set +e
out=$(kb intercept exprs --port 8080 --wait-timeout 60 2>&1)
rc=$?
set -e
echo "$out" | sed 's/^/#   /'
[[ $rc == 1 && $(tail -n1 <<<"$out") == "kbridge: intercept failed: "* ]] || { echo "rc $rc: $out"; exit 1; }
grep -qx "waiting for 1 replica of deployment/exprs to run the kbridge sidecar: 0/1 ready" <<<"$out"
grep -qx "waiting for 1 replica of deployment/exprs to run the kbridge sidecar: 1/1 ready" <<<"$out"
ok "a Deployment selecting its pods with matchExpressions (In, NotIn, Exists, DoesNotExist): the wait finds its pod through that selector, 0/1 then 1/1"

set +e
out=$(kb intercept userport --port 8080 --wait-timeout 60 2>&1)
rc=$?
set -e
[[ $rc == 1 && $(tail -n1 <<<"$out") == "kbridge: intercept failed: "* ]] || { echo "rc $rc: $out"; exit 1; }
grep -qx 'added annotation kbridge.dev/inject: "true" to the pod template of deployment/userport (kbridge uninstall --agents removes it)' <<<"$out"
grep -qx "waiting for 1 replica of deployment/userport to run the kbridge sidecar: 1/1 ready" <<<"$out"
uann() { adm get deployment userport -o 'jsonpath={.metadata.annotations.kbridge\.dev/injected-by}|{.metadata.annotations.kbridge\.dev/port-added-by}|{.spec.template.metadata.annotations.kbridge\.dev/inject}|{.spec.template.metadata.annotations.kbridge\.dev/port}'; }
[[ $(uann) == "kbridge||true|http" ]] || { uann; exit 1; }
ok "a template with its author's kbridge.dev/port: http, the Service's targetPort: only the inject annotation is added (and marked)"

out=$(kb intercept dup --port 8080 2>&1) && exit 1
[[ $out == "kbridge: intercept: service dup in namespace default selects several workloads (deployment/dupa, deployment/dupb): name the one to intercept" ]] ||
	{ echo "$out"; exit 1; }
out=$(kb intercept nosuch --port 8080 2>&1) && exit 1
[[ $out == "kbridge: intercept: no deployment, statefulset, replicaset or service named nosuch in namespace default" ]] ||
	{ echo "$out"; exit 1; }
# In the wrong namespace: the one that has it, from a list across namespaces.
out=$(kb intercept web2 -n kbridge --port 8080 2>&1) && exit 1
[[ $out == "kbridge: intercept: no deployment, statefulset, replicaset or service named web2 in namespace kbridge, but namespace default has one: add -n default" ]] ||
	{ echo "$out"; exit 1; }
[[ $(adm get deployment dupa -o 'jsonpath={.spec.template.metadata.annotations}') == "" ]]
ok "a Service selecting two Deployments, a name nothing has, a name in another namespace (-n default suggested): one line each, nothing changed"

# (the stand-in writes the Deployment's status a pass after the pods)
web2_listed() { kb list -A | grep -Eq '^default +web2 +Deployment +2/2 +yes +-$'; }
poll 50 web2_listed
out=$(kb list -A)
echo "$out" | sed 's/^/#   /'
grep -Eq '^default +web2 +Deployment +2/2 +yes +-$' <<<"$out"
grep -Eq '^default +dupa +Deployment +1/1 +no +-$' <<<"$out"
grep -Eq '^default +own +Deployment +1/1 +yes +-$' <<<"$out"
grep -Eq '^kbridge +kbridge-manager +Deployment ' <<<"$out"
kb list -o json | json 'w = {x["name"]: x for x in j["workloads"]}
assert w["web2"]["sidecar"] is True and w["web2"]["kind"] == "Deployment" and w["web2"]["replicas"] == 2, w
assert w["dupa"]["sidecar"] is False and "kbridge-manager" not in w, w'
ok "list -A shows the workloads from the API: kind, ready replicas, sidecar yes for web2 (and own, annotated by its author), no for dupa; -o json without -A: the connected namespace"

# The shell completions ask the same: the connected namespace's workloads,
# or those of -n NS, from the API.
out=$(kb __complete workloads)
grep -qx web2 <<<"$out"
grep -qx dupa <<<"$out"
no grep -qx kbridge-manager <<<"$out"
grep -qx kbridge-manager <<<"$(kb __complete workloads kbridge)"
ok "kbridge __complete workloads [NS] (what bash, zsh and fish offer) lists them from the API"

# A wait that cannot end: dupa's sidecar never gets ready without the
# stand-in (stopped here), so one line when it expires.
kill "$follower"; wait "$follower" 2>/dev/null || true; follower=
set +e
out=$(kb intercept dupa --service dup --port 8080 --wait-timeout 2 2>&1)
rc=$?
set -e
[[ $rc == 1 && $(tail -n1 <<<"$out") == "kbridge: intercept: timed out after 2 s waiting for deployment/dupa: 0/1 ready replicas run the kbridge sidecar, 1 do not yet (kubectl get pods -n default -l app=dupa)" ]] ||
	{ echo "rc $rc: $out"; exit 1; }
ok "--wait-timeout: one line saying how far the rollout got"

out=$(kb uninstall --agents)
echo "$out" | sed 's/^/#   /'
[[ $(sort <<<"$out") == "deployment/dupa in namespace default: sidecar removed (annotations kbridge.dev/inject, kbridge.dev/port), its pod template restored
deployment/exprs in namespace default: sidecar removed (annotations kbridge.dev/inject, kbridge.dev/port), its pod template restored
deployment/userport in namespace default: sidecar removed (annotation kbridge.dev/inject), its pod template restored
deployment/web2 in namespace default: sidecar removed (annotations kbridge.dev/inject, kbridge.dev/port), its pod template restored" ]] ||
	{ echo "$out"; exit 1; }
after=$(spec_of web2)
diff <(echo "$before") <(echo "$after") || exit 1
diff <(echo "$before_exprs") <(spec_of exprs) || exit 1
diff <(echo "$before_userport") <(spec_of userport) || exit 1
[[ $(uann) == "|||http" ]] || { uann; exit 1; }
[[ $(adm get deployment own -o 'jsonpath={.spec.template.metadata.annotations.kbridge\.dev/inject}') == true ]]
out=$(kb uninstall --agents)
[[ $out == "nothing to do: no workload in namespace default has a sidecar kbridge added" ]] || { echo "$out"; exit 1; }
ok "uninstall --agents: web2's, exprs' and userport's kubectl get -o yaml equal the ones before injection (but generation, resourceVersion, status): what kbridge added is removed, the author's own kbridge.dev/port (userport) and inject (own) stay; again: nothing to do"
