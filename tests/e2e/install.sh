#!/bin/bash
# shellcheck disable=SC2016 # jsonpath in single quotes
# kbridge install / uninstall against the playground's real kube-apiserver
# (scripts/playground up --k8s), run from ws as the kubeconfig's user:
# every object created through the API, the --dry-run output is exactly
# what install applies (kubectl diff), a re-run is unchanged and an --image
# change configures only the Deployment, a user without the permissions
# gets one line naming the one missing and NOTHING is changed (not even a
# first object), uninstall removes what install made and nothing else (a
# ConfigMap of someone else keeps its namespace), and says so when run
# again. The manifests applied by kubectl (GitOps) are what install would
# make. Installs use namespaces of their own (kbtest, kbgit): the
# playground's kbridge namespace is its hand-made manager's.
set -euo pipefail
KB_PG_PREFIX=kbin
FAIL_LOGS=(kube/apiserver.log)
. "$(dirname "$0")/common.bash"

control_plane
K=$STATE/kube
tmp=$(mktemp -d /tmp/kbinstall.XXXXXX)
cleanup_extra() { rm -rf "$tmp"; }
adm() { "$PG" kubectl "$@"; }
# kbridge or kubectl in ws as USER (admin, alice, carol)
kb() { local u=$1; shift; QUIET=1 pg ws env HOME=/nonexistent "$KB_BIN/kbridge" "$@" --kubeconfig "$K/$u.kubeconfig"; }
kc() { local u=$1; shift; QUIET=1 pg ws env KUBECACHEDIR="$K/cache" "$bin/kubectl" --kubeconfig "$K/$u.kubeconfig" --request-timeout=15s "$@"; }
# "KIND/NAME ACTION" lines of an install or uninstall, sorted
lines() { sort <<<"$1"; }
OBJS="namespace/NS serviceaccount/kbridge-manager clusterrole/kbridge-manager
clusterrolebinding/kbridge-manager role/kbridge-manager rolebinding/kbridge-manager
clusterrole/kbridge-developer role/kbridge-developer service/kbridge-manager
deployment/kbridge-manager mutatingwebhookconfiguration/kbridge-injector"
expect() { # NS ACTION: every object with ACTION, in install order
	local o
	for o in $OBJS; do echo "${o/NS/$1} $2"; done
}
labelled() { # what carries managed-by=kbridge (cluster-wide kinds and in NS)
	adm get ns,clusterroles,clusterrolebindings,mutatingwebhookconfigurations -l app.kubernetes.io/managed-by=kbridge -o name
	adm -n "$1" get sa,roles,rolebindings,services,deployments,configmaps,secrets \
		-l app.kubernetes.io/managed-by=kbridge -o name
}

"$PG" up --k8s >/dev/null
ok "playground up --k8s"

"$KB_BIN/kbridge" install --dry-run -n kbtest >"$tmp/dry.yaml"
"$KB_BIN/kbridge" install --dry-run -o yaml -n kbtest | cmp - "$tmp/dry.yaml"
[[ $(grep -c '^---$' "$tmp/dry.yaml") == 11 ]]
# kubectl reads the stream (client side) as the eleven objects, in order
parsed=$(kc admin create --dry-run=client -o name -f - <"$tmp/dry.yaml")
[[ $(sed 's/\.[a-z.0-9]*\//\//' <<<"$parsed") == "$(expect kbtest x | sed 's/ x$//')" ]] ||
	{ echo "parsed: $parsed"; exit 1; }
"$KB_BIN/kbridge" install --dry-run -o json -n kbtest |
	python3 -c 'import json,sys; l=json.load(sys.stdin); assert l["kind"]=="List" and len(l["items"])==11'
# without --dry-run, -o yaml is the install's own result (as -o json): with
# no kubeconfig, the error as one {"error":...} line on stdout, exit 1
out=$(env -u KUBECONFIG HOME="$tmp" "$KB_BIN/kbridge" install -o yaml 2>/dev/null) &&
	{ echo "install -o yaml without a kubeconfig worked"; exit 1; }
python3 -c 'import sys, yaml; d = yaml.safe_load(sys.argv[1]); assert list(d) == ["error"] and "no kubeconfig" in d["error"], d' "$out"
for bad in "-n BAD" "--image=a\ b" "--preview-url-base ftp://x" "-o xml" "extra"; do
	# shellcheck disable=SC2086 # words on purpose
	out=$(eval "\"\$KB_BIN/kbridge\" install $bad" 2>&1) && { echo "install $bad worked"; exit 1; }
	[[ $(wc -l <<<"$out") == 1 && ($out == "kbridge: install: "* ||
		$out == "kbridge: install: --output must be text, json or yaml, not 'xml'") ]] ||
		{ echo "install $bad: $out"; exit 1; }
done
ok "--dry-run prints the eleven objects as a YAML stream kubectl reads (or a JSON List), no cluster needed; bad arguments: one line"

out=$(kb admin install -n kbtest)
[[ $out == "$(expect kbtest created)" ]] || { echo "$out"; exit 1; }
[[ $(labelled kbtest | wc -l) == 11 ]]
[[ $(adm -n kbtest get deploy kbridge-manager -o 'jsonpath={.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem} {.spec.template.spec.securityContext.runAsNonRoot} {.spec.template.spec.containers[0].command}') == 'true true ["kbridge-agent","manager"]' ]]
[[ $(adm -n kbtest get svc kbridge-manager -o 'jsonpath={.spec.type} {.spec.ports[*].port}') == "ClusterIP 8443 443" ]]
[[ $(adm get mutatingwebhookconfiguration kbridge-injector -o 'jsonpath={.webhooks[0].clientConfig.service.namespace}/{.webhooks[0].clientConfig.service.name}:{.webhooks[0].clientConfig.service.port} {.webhooks[0].failurePolicy} {.webhooks[0].namespaceSelector.matchExpressions[0].values}') == 'kbtest/kbridge-manager:443 Ignore ["kbtest","kube-system"]' ]]
[[ $(adm get ns kbtest -o 'jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}') == restricted ]]
out=$(kb admin install -n kbtest --context nope 2>&1) && { echo "--context nope worked"; exit 1; }
[[ $(wc -l <<<"$out") == 1 && $out == *nope* ]] || { echo "$out"; exit 1; }
ok "install (admin, client certificate) creates the eleven objects through the API, labelled managed-by kbridge; an unknown --context: one line"

# Its 40 requests go over one connection (one curl handle, kept).
port=$(sed -n 's|^ *server: https://[^:]*:\([0-9]*\).*|\1|p' "$K/admin.kubeconfig" | head -n1)
[[ -n $port ]]
out=$(QUIET=1 pg ws env HOME=/nonexistent strace -f -qq -e trace=connect -o "$tmp/connects" \
	"$KB_BIN/kbridge" install -n kbtest --kubeconfig "$K/admin.kubeconfig")
[[ $out == "$(expect kbtest unchanged)" ]] || { echo "$out"; exit 1; }
conns=$(grep -c "sin6\?_port=htons($port)" "$tmp/connects" || true)
[[ $conns == 1 ]] || { echo "$conns connections to the API server:"; cat "$tmp/connects"; exit 1; }
kc admin diff --server-side --field-manager=kbridge --force-conflicts -f - <"$tmp/dry.yaml"
ok "install again: every object unchanged over one connection, and kubectl diff of the --dry-run output against the cluster is empty"

out=$(kb admin install -n kbtest --image registry.example/kbridge-agent:9.9)
[[ $(grep -v ' unchanged$' <<<"$out") == "deployment/kbridge-manager configured" ]] || { echo "$out"; exit 1; }
[[ $(adm -n kbtest get deploy kbridge-manager -o 'jsonpath={.spec.template.spec.containers[0].image}') == registry.example/kbridge-agent:9.9 ]]
no kc admin diff --server-side --field-manager=kbridge --force-conflicts -f - <"$tmp/dry.yaml" >/dev/null
out=$(kb admin install -n kbtest --preview-url-base http://preview.example:8080)
[[ $(grep -v ' unchanged$' <<<"$out") == "service/kbridge-manager configured
deployment/kbridge-manager configured" ]] || { echo "$out"; exit 1; }
[[ $(adm -n kbtest get svc kbridge-manager -o 'jsonpath={.spec.ports[*].name}') == "tls webhook preview" ]]
[[ $(adm -n kbtest get deploy kbridge-manager -o 'jsonpath={.spec.template.spec.containers[0].args}') == *'"--preview-url-base=http://preview.example:8080"'* ]]
out=$(kb admin install -n kbtest -o json)
python3 -c 'import json,sys; d=json.load(sys.stdin); assert [x["action"] for x in d].count("configured")==2' <<<"$out"
[[ $(adm -n kbtest get deploy kbridge-manager -o 'jsonpath={.spec.template.spec.containers[0].image}') == ghcr.io/kbridge/kbridge-agent:* ]]
[[ $(adm -n kbtest get svc kbridge-manager -o 'jsonpath={.spec.ports[*].name}') == "tls webhook" ]]
kc admin diff --server-side --field-manager=kbridge --force-conflicts -f - <"$tmp/dry.yaml"
ok "install --image, --preview-url-base upgrade in place: only the Deployment (and Service) configured; back again (-o json says so too), fields removed"

# The manager's ServiceAccount: what the README's permissions promise.
sa=system:serviceaccount:kbtest:kbridge-manager
can() { adm auth can-i --as="$sa" "$@"; }
[[ $(can get secrets/kbridge-manager-ca -n kbtest) == yes ]]
[[ $(can get secrets/kbridge-manager-state -n kbtest) == yes && $(can update secrets/kbridge-manager-state -n kbtest) == yes ]]
[[ $(can create secrets -n kbtest) == yes && $(can create configmaps -n kbtest) == yes ]]
[[ $(can get configmaps/kbridge-manager-ca -n kbtest) == yes && $(can update configmaps/kbridge-manager-ca -n kbtest) == yes ]]
[[ $(can watch endpointslices.discovery.k8s.io -A) == yes && $(can list nodes 2>/dev/null) == yes ]]
[[ $(can get mutatingwebhookconfigurations/kbridge-injector) == yes && $(can update mutatingwebhookconfigurations/kbridge-injector) == yes ]]
for no in "get secrets/other -n kbtest" "list secrets -n kbtest" "get secrets -n default" \
	"delete secrets/kbridge-manager-ca -n kbtest" "create pods -n default" "patch services -n default" \
	"create configmaps -n default" "update configmaps/other -n kbtest" "list configmaps -n kbtest" \
	"watch configmaps -A" "delete secrets/kbridge-manager-state -n kbtest" "patch secrets/kbridge-manager-state -n kbtest" \
	"update mutatingwebhookconfigurations/other" "list mutatingwebhookconfigurations" \
	"delete mutatingwebhookconfigurations/kbridge-injector" "update validatingwebhookconfigurations/kbridge-injector"; do
	# shellcheck disable=SC2086 # words on purpose
	[[ $(can $no 2>/dev/null) == no ]] || { echo "the manager may $no"; exit 1; }
done
# --env-file: ConfigMaps by name anywhere (no list or watch); Secrets only
# with install --env-secrets (tests/e2e/podenv.sh).
[[ $(can get configmaps/any -n default) == yes ]]
ok "the manager may read the cluster, its own two Secrets, its CA ConfigMap and the injection webhook's configuration (by name), ConfigMaps by name (for --env-file), not other secrets or webhooks, no list of configmaps, no write elsewhere"

adm create clusterrolebinding alice-kbridge --clusterrole=kbridge-developer --user=alice >/dev/null
adm -n kbtest create rolebinding alice-kbridge --role=kbridge-developer --user=alice >/dev/null
[[ $(kc alice auth can-i create certificatesigningrequests.certificates.k8s.io 2>/dev/null) == yes ]]
[[ $(kc alice auth can-i create pods --subresource=portforward -n kbtest) == yes ]]
[[ $(kc alice auth can-i create pods --subresource=portforward -n default 2>/dev/null) == no ]]
[[ $(kc alice auth can-i get secrets -n kbtest 2>/dev/null) == no ]]
adm delete clusterrolebinding alice-kbridge >/dev/null
adm -n kbtest delete rolebinding alice-kbridge >/dev/null
ok "a developer bound to kbridge-developer may create CSRs and port-forward in kbtest only; no secrets"

# alice has no RBAC: one line naming the permission, nothing created.
out=$(kb alice install -n kbalice 2>&1) && { echo "alice installed"; exit 1; }
[[ $(wc -l <<<"$out") == 1 && $out == *"forbidden: you may not "*"namespaces/kbalice (cluster-wide"*"nothing was changed"* ]] ||
	{ echo "$out"; exit 1; }
no adm get ns kbalice >/dev/null 2>&1
# bob (static token, from his own workstation): the same
out=$(QUIET=1 pg bob "$KB_BIN/kbridge" install --kubeconfig "$K/bob.kubeconfig" -n kbalice 2>&1) &&
	{ echo "bob installed"; exit 1; }
[[ $(wc -l <<<"$out") == 1 && $out == *"forbidden: you may not "*"namespaces/kbalice (cluster-wide"* ]] || { echo "$out"; exit 1; }
# With some permissions (the namespace, not the rest): still nothing.
adm create clusterrole kbns --verb=get,create,patch --resource=namespaces >/dev/null
adm create clusterrolebinding alice-kbns --clusterrole=kbns --user=alice >/dev/null
out=$(kb alice install -n kbalice 2>&1) && { echo "alice installed"; exit 1; }
[[ $(wc -l <<<"$out") == 1 && $out == *"forbidden: you may not get serviceaccounts/kbridge-manager in namespace kbalice"* ]] ||
	{ echo "$out"; exit 1; }
no adm get ns kbalice >/dev/null 2>&1
out=$(kb alice uninstall -n kbtest 2>&1) && { echo "alice uninstalled"; exit 1; }
[[ $(wc -l <<<"$out") == 1 && $out == *'User "alice" cannot list resource'*"nothing was changed" ]] || { echo "$out"; exit 1; }
[[ $(labelled kbtest | wc -l) == 11 ]]
adm delete clusterrolebinding alice-kbns >/dev/null
adm delete clusterrole kbns >/dev/null
# Allowed to get and delete every object, and list those install makes, not
# to list everything the namespace holds (which decides whether it goes):
# still nothing deleted.
adm create clusterrole kbdel --verb=get,list,delete \
	--resource=namespaces,serviceaccounts,services,configmaps,secrets,deployments.apps,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io,mutatingwebhookconfigurations.admissionregistration.k8s.io >/dev/null
adm create clusterrolebinding alice-kbdel --clusterrole=kbdel --user=alice >/dev/null
out=$(kb alice uninstall -n kbtest 2>&1) && { echo "alice uninstalled"; exit 1; }
[[ $(wc -l <<<"$out") == 1 && $out == *"cannot list "*" in namespace kbtest"*"forbidden"*"nothing was changed" ]] || { echo "$out"; exit 1; }
[[ $(labelled kbtest | wc -l) == 11 ]]
adm delete clusterrolebinding alice-kbdel >/dev/null
adm delete clusterrole kbdel >/dev/null
ok "alice without the permissions: one line naming the missing one; nothing created (even with the namespace allowed), nothing deleted (even with get and delete allowed)"

# What kbridge did not make keeps the namespace, whatever its kind (a
# custom resource too); what Kubernetes makes (Endpoints, Events) does not.
adm apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
EOF
poll 100 adm get --raw /apis/example.com/v1
adm -n kbtest apply -f - >/dev/null <<'EOF'
apiVersion: example.com/v1
kind: Widget
metadata: {name: mine}
EOF
adm -n kbtest create configmap keepme --from-literal=a=b >/dev/null
adm create clusterrole unrelated --verb=get --resource=pods >/dev/null
before=$(adm get clusterroles,clusterrolebindings -o name | grep -v kbridge | sort)
# what an older install (or the manager) made: labelled, other names
adm create clusterrole kbridge-old --verb=get --resource=pods >/dev/null
adm -n kbtest create configmap kbridge-extra >/dev/null
adm label clusterrole kbridge-old app.kubernetes.io/managed-by=kbridge >/dev/null
adm -n kbtest label configmap kbridge-extra app.kubernetes.io/managed-by=kbridge >/dev/null
out=$(kb admin uninstall -n kbtest)
want="clusterrole/kbridge-old deleted
configmap/kbridge-extra deleted
mutatingwebhookconfiguration/kbridge-injector deleted
deployment/kbridge-manager deleted
service/kbridge-manager deleted
role/kbridge-developer deleted
clusterrole/kbridge-developer deleted
rolebinding/kbridge-manager deleted
role/kbridge-manager deleted
clusterrolebinding/kbridge-manager deleted
clusterrole/kbridge-manager deleted
serviceaccount/kbridge-manager deleted
namespace/kbtest kept (it holds configmap/keepme, which kbridge did not make)"
[[ $out == "$want" ]] || { echo "$out"; exit 1; }
[[ $(adm -n kbtest get cm keepme -o 'jsonpath={.data.a}') == b ]]
[[ $(adm get ns kbtest -o 'jsonpath={.status.phase}') == Active ]]
[[ $(labelled kbtest) == namespace/kbtest ]]
[[ $(adm get clusterroles,clusterrolebindings -o name | grep -v kbridge | sort) == "$before" ]]
adm -n kbtest delete configmap keepme >/dev/null
out=$(kb admin uninstall -n kbtest)
[[ $out == "namespace/kbtest kept (it holds widget/mine, which kbridge did not make)
nothing to do: kbridge is not installed in namespace kbtest" ]] || { echo "$out"; exit 1; }
adm -n kbtest delete widget mine >/dev/null
adm -n kbtest create configmap keepme --from-literal=a=b >/dev/null
out=$(kb admin uninstall -n kbtest)
[[ $out == "namespace/kbtest kept (it holds configmap/keepme, which kbridge did not make)
nothing to do: kbridge is not installed in namespace kbtest" ]] || { echo "$out"; exit 1; }
ok "uninstall deletes what install made (and what is labelled as kbridge's), keeps a namespace holding someone else's ConfigMap or custom resource (and them, and other ClusterRoles); again: nothing to do"

# GitOps: the --dry-run output applied by kubectl is what install makes.
"$KB_BIN/kbridge" install --dry-run -n kbgit | kc admin apply --server-side --field-manager=kbridge -f - >/dev/null
out=$(kb admin install -n kbgit)
[[ $out == "$(expect kbgit unchanged)" ]] || { echo "$out"; exit 1; }
ok "the --dry-run manifests applied with kubectl apply --server-side are exactly what install makes (install: all unchanged)"

# carol (exec plugin credentials), made cluster admin, uninstalls.
adm create clusterrolebinding carol-admin --clusterrole=cluster-admin --user=carol >/dev/null
adm -n kbgit create secret generic kbridge-manager-ca --from-literal=k=v >/dev/null
adm -n kbgit label secret kbridge-manager-ca app.kubernetes.io/managed-by=kbridge >/dev/null
out=$(kb carol uninstall -n kbgit)
[[ $(lines "$out") == "$(lines "$(expect kbgit deleted)
secret/kbridge-manager-ca deleted")" ]] || { echo "$out"; exit 1; }
[[ -n $(adm get ns kbgit -o 'jsonpath={.metadata.deletionTimestamp}') ]]
out=$(kb carol uninstall -n kbgit)
[[ $out == "nothing to do: kbridge is not installed in namespace kbgit" ]] || { echo "$out"; exit 1; }
out=$(kb carol install -n kbgit 2>&1) && { echo "install into a terminating namespace worked"; exit 1; }
[[ $out == *"namespace/kbgit is being deleted"* ]]
ok "uninstall (carol, exec plugin) deletes the manager's labelled CA Secret and the namespace it made (no namespace controller here: it stays Terminating); again: nothing to do"

"$PG" down >/dev/null
ok "down"
