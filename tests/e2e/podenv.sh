#!/bin/bash
# A workload's environment as the kubelet would give its container, computed
# by kbridge from the real API server (agent/podenv.c, agent/podenvapi.c):
# a Pod in namespace envtest with plain values, $(VAR) expansion ($$ and an
# undefined or later variable stay literal), a ConfigMap key, a Secret key,
# fieldRefs (name, namespace, label, node, pod IP), a resourceFieldRef, and
# envFrom of a ConfigMap (with a prefix, a key that is no C identifier) and
# a Secret, plus the service links of its namespace and default/kubernetes.
# The expected list is written out by hand below (the oracle).
#
# The path: `kbridge-agent podenv NS POD CONTAINER` (a diagnostic of the
# agent) with the manager pod's own service-account token, in the manager
# pod's network namespace, as the manager makes the request: what the
# manager's RBAC from `kbridge install` allows is what it gets. Secrets
# only after `kbridge install --env-secrets`.
set -euo pipefail
KB_PG_PREFIX=kbpe
FAIL_LOGS=(kube/apiserver.log pods/kbridge/kbridge-manager/pod.log)
. "$(dirname "$0")/common.bash"

control_plane
K=$STATE/kube
P=$STATE/pods/kbridge/kbridge-manager
adm() { "$PG" kubectl "$@"; }
cleanup_extra() { alice quit >/dev/null 2>&1 || true; }
# podenv POD CONTAINER: as the manager, from its pod
podenv() {
	QUIET=1 pg mgr env -i KUBERNETES_SERVICE_HOST=10.96.0.1 KUBERNETES_SERVICE_PORT=443 \
		KB_SERVICEACCOUNT_DIR="$P/serviceaccount" "$KB_BIN/kbridge-agent" podenv envtest "$@"
}

KB_PG_NO_MANAGER=1 "$PG" up --k8s >/dev/null
pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" >/dev/null
"$PG" run-pod kbridge kbridge-manager >/dev/null
[[ -s $P/serviceaccount/token ]]
ok "install, the manager pod from the manifest (its service-account token)"

adm create namespace envtest >/dev/null
adm create -f - >/dev/null <<'EOF'
{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "envtest"}},
 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "namespace": "envtest"},
  "data": {"LOG_LEVEL": "debug", "FEATURE": "on", "app.properties": "a=1\nb=2"}},
 {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret", "namespace": "envtest"},
  "stringData": {"DB_PASSWORD": "s3cr3t!", "API_KEY": "k-123"}},
 {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "envtest"},
  "spec": {"ports": [{"name": "pg", "port": 5432}]}},
 {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "envtest",
   "labels": {"app": "web"}, "annotations": {"playground.kbridge.dev/pod-ip": "10.244.1.11"}},
  "spec": {"nodeName": "playground-node", "containers": [
   {"name": "app", "image": "example/web",
    "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
    "envFrom": [
     {"prefix": "CFG_", "configMapRef": {"name": "app-config"}},
     {"secretRef": {"name": "app-secret"}},
     {"configMapRef": {"name": "not-there", "optional": true}}],
    "env": [
     {"name": "GREETING", "value": "hello"},
     {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "LOG_LEVEL"}}},
     {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "API_KEY"}}},
     {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "nope", "optional": true}}},
     {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
     {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
     {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
     {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
     {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
     {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
     {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
     {"name": "URL", "value": "postgres://app:$(DB_PASSWORD)@$(DB_SERVICE_HOST):$(DB_SERVICE_PORT_PG)/$(POD_NS)?x=$$(LITERAL)&l=$(LATER)&g=$(GREETING)"},
     {"name": "LATER", "value": "set-later"},
     {"name": "FEATURE", "value": "$(CFG_FEATURE)-too"}]},
   {"name": "side", "image": "example/side", "env": [{"name": "ONLY_SIDE", "value": "1"}]}]}}
]}
EOF
podip() { [[ $(adm -n envtest get pod web-0 -o 'jsonpath={.status.podIP}') == 10.244.1.11 ]]; }
poll 100 podip
dbip=$(adm -n envtest get service db -o 'jsonpath={.spec.clusterIP}')
[[ $dbip == 10.96.* ]]
[[ $(adm get service kubernetes -o 'jsonpath={.spec.clusterIP} {.spec.ports[0].name} {.spec.ports[0].port}') == "10.96.0.1 https 443" ]]
ok "namespace envtest: ConfigMap app-config, Secret app-secret, Service db ($dbip), Pod web-0 (Running, 10.244.1.11: the playground pod api's network namespace, where its sidecar runs below)"

# Without --env-secrets the manager may not read Secrets: one line, no env.
out=$(podenv web-0 app 2>&1) && { echo "$out"; exit 1; }
[[ $(wc -l <<<"$out") == 1 ]]
[[ $out == "kbridge-agent podenv: envtest/web-0: secret envtest/app-secret: the manager may not read it (kbridge install --env-secrets grants get on Secrets; "*"forbidden"* ]] ||
	{ echo "$out"; exit 1; }
[[ $(adm auth can-i get configmaps -n envtest --as=system:serviceaccount:kbridge:kbridge-manager) == yes ]]
[[ $(adm auth can-i list configmaps -n envtest --as=system:serviceaccount:kbridge:kbridge-manager || true) == no ]]
[[ $(adm auth can-i get secrets -n envtest --as=system:serviceaccount:kbridge:kbridge-manager || true) == no ]]
ok "default install: the manager gets ConfigMaps (no list), no Secrets; a pod whose env needs a Secret is one clear line"

pg ws "$KB_BIN/kbridge" install --env-secrets --kubeconfig "$K/admin.kubeconfig" >/dev/null
[[ $(adm auth can-i get secrets -n envtest --as=system:serviceaccount:kbridge:kbridge-manager) == yes ]]
[[ $(adm auth can-i list secrets -n envtest --as=system:serviceaccount:kbridge:kbridge-manager || true) == no ]]
[[ $(adm auth can-i watch secrets -n envtest --as=system:serviceaccount:kbridge:kbridge-manager || true) == no ]]
ok "kbridge install --env-secrets: get on Secrets, still no list or watch"

got=$(podenv web-0 app)
# The oracle, by hand: what the kubelet's makeEnvironmentVariables gives.
want=$(python3 - "$dbip" <<'EOF'
import json, sys
db = sys.argv[1]
env = {
    # envFrom: app-config behind CFG_ (every key, even one that is no C name)
    "CFG_LOG_LEVEL": "debug", "CFG_FEATURE": "on", "CFG_app.properties": "a=1\nb=2",
    # envFrom: app-secret (the optional not-there adds nothing)
    "DB_PASSWORD": "s3cr3t!", "API_KEY": "k-123",
    # env, in order
    "GREETING": "hello", "LOG_LEVEL": "debug", "TOKEN": "k-123",
    "POD_NAME": "web-0", "POD_NS": "envtest", "APP": "web", "NODE": "playground-node",
    "POD_IP": "10.244.1.11",
    "MEM_MI": "256",          # 256Mi / 1Mi
    "CPU_M": "500",           # requests default to the limits: 500m / 1m
    "URL": "postgres://app:s3cr3t!@%s:5432/envtest?x=$(LITERAL)&l=$(LATER)&g=hello" % db,
    "LATER": "set-later", "FEATURE": "on-too",
}
def links(name, ip, ports):
    n = name.upper().replace("-", "_")
    v = {n + "_SERVICE_HOST": ip, n + "_SERVICE_PORT": str(ports[0][1])}
    for pname, port in ports:
        if pname:
            v["%s_SERVICE_PORT_%s" % (n, pname.upper())] = str(port)
    v[n + "_PORT"] = "tcp://%s:%d" % (ip, ports[0][1])
    for _, port in ports:
        p = "%s_PORT_%d_TCP" % (n, port)
        v.update({p: "tcp://%s:%d" % (ip, port), p + "_PROTO": "tcp", p + "_PORT": str(port),
                  p + "_ADDR": ip})
    return v
for k, v in list(links("kubernetes", "10.96.0.1", [("https", 443)]).items()) + \
        list(links("db", db, [("pg", 5432)]).items()):
    env.setdefault(k, v)
print(json.dumps(env, sort_keys=True, separators=(",", ":")))
EOF
)
echo "$want" >"$STATE/want.json"
[[ $(wc -l <<<"$got") == 1 ]]
python3 -c 'import json, sys
got, want = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for k in sorted(set(got) | set(want)):
    if got.get(k) != want.get(k):
        print("# %s: got %r, want %r" % (k, got.get(k), want.get(k)))
assert got == want and len(got) == 18 + 8 + 8' "$got" "$want"
ok "the env of web-0/app equals the kubelet's, by hand: envFrom (prefix, all keys), env in order with \$(VAR) and \$\$, ConfigMap and Secret keys, fieldRefs, resourceFieldRefs, service links (34 variables)"

got=$(podenv web-0 side)
python3 -c 'import json, sys; e = json.loads(sys.argv[1]); assert e["ONLY_SIDE"] == "1" and "GREETING" not in e and len(e) == 17, e' "$got"
ok "another container of the pod has its own env (and the same service links)"

# What stops the kubelet stops podenv: one line, nonzero.
adm -n envtest create -f - >/dev/null <<'EOF'
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "broken", "namespace": "envtest"},
 "spec": {"nodeName": "playground-node", "containers": [{"name": "app", "image": "example/web",
  "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "missing"}}}]}]}}
EOF
out=$(podenv broken app 2>&1) && { echo "$out"; exit 1; }
[[ $out == "kbridge-agent podenv: envtest/broken: couldn't find key missing in ConfigMap envtest/app-config" ]] ||
	{ echo "$out"; exit 1; }
out=$(podenv web-0 nosuch 2>&1) && { echo "$out"; exit 1; }
[[ $out == "kbridge-agent podenv: envtest/web-0: pod envtest/web-0 has no container nosuch" ]] || { echo "$out"; exit 1; }
out=$(podenv gone app 2>&1) && { echo "$out"; exit 1; }
[[ $out == "kbridge-agent podenv: envtest/gone: cannot read pod envtest/gone: "*"not found"* ]] || { echo "$out"; exit 1; }
ok "a missing ConfigMap key, container or pod: one line, exit 1"

# The same through a real intercept: a sidecar for web.envtest runs in the
# pod's network namespace (10.244.1.11) and names its pod and the app's
# container in its hello (KBRIDGE_POD_NAME, KBRIDGE_APP_CONTAINER, as an
# injected sidecar gets them); its own env (GREETING=the-sidecars-own) is
# not the app's. The in-cluster manager makes the env from web-0's spec.
mkdir -m 700 "$STATE/ca"
adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$STATE/ca/ca.crt"
adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.key}' | base64 -d >"$STATE/ca/ca.key"
echo '{"address":"192.168.50.1:8443"}' >"$STATE/ca/config.json"
"$KB_BIN/kbridge-agent" issue --state-dir "$STATE/ca" --name alice --out "$STATE/alice-pod.json" >/dev/null
for w in web echo; do
	"$KB_BIN/kbridge-agent" issue --state-dir "$STATE/ca" --sidecar --workload "$w" --namespace envtest \
		--out "$STATE/sidecar-$w.json" >/dev/null
done
rm "$STATE/ca/ca.key"
# sidecar NODE WORKLOAD POD: in the background, its pid in $STATE/sidecar-WORKLOAD.pid
sidecar() {
	"$PG" exec "$1" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin GREETING=the-sidecars-own \
		KBRIDGE_POD_NAME="$3" KBRIDGE_APP_CONTAINER=app "$KB_BIN/kbridge-agent" sidecar \
		--profile "$STATE/sidecar-$2.json" --workload "$2" --namespace envtest --listen 0.0.0.0:8081 \
		--app 127.0.0.1:80 --protocol http --manager 10.244.0.10:8443 >"$STATE/sidecar-$2.log" 2>&1 &
	echo $! >"$STATE/sidecar-$2.pid"
}
sidecar api web web-0
poll 100 grep -q "workload web.envtest: environment from the spec of pod envtest/web-0 (34 variables)" "$P/pod.log" ||
	{ tail -n 5 "$P/pod.log" "$STATE/sidecar-web.log"; exit 1; }
alice connect --profile "$STATE/alice-pod.json" >/dev/null
alice intercept web -n envtest --port 8080 --env-file "$STATE/web.env" >/dev/null 2>"$STATE/intercept.err"
# The env file (docker syntax, the default) holds every variable docker
# --env-file can read as written: a name without white space or '=', a
# value without a line break (cli/envfile.c; the rest is named on stderr in
# an error line). Of the kubelet's env, exactly those.
python3 - "$STATE/want.json" "$STATE/web.env" "$STATE/intercept.err" <<'EOF'
import json, re, sys
want = json.load(open(sys.argv[1]))
lines = [l for l in open(sys.argv[2]).read().split("\n") if l and not l.startswith("#")]
got = dict(l.split("=", 1) for l in lines)
ok = lambda k, v: not re.search(r"[\s=]", k) and not k.startswith("#") and "\n" not in v and not v.endswith("\r")
exp = {k: v for k, v in want.items() if ok(k, v)}
for k in sorted(set(got) | set(exp)):
    if got.get(k) != exp.get(k):
        print("# %s: got %r, want %r" % (k, got.get(k), exp.get(k)))
assert got == exp, "env file differs"
assert got["GREETING"] == "hello" and got["POD_IP"] == "10.244.1.11" and got["TOKEN"] == "k-123"
err = open(sys.argv[3]).read()
for k in set(want) - set(exp):
    assert ("error: env %s not written" % k) in err, "%s left out without a word: %s" % (k, err)
assert "the sidecar's" not in err, err
print("# env file: %d of the %d variables (left out, and named: %s)" % (len(got), len(want), " ".join(sorted(set(want) - set(exp)))))
EOF
ok "kbridge intercept web -n envtest --env-file: the file holds the kubelet's env of web-0/app from its pod spec (not the sidecar's own), each variable it can hold"

# A sidecar that names a pod that is not the one it runs in gets its own
# env, not that pod's: echo.envtest's sidecar in echo's netns names web-0.
sidecar echo echo web-0
poll 100 grep -q "workload echo.envtest: the environment of pod envtest/web-0 cannot be made from its spec, the sidecar's own stands: pod envtest/web-0 does not have the sidecar's address 10.244.1.20" "$P/pod.log" ||
	{ tail -n 5 "$P/pod.log"; exit 1; }
alice intercept echo -n envtest --port 8081 --env-file "$STATE/echo.env" >/dev/null 2>"$STATE/intercept-echo.err"
grep -qx "GREETING=the-sidecars-own" "$STATE/echo.env"
no grep -q "TOKEN" "$STATE/echo.env"
grep -q "the environment in $STATE/echo.env is the sidecar's, not made from the pod spec: pod envtest/web-0 does not have the sidecar's address 10.244.1.20" "$STATE/intercept-echo.err" ||
	{ cat "$STATE/intercept-echo.err"; exit 1; }
ok "a sidecar naming another pod than its own: its own env stands and kbridge intercept says why"

alice quit >/dev/null
for w in web echo; do kill "$(cat "$STATE/sidecar-$w.pid")" 2>/dev/null || true; done
"$PG" down >/dev/null
ok "down"
