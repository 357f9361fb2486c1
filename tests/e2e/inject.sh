#!/bin/bash
# shellcheck disable=SC2016 # jsonpath in single quotes
# Sidecar injection by the manager's mutating admission webhook, called by
# the playground's real kube-apiserver (through the Service kbridge-manager,
# port 443, to the manager pod's 8444): `kbridge install`, the manager pod
# run from its Deployment (run-pod, no hand-run manager); it writes its CA
# into the MutatingWebhookConfiguration's caBundle. Then, as a ReplicaSet
# controller would (none runs here), Pods are created from a Deployment's
# template:
#   - with kbridge.dev/inject and a port named http (the Service's
#     targetPort): the admitted Pod has the sidecar for web.default, the
#     app's port renamed kb-app-http, its probe following, the sidecar
#     holding the name http;
#   - without the annotation: unchanged;
#   - a numeric port (kbridge.dev/port: "8080"): the sidecar passing to it
#     and the init container kbridge-redirect; not a port: unchanged, with a
#     warning; Pod Security baseline refuses the init container's NET_ADMIN;
#   - in the kbridge namespace: never sent to the webhook;
#   - the manager stopped: creating a Pod still works, within the timeout
#     (failurePolicy Ignore).
set -euo pipefail
KB_PG_PREFIX=kbij
FAIL_LOGS=(kube/apiserver.log pods/kbridge/kbridge-manager/pod.log)
. "$(dirname "$0")/common.bash"

control_plane
K=$STATE/kube
P=$STATE/pods/kbridge/kbridge-manager
tmp=$(mktemp -d /tmp/kbinject.XXXXXX)
cleanup_extra() { rm -rf "$tmp"; }
adm() { "$PG" kubectl "$@"; }
jq_() { python3 -c 'import json,sys; j=json.load(sys.stdin); '"$1"; }

KB_PG_NO_MANAGER=1 "$PG" up --k8s >/dev/null
pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" >/dev/null
[[ $(adm get mutatingwebhookconfiguration kbridge-injector -o 'jsonpath={.webhooks[0].failurePolicy} {.webhooks[0].clientConfig.caBundle}') == "Ignore " ]]
"$PG" run-pod kbridge kbridge-manager >/dev/null
poll 100 listening mgr 8444
grep -q "injection webhook listening on 0.0.0.0:8444/mutate-pods (sidecar image ghcr.io/kbridge/kbridge-agent:" "$P/pod.log"
grep -q "the CA is the caBundle of MutatingWebhookConfiguration kbridge-injector" "$P/pod.log"
ca=$(adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}')
[[ -n $ca && $(adm get mutatingwebhookconfiguration kbridge-injector -o 'jsonpath={.webhooks[0].clientConfig.caBundle}') == "$ca" ]]
# install again (an upgrade): the manager's caBundle stays
out=$(pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig")
grep -qx "mutatingwebhookconfiguration/kbridge-injector unchanged" <<<"$out" || { echo "$out"; exit 1; }
[[ $(adm get mutatingwebhookconfiguration kbridge-injector -o 'jsonpath={.webhooks[0].clientConfig.caBundle}') == "$ca" ]]
ok "install registers kbridge-injector (failurePolicy Ignore, no caBundle); the manager pod serves the webhook on 8444 and writes its CA (the Secret's) into the caBundle, which a re-install keeps"

# The workload: a Deployment whose template asks for the sidecar, and a
# Service whose targetPort names the app's port.
adm apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web-inj}}
  template:
    metadata:
      labels: {app: web-inj}
      annotations: {kbridge.dev/inject: "true"}
    spec:
      containers:
      - name: app
        image: nginx
        ports:
        - {name: http, containerPort: 8080}
        - {name: metrics, containerPort: 9090}
        readinessProbe: {httpGet: {path: /, port: http}}
        livenessProbe: {tcpSocket: {port: metrics}}
---
apiVersion: v1
kind: Service
metadata: {name: web-inj, namespace: default}
spec:
  selector: {app: web-inj}
  ports: [{name: http, port: 80, targetPort: http}]
EOF

# pod_from DEPLOYMENT [NS]: the ReplicaSet (pod-template-hash, owned by the
# Deployment) and a Pod from its template (generateName, owned by it), as
# the controllers make them; the Pod as the API server admitted it goes to
# $tmp/DEPLOYMENT.json, kubectl's stderr (warnings) to $tmp/DEPLOYMENT.err.
pod_from() {
	local dep=$1 kns=${2:-default}
	adm -n "$kns" get deployment "$dep" -o json | jq_ '
import hashlib
t = j["spec"]["template"]
h = hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:10]
t["metadata"].setdefault("labels", {})["pod-template-hash"] = h
print(json.dumps({"apiVersion": "apps/v1", "kind": "ReplicaSet",
	"metadata": {"name": j["metadata"]["name"] + "-" + h, "namespace": j["metadata"]["namespace"],
		"labels": t["metadata"]["labels"],
		"ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": j["metadata"]["name"],
			"uid": j["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
	"spec": {"replicas": 1, "selector": {"matchLabels": t["metadata"]["labels"]}, "template": t}}))' \
		>"$tmp/$dep-rs.json"
	adm create -o json -f "$tmp/$dep-rs.json" >"$tmp/$dep-rs.created"
	jq_ '
t = j["spec"]["template"]
print(json.dumps({"apiVersion": "v1", "kind": "Pod",
	"metadata": {"generateName": j["metadata"]["name"] + "-", "namespace": j["metadata"]["namespace"],
		"labels": t["metadata"]["labels"], "annotations": t["metadata"].get("annotations", {}),
		"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": j["metadata"]["name"],
			"uid": j["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
	"spec": t["spec"]}))' <"$tmp/$dep-rs.created" >"$tmp/$dep-pod.json"
	adm create -o json -f "$tmp/$dep-pod.json" >"$tmp/$dep.json" 2>"$tmp/$dep.err"
}

pod_from web
name=$(jq_ 'print(j["metadata"]["name"])' <"$tmp/web.json")
[[ $name == web-*-* ]]
adm get pod "$name" -o json >"$tmp/web-get.json"
jq_ '
c = j["spec"]["containers"]
assert [x["name"] for x in c] == ["app", "kbridge-sidecar"], c
app, sc = c
assert [p["name"] for p in app["ports"]] == ["kb-app-http", "metrics"], app["ports"]
assert app["readinessProbe"]["httpGet"]["port"] == "kb-app-http"
assert app["livenessProbe"]["tcpSocket"]["port"] == "metrics"
assert sc["image"].startswith("ghcr.io/kbridge/kbridge-agent:"), sc["image"]
assert sc["command"] == ["kbridge-agent", "sidecar"], sc["command"]
for a in ["--workload=web", "--namespace=default", "--listen=0.0.0.0:9901", "--app=127.0.0.1:8080",
		"--protocol=http", "--manager=kbridge-manager.kbridge.svc:8443"]:
	assert a in sc["args"], (a, sc["args"])
assert sc["ports"] == [{"name": "http", "containerPort": 9901, "protocol": "TCP"}], sc["ports"]
env = {e["name"]: e for e in sc["env"]}
assert env["KBRIDGE_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", env
assert env["KBRIDGE_APP_CONTAINER"]["value"] == "app", env
assert sc["securityContext"]["runAsNonRoot"] and sc["securityContext"]["readOnlyRootFilesystem"]
assert j["metadata"]["annotations"]["kbridge.dev/injected"] == "web.default"
' <"$tmp/web-get.json"
[[ ! -s $tmp/web.err ]] || { cat "$tmp/web.err"; exit 1; }
grep -q "webhook: pod default/web-[0-9a-f]*-: sidecar injected" "$P/pod.log"
ok "a Pod of a Deployment with kbridge.dev/inject is admitted with the sidecar for web.default (kubectl get pod): the app's port http renamed kb-app-http, its readiness probe following, the sidecar holding http on 9901 and passing to 8080"

# The same Pod again (a second replica): the same patch; one sidecar each.
adm create -o json -f "$tmp/web-pod.json" >"$tmp/web2.json"
[[ $(jq_ 'print(len([c for c in j["spec"]["containers"] if c["name"] == "kbridge-sidecar"]))' <"$tmp/web2.json") == 1 ]]
# A Pod that comes with the sidecar already (re-created from an admitted
# spec): left alone, not a second sidecar.
jq_ 'j["metadata"].pop("name"); j["metadata"]["generateName"] = "web-again-"
for k in ("uid", "resourceVersion", "creationTimestamp", "managedFields"): j["metadata"].pop(k, None)
j.pop("status", None); print(json.dumps(j))' <"$tmp/web-get.json" >"$tmp/again.json"
adm create -o json -f "$tmp/again.json" >"$tmp/again.created"
[[ $(jq_ 'print(" ".join(c["name"] for c in j["spec"]["containers"]), j["spec"]["containers"][0]["ports"][0]["name"])' <"$tmp/again.created") == "app kbridge-sidecar kb-app-http" ]]
ok "a second replica gets its own sidecar; a Pod that has the sidecar already is admitted unchanged (no second one)"

# Without the annotation: unchanged.
adm create deployment plain --image=nginx --port=8080 >/dev/null
adm patch deployment plain --type=json -p '[{"op":"add","path":"/spec/template/spec/containers/0/ports/0/name","value":"http"}]' >/dev/null
pod_from plain
jq_ '
c = j["spec"]["containers"]
assert len(c) == 1 and c[0]["ports"][0]["name"] == "http", c
assert "kbridge.dev/injected" not in j["metadata"].get("annotations", {})' <"$tmp/plain.json"
[[ ! -s $tmp/plain.err ]] || { cat "$tmp/plain.err"; exit 1; }
ok "a Pod without the annotation is admitted unchanged"

# A numeric targetPort: the sidecar passes to it, and the init container
# kbridge-redirect sends it there in the pod's network namespace; nothing is
# renamed, the sidecar's port has no name.
adm apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: num, namespace: default}
spec:
  selector: {matchLabels: {app: num}}
  template:
    metadata:
      labels: {app: num}
      annotations: {kbridge.dev/inject: "true", kbridge.dev/port: "8080"}
    spec:
      initContainers: [{name: setup, image: busybox}]
      containers:
      - name: app
        image: nginx
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}}
EOF
pod_from num
jq_ '
s = j["spec"]
assert [x["name"] for x in s["containers"]] == ["app", "kbridge-sidecar"], s["containers"]
app, sc = s["containers"]
assert app["ports"] == [{"containerPort": 8080, "protocol": "TCP"}], app["ports"]
assert app["readinessProbe"]["tcpSocket"]["port"] == 8080, app["readinessProbe"]
for a in ["--workload=num", "--namespace=default", "--listen=0.0.0.0:9901", "--app=127.0.0.1:8080"]:
	assert a in sc["args"], (a, sc["args"])
assert sc["ports"] == [{"containerPort": 9901, "protocol": "TCP"}], sc["ports"]
assert {e["name"]: e.get("value") for e in sc["env"]}["KBRIDGE_APP_CONTAINER"] == "app", sc["env"]
assert [x["name"] for x in s["initContainers"]] == ["setup", "kbridge-redirect"], s["initContainers"]
rd = s["initContainers"][1]
assert rd["image"] == sc["image"], rd
assert rd["command"] == ["kbridge-agent", "redirect"] and rd["args"] == ["--port=8080", "--to=9901"], rd
assert rd["securityContext"] == {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}, "runAsUser": 0,
	"runAsNonRoot": False, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}, rd["securityContext"]
assert j["metadata"]["annotations"]["kbridge.dev/injected"] == "num.default"
' <"$tmp/num.json"
[[ ! -s $tmp/num.err ]] || { cat "$tmp/num.err"; exit 1; }
grep -q "webhook: pod default/num-[0-9a-f]*-: sidecar injected" "$P/pod.log"
# created again from the admitted spec: left alone (one init container, one sidecar)
jq_ 'j["metadata"].pop("name"); j["metadata"]["generateName"] = "num-again-"
for k in ("uid", "resourceVersion", "creationTimestamp", "managedFields"): j["metadata"].pop(k, None)
j.pop("status", None); print(json.dumps(j))' <"$tmp/num.json" >"$tmp/num-again.json"
adm create -o json -f "$tmp/num-again.json" >"$tmp/num-again.created"
[[ $(jq_ 'print(" ".join(c["name"] for c in j["spec"]["initContainers"] + j["spec"]["containers"]))' <"$tmp/num-again.created") == "setup kbridge-redirect app kbridge-sidecar" ]]
ok "a numeric targetPort (kbridge.dev/port: \"8080\"): the admitted Pod has the init container kbridge-redirect (--port=8080 --to=9901, root with NET_ADMIN only) after its own, and the sidecar passing to 127.0.0.1:8080 on an unnamed 9901; nothing renamed; created again, left alone"

# Not a port: created unchanged, with a warning.
adm -n default patch deployment num --type=merge -p '{"spec":{"template":{"metadata":{"annotations":{"kbridge.dev/port":"80800"}}}}}' >/dev/null
pod_from num
[[ $(jq_ 'print(len(j["spec"]["containers"]), len(j["spec"]["initContainers"]), "kbridge.dev/injected" in j["metadata"]["annotations"])' <"$tmp/num.json") == "1 1 False" ]]
grep -q "^Warning: kbridge: annotation kbridge.dev/port '80800' is not a port name or number (1-65535): not injected$" "$tmp/num.err" ||
	{ cat "$tmp/num.err"; exit 1; }
ok "kbridge.dev/port: \"80800\": the Pod is created unchanged and kubectl shows the warning"

# Pod Security baseline (and restricted) refuse NET_ADMIN: a numeric port
# there is refused by the API server, naming the capability; a named one
# is injected.
adm create namespace psa >/dev/null
adm label namespace psa pod-security.kubernetes.io/enforce=baseline >/dev/null
adm -n psa create serviceaccount default >/dev/null # no controller-manager here
psa_pod() { # NAME PORT-ANNOTATION PORT-NAME
	printf '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "%s", "namespace": "psa",
 "annotations": {"kbridge.dev/inject": "true", "kbridge.dev/port": "%s"}}, "spec": {"containers":
 [{"name": "app", "image": "nginx", "ports": [{"name": "%s", "containerPort": 8080}]}]}}\n' "$@"
}
psa_pod psa-num 8080 web >"$tmp/psa-num.json"
no adm create -f "$tmp/psa-num.json" >/dev/null 2>"$tmp/psa.err"
grep -q 'violates PodSecurity "baseline:latest": non-default capabilities (container "kbridge-redirect" must not include "NET_ADMIN"' "$tmp/psa.err" ||
	{ cat "$tmp/psa.err"; exit 1; }
psa_pod psa-named http http >"$tmp/psa-named.json"
adm create -o json -f "$tmp/psa-named.json" >"$tmp/psa.json"
[[ $(jq_ 'print(" ".join(c["name"] for c in j["spec"]["containers"]), "initContainers" in j["spec"])' <"$tmp/psa.json") == "app kbridge-sidecar False" ]]
ok "Pod Security baseline: a numeric port's Pod is refused (kbridge-redirect's NET_ADMIN named); a named port's is injected"

# The kbridge namespace is not sent to the webhook (namespaceSelector): a
# Pod there with the annotation is admitted unchanged and the manager never
# hears of it. (Restricted Pod Security there: a compliant pod.)
adm apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: own, namespace: kbridge}
spec:
  selector: {matchLabels: {app: own}}
  template:
    metadata:
      labels: {app: own}
      annotations: {kbridge.dev/inject: "true"}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: app
        image: nginx
        ports: [{name: http, containerPort: 8080}]
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
EOF
pod_from own kbridge
[[ $(jq_ 'print(len(j["spec"]["containers"]), j["spec"]["containers"][0]["ports"][0]["name"])' <"$tmp/own.json") == "1 http" ]]
no grep -q "webhook: pod kbridge/" "$P/pod.log"
ok "a Pod in the kbridge namespace, annotated, is never sent to the webhook (admitted unchanged, nothing in the manager's log)"

# Anything in the cluster can connect: what is not a review gets a clear
# error, a body over 1 MiB is refused (413), and idle connections from one
# pod hold at most 32 slots (the oldest go), so the API server still gets
# in. curl from node, as the API server, with the CA and the Service's name.
adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$tmp/ca.crt"
wh() { # ARGS: curl to the webhook through the Service; prints the status
	QUIET=1 pg node curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$tmp/ca.crt" \
		--resolve kbridge-manager.kbridge.svc:443:10.96.0.20 "$@"
}
u=https://kbridge-manager.kbridge.svc/mutate-pods
[[ $(wh "$u") == 405 ]]
[[ $(wh -d '{}' https://kbridge-manager.kbridge.svc/other) == 404 ]]
[[ $(wh -d 'not json' "$u") == 400 ]]
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' x >"$tmp/big"
[[ $(wh -H 'Content-Type: application/json' --data-binary @"$tmp/big" "$u") == 413 ]]
[[ $(wh -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/big" "$u") == 413 ]]
body=$(QUIET=1 pg node curl -sS --max-time 10 --cacert "$tmp/ca.crt" --resolve kbridge-manager.kbridge.svc:443:10.96.0.20 \
	-d '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"abc","kind":{"kind":"Secret"},"operation":"CREATE"}}' "$u")
[[ $body == '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"abc","allowed":true}}' ]] || { echo "$body"; exit 1; }
# 80 idle connections from the web pod, kept 8 s; meanwhile a Pod is injected
cat >"$tmp/idle.py" <<'PY'
import socket, sys, time
socks = []
for _ in range(80):
	s = socket.create_connection(("10.96.0.20", 443), timeout=2)
	socks.append(s)
	time.sleep(0.01)
time.sleep(1)
alive = 0
for s in socks:
	s.setblocking(False)
	try:
		alive += s.recv(1) != b""
	except BlockingIOError:
		alive += 1
	except OSError:
		pass
print(alive, flush=True)
time.sleep(7)
PY
QUIET=1 pg web python3 "$tmp/idle.py" >"$tmp/idle.out" &
idle=$!
poll 50 test -s "$tmp/idle.out"
[[ $(cat "$tmp/idle.out") == 32 ]] || { echo "idle connections kept: $(cat "$tmp/idle.out")"; exit 1; }
adm create -o json -f "$tmp/web-pod.json" >"$tmp/flood.json"
[[ $(jq_ 'print(len([c for c in j["spec"]["containers"] if c["name"] == "kbridge-sidecar"]))' <"$tmp/flood.json") == 1 ]]
wait "$idle"
ok "bounds: GET 405, another path 404, not a review 400, a body over 1 MiB 413 (sized or chunked), a non-Pod review allowed unchanged; 80 idle connections from one pod: 32 kept, and a Pod created meanwhile is injected"

# The manager stopped: pods are still created (failurePolicy Ignore), and
# not late (the webhook's timeout is 5 s; the port is closed: at once).
mpid=$(cat "$P/pod.pid")
kill "$mpid"
poll 50 no listening mgr 8444
# it shuts down cleanly (with KB_SAN: no sanitizer report, no leak)
poll 50 no kill -0 "$mpid"
no grep -E "Sanitizer|runtime error" "$P/pod.log"
t0=$(date +%s%N)
adm create -o json -f "$tmp/web-pod.json" >"$tmp/down.json"
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $(jq_ 'print(len(j["spec"]["containers"]))' <"$tmp/down.json") == 1 ]]
((ms < 6000)) || { echo "took $ms ms"; exit 1; }
grep -q "failed calling webhook \"inject.kbridge.dev\"" "$K/apiserver.log"
ok "the manager stopped: a Pod with the annotation is still created, without the sidecar, in $ms ms (failurePolicy Ignore; the API server logs the failed call)"

echo "1..$n"
