#!/bin/bash
# Sidecar enrollment (agent/enroll.h) against the playground's real
# kube-apiserver: `kbridge install`, the manager pod from its Deployment
# (run-pod). Pods are created through the API server, so the injection
# webhook patches them; the sidecar process of the admitted spec (its args,
# its KBRIDGE_CA) runs in the web pod's network namespace with a real
# projected token (TokenRequest bound to that Pod, audience kbridge; there
# is no kubelet here to project it):
#   - it enrolls (TokenReview, the pod read) and joins as web.default;
#   - a token of a pod that was not injected: refused;
#   - a token for another audience: refused;
#   - a pod of echo: its certificate is echo.default's (the request cannot
#     name a workload), so as web.default the manager refuses it;
#   - a certificate from `kbridge-agent issue --sidecar` for echo.default
#     cannot register as web.default either.
set -euo pipefail
KB_PG_PREFIX=kben
FAIL_LOGS=(kube/apiserver.log pods/kbridge/kbridge-manager/pod.log)
. "$(dirname "$0")/common.bash"

control_plane
K=$STATE/kube
P=$STATE/pods/kbridge/kbridge-manager
MGR=10.244.0.10
tmp=$(mktemp -d /tmp/kbenroll.XXXXXX)
sc_pids=()
cleanup_extra() { local p; for p in "${sc_pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
adm() { "$PG" kubectl "$@"; }
jq_() { python3 -c 'import json,sys; j=json.load(sys.stdin); '"$1"; }

KB_PG_NO_MANAGER=1 "$PG" up --k8s >/dev/null
pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" >/dev/null
"$PG" run-pod kbridge kbridge-manager >/dev/null
poll 100 listening mgr 8444
poll 100 listening mgr 8443
poll 100 grep -q "the CA is the caBundle of MutatingWebhookConfiguration kbridge-injector" "$P/pod.log"

# new_pod NAME [inject]: a Pod of "workload" NAME (kbridge.dev/workload) made
# through the API server (so through the webhook); the admitted Pod in
# $tmp/NAME.json
new_pod() {
	local name=$1 ann='{}'
	[[ ${2:-} == inject ]] && ann="{\"kbridge.dev/inject\": \"true\", \"kbridge.dev/workload\": \"$name\"}"
	adm create -o json -f - >"$tmp/$name.json" <<EOF
{"apiVersion": "v1", "kind": "Pod",
 "metadata": {"generateName": "$name-", "namespace": "default", "annotations": $ann},
 "spec": {"containers": [{"name": "app", "image": "nginx",
	"ports": [{"name": "http", "containerPort": 8080}]}]}}
EOF
}
field() { jq_ "print(j['metadata']['$2'])" <"$tmp/$1.json"; }
# token POD AUDIENCE: a token of default/default bound to the pod, as the
# kubelet projects it
token() {
	adm -n default create token default --audience "$2" --duration 1h --bound-object-kind Pod \
		--bound-object-name "$(field "$1" name)" --bound-object-uid "$(field "$1" uid)" \
		>"$tmp/$1-$2.token"
	chmod 644 "$tmp/$1-$2.token"
}
# sidecar POD WORKLOAD TOKEN LOG [ARGS]: the admitted pod's sidecar command
# line and KBRIDGE_CA (the manager and enrollment addresses made the pod's
# IP: there is no cluster DNS in the playground), as WORKLOAD, in the web
# pod's netns, in the background
sidecar() {
	local pod=$1 wl=$2 tok=$3 log=$4
	shift 4
	local ca args
	ca=$(jq_ '
c = [c for c in j["spec"]["containers"] if c["name"] == "kbridge-sidecar"][0]
print([e["value"] for e in c["env"] if e["name"] == "KBRIDGE_CA"][0], end="")' <"$tmp/$pod.json")
	mapfile -t args < <(jq_ '
c = [c for c in j["spec"]["containers"] if c["name"] == "kbridge-sidecar"][0]
for a in c["args"]:
	if a.startswith("--manager="): a = "--manager='"$MGR"':8443"
	elif a.startswith("--enroll="): a = "--enroll='"$MGR"':8444"
	elif a.startswith("--workload="): a = "--workload='"$wl"'"
	elif a.startswith("--listen="): a = "--listen=127.0.0.1:19901"
	print(a)' <"$tmp/$pod.json")
	"$PG" exec web -- env KBRIDGE_CA="$ca" "$KB_BIN/kbridge-agent" sidecar "${args[@]}" \
		--token="$tok" "$@" >"$log" 2>&1 &
	sc_pids+=($!)
}

new_pod web inject
jq_ '
c = [c for c in j["spec"]["containers"] if c["name"] == "kbridge-sidecar"][0]
assert "--enroll=kbridge-manager.kbridge.svc:443" in c["args"], c["args"]
assert not [a for a in c["args"] if a.startswith("--profile")], c["args"]
assert [e for e in c["env"] if e["name"] == "KBRIDGE_CA"][0]["value"].startswith("-----BEGIN CERTIFICATE-----")
assert {"name": "kbridge-token", "mountPath": "/var/run/secrets/kbridge.dev/token", "readOnly": True} in c["volumeMounts"], c["volumeMounts"]
v = [v for v in j["spec"]["volumes"] if v["name"] == "kbridge-token"][0]
assert v["projected"]["sources"][0]["serviceAccountToken"] == {"audience": "kbridge", "expirationSeconds": 3600, "path": "token"}, v
assert j["metadata"]["annotations"]["kbridge.dev/injected"] == "web.default"
' <"$tmp/web.json"
ok "an injected pod's sidecar enrolls: --enroll at the webhook Service, the CA in KBRIDGE_CA, a projected token for audience kbridge (1 h) mounted read-only"

token web kbridge
sidecar web web "$tmp/web-kbridge.token" "$tmp/web.log" --renew-after=2
poll 100 grep -q "enrolled at $MGR:8444: certificate for web.default" "$tmp/web.log"
poll 100 grep -q "enroll: .*: sidecar certificate for workload web.default (pod default/$(field web name))" "$P/pod.log"
poll 100 grep -q "sidecar .* joined workload web.default" "$P/pod.log"
ok "with its pod's token the sidecar enrolls (TokenReview, pod check) and joins as web.default"

# renewal (--renew-after 2 s here; 2/3 of the lifetime by default), off the
# data path: a new certificate, the session stays
poll 100 grep -q "renewed the certificate for web.default until" "$tmp/web.log"
(($(grep -c "sidecar certificate for workload web.default (pod default/$(field web name))" "$P/pod.log") >= 2))
[[ $(grep -c "joined workload web.default" "$P/pod.log") == 1 ]]
no grep -q "left workload web.default" "$P/pod.log"
ok "the sidecar renews its certificate with the pod's token; its session stays up"

# a pod that was not injected: its token gets nothing
ca=$(adm -n kbridge get configmap kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}')
new_pod plain
token plain kbridge
no pg web env KBRIDGE_CA="$ca" \
	"$KB_BIN/kbridge-agent" sidecar --enroll=$MGR:8444 --manager=$MGR:8443 --token="$tmp/plain-kbridge.token" \
	--workload=web --namespace=default --listen=127.0.0.1:19902 --app=127.0.0.1:8080 >"$tmp/plain.log" 2>&1
grep -q "enrollment: HTTP 403: kbridge: enrollment refused: pod default/$(field plain name) has no kbridge sidecar (not injected)" "$tmp/plain.log" ||
	{ cat "$tmp/plain.log"; exit 1; }
ok "a token of a pod that was not injected is refused (403, one line), the sidecar exits 1"

# the web pod's own token, for another audience
token web other
no pg web env KBRIDGE_CA="$ca" \
	"$KB_BIN/kbridge-agent" sidecar --enroll=$MGR:8444 --manager=$MGR:8443 --token="$tmp/web-other.token" \
	--workload=web --namespace=default --listen=127.0.0.1:19903 --app=127.0.0.1:8080 >"$tmp/other.log" 2>&1
grep -q "enrollment: HTTP 403: kbridge: enrollment refused: the token is not valid for audience kbridge" "$tmp/other.log" ||
	{ cat "$tmp/other.log"; exit 1; }
ok "the web pod's token for another audience is refused"

# a pod of echo asking to be web.default
new_pod echo inject
token echo kbridge
sidecar echo web "$tmp/echo-kbridge.token" "$tmp/echo.log" --listen=127.0.0.1:19904
poll 100 grep -q "enrolled at $MGR:8444: certificate for echo.default" "$tmp/echo.log"
poll 100 grep -q "enroll: .*: sidecar certificate for workload echo.default (pod default/$(field echo name))" "$P/pod.log"
poll 100 grep -q "sidecar certificate .* is for workload echo.default, not web.default" "$P/pod.log"
[[ $(grep -c "joined workload web.default" "$P/pod.log") == 1 ]]
ok "an echo pod asking for web.default gets echo.default's certificate only, and the manager refuses it as web.default"

# the same with a certificate made by hand from the cluster CA (the
# enrolled echo sidecar stopped first, so the refusals counted are the new
# one's)
kill "${sc_pids[-1]}"
wait "${sc_pids[-1]}" 2>/dev/null || true
refusals() { grep -c "is for workload echo.default, not web.default" "$P/pod.log"; }
more_refusals() { (($(refusals) > before)); }
mkdir -m 700 "$tmp/state"
adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$tmp/state/ca.crt"
adm -n kbridge get secret kbridge-manager-ca -o 'jsonpath={.data.ca\.key}' | base64 -d >"$tmp/state/ca.key"
printf '{"address":"%s:8443"}' "$MGR" >"$tmp/state/config.json"
"$KB_BIN/kbridge-agent" issue --state-dir "$tmp/state" --sidecar --workload echo --namespace default \
	--out "$tmp/echo-issued.json" >/dev/null
chmod 644 "$tmp/echo-issued.json"
sleep 0.5
before=$(refusals)
"$PG" exec web -- "$KB_BIN/kbridge-agent" sidecar --profile "$tmp/echo-issued.json" --workload web \
	--namespace default --listen 127.0.0.1:19905 --app 127.0.0.1:8080 --manager $MGR:8443 \
	>"$tmp/issued.log" 2>&1 &
sc_pids+=($!)
poll 100 more_refusals
[[ $(grep -c "joined workload web.default" "$P/pod.log") == 1 ]]
ok "a certificate for echo.default from 'kbridge-agent issue --sidecar' cannot register as web.default either"

# everything stops cleanly (with KB_SAN: no sanitizer report, no leak)
for p in "${sc_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
sc_pids=()
mpid=$(cat "$P/pod.pid")
kill "$mpid"
poll 100 no kill -0 "$mpid"
if grep -lE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$tmp"/*.log "$P/pod.log"; then
	for f in "$tmp"/*.log "$P/pod.log"; do sed -n '/ERROR: \(Address\|Leak\)Sanitizer\|runtime error:/,$p' "$f"; done |
		grep -v "asan_malloc\|libcrypto\|libssl\|^$" | head -n 150
	exit 1
fi
ok "the sidecars and the manager stop without a sanitizer report"
echo "1..$n"
