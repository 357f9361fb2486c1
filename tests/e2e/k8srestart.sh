#!/bin/bash
# The in-cluster manager keeps its state in the API (issue 12): its previews
# and intercepts are in the Secret kbridge-manager-state, so when its pod is
# deleted and another starts, nothing is lost.
#
#   mate --preview URL--> 192.168.60.1:8080 -> manager pod :8080 --+
#   api pod --x-dev: alice--> web.default:80 -> web pod :8081 = sidecar --> manager pod
#                                                                   |   --TLS--> alice's kbridged (ws)
#   manager pod (scripts/playground run-pod, the Deployment's args) <-> Secret kbridge/kbridge-manager-state
#
# The pod runs as installpod.sh runs it (no hand-run manager); the sidecar
# in front of web is started here with an identity from the Secret's CA, and
# web's service is pointed at it (as the playground does for its own
# manager). Then run-pod replaces the pod: alice's daemon and the sidecar
# reconnect by themselves, the preview serves on the same URL and token, the
# intercept routes alice's header to her workstation under the same id, and
# bob (a raw protocol peer with bob's identity: his daemon would never send
# another's id) cannot resume alice's id.
set -euo pipefail
KB_PG_PREFIX=kbkr
PG_TIMEOUT=60
FAIL_LOGS=(pods/kbridge/kbridge-manager/pod.log ws/kbridged.sock.log web/sidecar.log kube/apiserver.log)
. "$(dirname "$0")/common.bash"

control_plane
K=$STATE/kube
P=$STATE/pods/kbridge/kbridge-manager
BASE=http://preview.kb.test:8080
adm() { "$PG" kubectl "$@"; }
json() { python3 -c "import json,sys; j=json.load(sys.stdin); $1"; }
get() { pg api curl -sS -m 5 "$@"; }
mcurl() { pg mate curl -sS -m 5 -o "$STATE/body" -w '%{http_code}' "$@" >"$STATE/code"; cat "$STATE/body"; }
code() { cat "$STATE/code"; }
pod_name() { adm -n kbridge get pods -l app.kubernetes.io/name=kbridge-manager -o 'jsonpath={.items[*].metadata.name}'; }
state() { adm -n kbridge get secret kbridge-manager-state -o json; }
# the decoded state.json of the Secret
stored() { state | json 'import base64; print(base64.b64decode(j["data"]["state.json"]).decode())'; }
bgpids=()
cleanup_extra() {
	alice quit >/dev/null 2>&1 || true
	((${#bgpids[@]} == 0)) || kill "${bgpids[@]}" 2>/dev/null || true
}

KB_PG_NO_MANAGER=1 "$PG" up --k8s >/dev/null
pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" --preview-url-base "$BASE" >/dev/null
[[ $(adm -n kbridge get deploy kbridge-manager -o 'jsonpath={.spec.template.spec.containers[0].args}') == *'"--state-secret=kbridge-manager-state"'* ]]
[[ $(adm auth can-i update secrets/kbridge-manager-state -n kbridge --as=system:serviceaccount:kbridge:kbridge-manager) == yes ]]
[[ $(adm auth can-i get secrets/other -n kbridge --as=system:serviceaccount:kbridge:kbridge-manager 2>/dev/null || true) == no ]]
[[ $(adm auth can-i update configmaps/kbridge-manager-state -n kbridge --as=system:serviceaccount:kbridge:kbridge-manager 2>/dev/null || true) == no ]]
"$PG" run-pod kbridge kbridge-manager >/dev/null
pod=$(pod_name)
poll 100 listening mgr 8443
poll 50 listening mgr 8080
grep -q "no Secret kbridge/kbridge-manager-state yet" "$P/pod.log"
no adm -n kbridge get secret kbridge-manager-state >/dev/null 2>&1
ok "install (--state-secret; the manager may get and update that Secret only, no ConfigMap writes) and run-pod: the first manager finds no state"

# libcurl is not linked (agent/curlload.c): the in-cluster manager opened it for the API
mgr_maps_curl() {
	local p
	for p in $(ip netns pids "$KB_PG-mgr"); do
		[[ $(readlink "/proc/$p/exe" 2>/dev/null) == */kbridge-agent ]] &&
			grep -q 'libcurl\.so' "/proc/$p/maps" && return 0
	done
	return 1
}
mgr_maps_curl
ok "the in-cluster manager opened libcurl (kbridge-agent loads it at the first API call)"

# Identities from the Secret's CA, as installpod.sh issues alice's.
mkdir -m 700 "$STATE/ca"
adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$STATE/ca/ca.crt"
adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.key}' | base64 -d >"$STATE/ca/ca.key"
echo '{"address":"192.168.50.1:8443"}' >"$STATE/ca/config.json"
for u in alice bob; do
	"$KB_BIN/kbridge-agent" issue --state-dir "$STATE/ca" --name $u --out "$STATE/$u-pod.json" >/dev/null
done
"$KB_BIN/kbridge-agent" issue --state-dir "$STATE/ca" --sidecar --workload web --namespace default \
	--out "$STATE/web/sidecar-pod.json" >/dev/null
rm "$STATE/ca/ca.key"

# web's sidecar, and web's service through it (the playground does this
# only for its hand-run manager)
"$PG" exec web -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SERVICE_NAME=web \
	"$KB_BIN/kbridge-agent" sidecar --profile "$STATE/web/sidecar-pod.json" --workload web \
	--namespace default --listen 0.0.0.0:8081 --app 127.0.0.1:80 --protocol http \
	--manager kbridge-manager.kbridge.svc.cluster.local:8443 >"$STATE/web/sidecar.log" 2>&1 &
bgpids+=($!)
poll 100 listening web 8081
pg node nft insert rule ip playground svc ip daddr 10.96.1.1 tcp dport 80 dnat to 10.244.1.10:8081
alice connect --profile "$STATE/alice-pod.json" >/dev/null
"$PG" exec ws -- python3 "$here/devserver.py" alice 8080 >/dev/null 2>&1 &
bgpids+=($!)
poll 50 listening ws 8080
sidecar_in() { [[ $(alice list --output json | json 'print([w["replicas"] for w in j["workloads"] if w["name"] == "web"])') == "[1]" ]]; }
poll 100 sidecar_in
[[ $(get http://web.default/) == *web* ]]
ok "alice connects to the pod's manager; web's sidecar (an identity from the same CA) joined it"

alice intercept web --port 8080 --http-header x-dev=alice --preview-url --output json >"$STATE/icpt.json"
tok=$(json 'print(j["preview"]["token"])' <"$STATE/icpt.json")
url=$(json 'print(j["preview"]["url"])' <"$STATE/icpt.json")
[[ $url == "http://$tok.preview.kb.test:8080/" ]]
alice preview create web --ttl 1h --output json >"$STATE/ttl.json"
tok2=$(json 'print(j.get("preview", j)["token"])' <"$STATE/ttl.json")
exp2=$(json 'print(int(j.get("preview", j)["expires"]))' <"$STATE/ttl.json")
id=$(alice list --output json | json 'print([i["id"] for w in j["workloads"] for i in w["intercepts"] if i["mine"]][0])')
[[ $id =~ ^[0-9a-f]{24}$ ]]
[[ $(get -H 'x-dev: alice' http://web.default/hi) == "alice local: GET /hi" ]]
[[ $(get http://web.default/) == *web* && $(get http://web.default/) != *alice* ]]
[[ $(mcurl "$url") == "alice local: GET /" && $(code) == 200 ]]
[[ $(mcurl "http://$tok2.preview.kb.test:8080/x") == "alice local: GET /x" ]]
ok "alice intercepts web (x-dev: alice, id $id) with a preview URL, and a second preview for 1 h: both serve"

# Written within the debounce; one key, holding what was asked, no more.
has_both() { [[ $(stored | json 'print(len(j["previews"]), len(j["intercepts"]))') == "2 1" ]]; }
poll 50 has_both
state >"$STATE/secret.json"
json 'assert list(j["data"]) == ["state.json"], j["data"].keys()
assert j["type"] == "Opaque" and j["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kbridge"' <"$STATE/secret.json"
stored >"$STATE/stored.json"
size=$(wc -c <"$STATE/stored.json")
json "assert j['version'] == 1 and set(j) == {'version', 'previews', 'intercepts'}, j
i = j['intercepts'][0]
assert set(i) == {'id', 'owner', 'instance', 'workload', 'namespace', 'protocol', 'port', 'match'}, i
assert (i['id'], i['owner'], i['workload'], i['namespace'], i['port']) == ('$id', 'alice', 'web', 'default', 8080), i
assert i['match']['headers'] == [{'name': 'x-dev', 'value': 'alice'}], i
p = {x['token']: x for x in j['previews']}
assert set(p) == {'$tok', '$tok2'}, p
assert all(x['owner'] == 'alice' and x['intercept_id'] == '$id' for x in p.values()), p
assert p['$tok']['expires'] == 0 and p['$tok2']['expires'] == $exp2, p" <"$STATE/stored.json"
# the workload's environment (from the sidecar) is not kept
no grep -q SERVICE_NAME "$STATE/stored.json"
((size < 4096))
echo "# state.json: $size bytes"
ok "Secret kbridge-manager-state (labelled, Opaque) holds one key: version 1, the intercept (id, owner, match, port) and both previews (tokens, absolute expiry), $size bytes"

r0=$(alice status --output json | json 'print(j["reconnects"])')
n0=$(wc -l <"$P/pod.log")
"$PG" run-pod kbridge kbridge-manager >/dev/null
new=$(pod_name)
[[ -n $new && $new != "$pod" ]]
no adm -n kbridge get pod "$pod" >/dev/null 2>&1
newlog() { tail -n "+$((n0 + 1))" "$P/pod.log"; }
loaded() { [[ $(newlog) == *"state from Secret kbridge/kbridge-manager-state: 1 intercepts and 2 previews"* ]]; }
poll 100 loaded
up_again() { [[ $(newlog) == *"manager listening on"* ]]; }
poll 100 up_again
# read before the listener opened
newlog | awk '/state from Secret/ {s = NR} /manager listening on/ {l = NR} END {exit !(s && l && s < l)}'
back() { alice status --output json | json "assert j['state'] == 'connected' and j['reconnects'] >= $r0 + 1, j"; }
poll 150 back
ok "run-pod replaced the pod ($pod -> $new); the new manager read 1 intercept and 2 previews from the Secret before listening; alice's daemon reconnected by itself"

routed() { [[ $(get -H 'x-dev: alice' http://web.default/hi) == "alice local: GET /hi" ]]; }
poll 150 routed
[[ $(alice list --output json | json 'print([i["id"] for w in j["workloads"] for i in w["intercepts"] if i["mine"]][0])') == "$id" ]]
[[ $(get http://web.default/) == *web* && $(get http://web.default/) != *alice* ]]
[[ $(newlog) == *"intercept $id of alice on web.default is back"* || $(newlog) == *"intercept $id: alice resumed web.default"* ]]
ok "the sidecar reconnected and got its routes back: x-dev: alice reaches alice's workstation under the same id; other requests the app"

serves() { [[ $(mcurl "$url") == "alice local: GET /" && $(code) == 200 ]]; }
poll 50 serves
[[ $(mcurl "http://$tok2.preview.kb.test:8080/y") == "alice local: GET /y" ]]
[[ $(alice preview list --output json | json "print([int(p['expires']) for p in j['previews'] if p.get('token') == '$tok2'])") == "[$exp2]" ]]
ok "both preview URLs serve again with the same tokens; the 1 h one keeps its expiry"

out=$(pg bob python3 "$here/kbraw.py" --wait 10 "$STATE/bob-pod.json" control \
	"{\"type\":\"intercept\",\"workload\":\"web\",\"namespace\":\"default\",\"port\":8080,\"headers\":[{\"name\":\"x-dev\",\"value\":\"bob\"}],\"resume\":\"$id\"}")
json "r = j['result']; assert r['ok'] is False and r['status'] == 403, r
assert r['error'] == 'intercept $id is not yours to resume (it belongs to alice)', r" <<<"$out"
[[ $(get -H 'x-dev: alice' http://web.default/hi) == "alice local: GET /hi" ]]
[[ $(alice list --output json | json 'print(sum(len(w["intercepts"]) for w in j["workloads"]))') == 1 ]]
ok "bob (his own identity, a raw session) cannot resume alice's intercept id: 403; hers is untouched"

alice leave web >/dev/null
gone() { [[ $(stored | json 'print(len(j["previews"]), len(j["intercepts"]))') == "0 0" ]]; }
poll 50 gone
[[ $(mcurl "$url") != *alice* && $(code) == 404 ]]
ok "alice leaves: the intercept and its previews are gone from the Secret too"

alice quit >/dev/null
