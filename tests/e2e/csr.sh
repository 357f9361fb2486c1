#!/bin/bash
# Developers' identities from Kubernetes (agent/csr.c, cli/identity.c):
# the manager run from `kbridge install`'s manifest (run-pod, as in
# installpod.sh) signs a CertificateSigningRequest of kbridge.dev/developer
# for exactly the user the API server says asked. alice (client
# certificate), bob (token) and carol (exec plugin) each get a certificate
# with `kbridge login` once an admin binds kbridge-developer to them, and it
# really connects; a request for another name is Denied with the reason and
# never signed; dave, not bound, gets one line saying what to ask for; a
# second login reuses the cached certificate (no new CSR).
set -euo pipefail
KB_PG_PREFIX=kbcsr
FAIL_LOGS=(kube/apiserver.log pods/kbridge/kbridge-manager/pod.log ws/kbridged.sock.log)
. "$(dirname "$0")/common.bash"

control_plane
K=$STATE/kube
P=$STATE/pods/kbridge/kbridge-manager
adm() { "$PG" kubectl "$@"; }
cleanup_extra() { alice quit >/dev/null 2>&1 || true; bob quit >/dev/null 2>&1 || true; }
# login NODE USER [ARGS]: kbridge login with USER's kubeconfig and cache
login() {
	local node=$1 user=$2
	shift 2
	QUIET=1 pg "$node" env XDG_CACHE_HOME="$STATE/cache-$user" HOME=/nonexistent \
		"$KB_BIN/kbridge" login --kubeconfig "$K/$user.kubeconfig" "$@"
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
csrs_of() { adm get csr -o json | python3 -c 'import json,sys
print(sum(1 for i in json.load(sys.stdin)["items"] if i["spec"]["username"] == sys.argv[1]))' "$1"; }
bind() {
	adm create clusterrolebinding "kbridge-dev-$1" --clusterrole=kbridge-developer --user="$1" >/dev/null
	adm -n kbridge create rolebinding "kbridge-dev-$1" --role=kbridge-developer --user="$1" >/dev/null
}
# profile USER MANAGER: a profile file from USER's cached identity
profile() {
	local dir
	dir=$(jq_cache "$1")
	python3 - "$1" "$2" "$dir" "$STATE/ca.crt" "$STATE/$1-csr.json" <<'EOF'
import json, os, sys
user, mgr, d, ca, out = sys.argv[1:]
p = {"manager": mgr, "name": user, "role": "kbridge-user", "ca": open(ca).read(),
     "cert": open(d + "/cert.pem").read(), "key": open(d + "/key.pem").read()}
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(p).encode())
os.close(fd)
EOF
}
jq_cache() { cat "$STATE/$1.cache"; }

KB_PG_NO_MANAGER=1 "$PG" up --k8s >/dev/null
pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" >/dev/null
"$PG" run-pod kbridge kbridge-manager >/dev/null
poll 100 listening mgr 8443
grep -q "csr: signing requests for kbridge.dev/developer" "$P/pod.log"
grep -q "published the CA certificate in ConfigMap kbridge/kbridge-manager-ca" "$P/pod.log"
adm -n kbridge get configmap kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}' >"$STATE/ca.crt"
[[ $(adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d) == "$(cat "$STATE/ca.crt")" ]]
[[ $(adm -n kbridge get configmap kbridge-manager-ca -o 'jsonpath={.data}') != *key* ]]
[[ $(adm -n kbridge get configmap kbridge-manager-ca -o 'jsonpath={.metadata.labels.app\.kubernetes\.io/managed-by}') == kbridge ]]
ok "the manager from the manifest signs for kbridge.dev/developer and publishes its CA certificate (not the key) in ConfigMap kbridge/kbridge-manager-ca"

# dave: a client certificate of the cluster's CA, no binding at all.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=dave \
	-keyout "$K/dave.key" -out "$STATE/dave.csr" 2>/dev/null
openssl x509 -req -in "$STATE/dave.csr" -CA "$K/ca.crt" -CAkey "$K/ca.key" -days 1 \
	-out "$K/dave.crt" 2>/dev/null
sed -e "s|client-certificate: alice.crt|client-certificate: dave.crt|" \
	-e "s|client-key: alice.key|client-key: dave.key|" -e "s/alice/dave/g" "$K/alice.kubeconfig" >"$K/dave.kubeconfig"
chmod 600 "$K/dave.kubeconfig" "$K/dave.key"
out=$(login ws dave 2>&1) && { echo "$out"; exit 1; }
[[ $out == "kbridge: dave may not read ConfigMap kbridge/kbridge-manager-ca (ask an admin to bind Role kbridge-developer in namespace kbridge and ClusterRole kbridge-developer)" ]] ||
	{ echo "$out"; exit 1; }
adm -n kbridge create rolebinding kbridge-dev-dave --role=kbridge-developer --user=dave >/dev/null
out=$(login ws dave 2>&1) && { echo "$out"; exit 1; }
[[ $out == "kbridge: dave may not create certificatesigningrequests (ask an admin to bind ClusterRole kbridge-developer)" ]] ||
	{ echo "$out"; exit 1; }
[[ $(csrs_of dave) == 0 ]]
ok "dave, not bound: one line naming the binding to ask for (the CA ConfigMap, then the CSR create); no CSR made"

for u in alice bob carol; do bind "$u"; done
declare -A node=([alice]=ws [bob]=bob [carol]=ws)
for u in alice bob carol; do
	t0=$(date +%s%N)
	j=$(login "${node[$u]}" "$u" -o json)
	t1=$(date +%s%N)
	[[ $(field user <<<"$j") == "$u" && $(field reused <<<"$j") == False ]] || { echo "$j"; exit 1; }
	name=$(field csr <<<"$j")
	field cache <<<"$j" >"$STATE/$u.cache"
	d=$(jq_cache "$u")
	[[ $d == "$STATE/cache-$u/kbridge/"* ]]
	[[ $(stat -c %a "$d") == 700 && $(stat -c %a "$d/key.pem") == 600 && $(stat -c %a "$d/cert.pem") == 600 ]]
	# the CSR: the API server's record of who asked, approved by the manager, signed once
	[[ $(adm get csr "$name" -o 'jsonpath={.spec.username} {.spec.signerName} {.status.conditions[0].type} {.status.conditions[0].reason}') == \
		"$u kbridge.dev/developer Approved KbridgeApproved" ]]
	[[ $(grep -c "csr $name: signed a certificate for $u (86400 s)" "$P/pod.log") == 1 ]]
	subj=$(openssl x509 -in "$d/cert.pem" -noout -subject -nameopt RFC2253)
	[[ $subj == "subject=CN=$u,O=kbridge-user" ]] || { echo "$subj"; exit 1; }
	openssl verify -CAfile "$STATE/ca.crt" -purpose sslclient "$d/cert.pem" >/dev/null
	no openssl verify -CAfile "$STATE/ca.crt" -purpose sslserver "$d/cert.pem" >/dev/null 2>&1
	# at most 24 h
	openssl x509 -in "$d/cert.pem" -noout -checkend 86000 >/dev/null
	no openssl x509 -in "$d/cert.pem" -noout -checkend 86401 >/dev/null
	[[ $(openssl x509 -in "$d/cert.pem" -noout -pubkey) == "$(openssl pkey -in "$d/key.pem" -pubout)" ]]
	echo "# $u: certificate in $(((t1 - t0) / 1000000)) ms (csr $name)"
done
[[ -s $K/carol-credential.log ]]
ok "alice (client certificate), bob (token), carol (exec plugin): login gets a certificate through a CSR (approved KbridgeApproved, signed once): O=kbridge-user CN=user, client auth only, 24 h, the manager's CA; cached 0700/0600"

profile alice 192.168.50.1:8443
alice connect --profile "$STATE/alice-csr.json" >/dev/null
[[ $(alice status -o json | field user) == alice && $(alice status -o json | field state) == connected ]]
[[ $(pg ws curl -sS -m 5 http://web.default/) == *web* ]]
alice quit >/dev/null
profile carol 192.168.50.1:8443
alice connect --profile "$STATE/carol-csr.json" >/dev/null
[[ $(alice status -o json | field user) == carol ]]
[[ $(pg ws curl -sS -m 5 http://web.default/) == *web* ]]
alice quit >/dev/null
profile bob 192.168.51.1:8443
bob connect --profile "$STATE/bob-csr.json" >/dev/null
[[ $(bob status -o json | field user) == bob && $(bob status -o json | field state) == connected ]]
[[ $(pg bob curl -sS -m 5 http://web.default/) == *web* ]]
bob quit >/dev/null
ok "each certificate really connects through the pod's manager (status shows the user) and reaches web.default"

n0=$(csrs_of alice)
before=$(sha256sum "$(jq_cache alice)/cert.pem")
j=$(login ws alice -o json)
[[ $(field reused <<<"$j") == True && $(field user <<<"$j") == alice ]] || { echo "$j"; exit 1; }
[[ $(csrs_of alice) == "$n0" && $(sha256sum "$(jq_cache alice)/cert.pem") == "$before" ]]
out=$(login ws alice)
[[ $out == "user alice: certificate valid until "*" (cached), in $(jq_cache alice)" ]] || { echo "$out"; exit 1; }
# a cache that is not private is not trusted: a new CSR
chmod 644 "$(jq_cache alice)/key.pem"
j=$(login ws alice -o json)
[[ $(field reused <<<"$j") == False && $(csrs_of alice) == $((n0 + 1)) ]]
[[ $(stat -c %a "$(jq_cache alice)/key.pem") == 600 ]]
ok "a second login reuses the cached certificate (no new CSR); a key readable by others is not reused"

# alice asks for bob's name: denied with the reason, never signed.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bob \
	-keyout /dev/null -out "$STATE/bob-by-alice.csr" 2>/dev/null
req=$(base64 -w0 <"$STATE/bob-by-alice.csr")
body='{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{"name":"alice-as-bob"},"spec":{"request":"'$req'","signerName":"kbridge.dev/developer","usages":["client auth"]}}'
code=$(QUIET=1 pg ws curl -sS -m 5 --cacert "$K/ca.crt" --cert "$K/alice.crt" --key "$K/alice.key" \
	-H 'Content-Type: application/json' -X POST -d "$body" -o /dev/null -w '%{http_code}' \
	https://192.168.50.1:6443/apis/certificates.k8s.io/v1/certificatesigningrequests)
[[ $code == 201 ]]
denied() { [[ $(adm get csr alice-as-bob -o 'jsonpath={.status.conditions[0].type}') == Denied ]]; }
poll 100 denied
[[ $(adm get csr alice-as-bob -o 'jsonpath={.spec.username} {.status.conditions[0].reason}: {.status.conditions[0].message}') == \
	"alice KbridgeDenied: subject CN=bob does not match the requesting user alice (expected exactly CN=alice)" ]]
# server auth, from bob's own token: denied too
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bob \
	-keyout /dev/null -out "$STATE/bob-server.csr" 2>/dev/null
req=$(base64 -w0 <"$STATE/bob-server.csr")
body='{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{"name":"bob-server"},"spec":{"request":"'$req'","signerName":"kbridge.dev/developer","usages":["client auth","server auth"]}}'
pg bob env KUBECACHEDIR="$STATE/kcache" "$bin/kubectl" --kubeconfig "$K/bob.kubeconfig" create -f - <<<"$body" >/dev/null
d2() { [[ $(adm get csr bob-server -o 'jsonpath={.status.conditions[0].type}') == Denied ]]; }
poll 100 d2
[[ $(adm get csr bob-server -o 'jsonpath={.status.conditions[0].message}') == "usage 'server auth' is not allowed (only client auth, digital signature, key encipherment)" ]]
sleep 1
[[ -z $(adm get csr alice-as-bob bob-server -o 'jsonpath={.items[*].status.certificate}') ]]
no grep -q "csr alice-as-bob: signed\|csr bob-server: signed" "$P/pod.log"
ok "a CSR by alice for CN=bob, or by bob for server auth: Denied with the one-line reason, never signed"

# developers may create and get CSRs, not list them; the manager may not read secrets beyond its own
[[ $(adm auth can-i --as=alice list certificatesigningrequests.certificates.k8s.io 2>/dev/null || true) == no ]]
[[ $(adm auth can-i --as=alice get configmaps/kbridge-manager-ca -n kbridge) == yes ]]
[[ $(adm auth can-i --as=alice get configmaps/kbridge-manager-state -n kbridge 2>/dev/null || true) == no ]]
# (signers are no API resource: kubectl auth can-i cannot ask, a SubjectAccessReview can)
sar() { # USER VERB SIGNER
	adm create -o 'jsonpath={.status.allowed}' -f - <<<'{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"'"$1"'","resourceAttributes":{"group":"certificates.k8s.io","resource":"signers","verb":"'"$2"'","name":"'"$3"'"}}}'
}
mgr=system:serviceaccount:kbridge:kbridge-manager
[[ $(sar $mgr sign kbridge.dev/developer) == true && $(sar $mgr approve kbridge.dev/developer) == true ]]
[[ $(sar $mgr sign kubernetes.io/kube-apiserver-client) != true && $(sar $mgr approve kubernetes.io/kubelet-serving) != true ]]
[[ $(sar alice approve kbridge.dev/developer) != true && $(sar alice sign kbridge.dev/developer) != true ]]
ok "RBAC: developers create/get CSRs (no list) and get the CA ConfigMap only; the manager signs for kbridge.dev/developer only"
