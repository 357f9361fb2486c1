#!/bin/bash
# End-to-end test of preview URLs (issue 4) in the playground:
#
#   mate (teammate: headless chromium, curl; dnsmasq *.preview.kb.test -> 192.168.60.1)
#     | 192.168.60.1:8080 -> node DNAT -> manager preview listener :8080
#     |   token from the host name (TOKEN.preview.kb.test) or the kbridge-preview cookie
#     |   (set by /.kbridge/preview/TOKEN), + x-kbridge-intercept-id: ID
#     v
#   web.default.svc.cluster.local:80 -> web pod :8081 = sidecar --id matches--> manager
#       --TLS--> alice's kbridged (ws) -> 127.0.0.1:8080 previewsite.py ("alice's local web")
#                                      --otherwise--> nginx :80 (the cluster's web)
#
# alice works in namespace ws, bob in bob. Screenshots and DOM dumps go to
# build/test-artifacts/preview/. Every statement is an assertion (set -e; "no
# CMD" where CMD must fail, as "! CMD" and "A && B" would not stop the test);
# every network call and browser run has a timeout.
set -euo pipefail

KB_PG_PREFIX=kbp
PG_TIMEOUT=60
FAIL_LOGS=(ws/kbridged.sock.log bob/kbridged.sock.log manager.log web/sidecar.log)
. "$(dirname "$0")/common.bash"
# Long enough for curl and chromium to see a dead daemon's preview "not active".
export KB_PG_GRACE=10
SITE=$here/previewsite.py
ART=$top/build/test-artifacts/preview
BASE=http://preview.kb.test:8080

# mate's curl; prints the body, the status code goes to $STATE/code
mcurl() { pg mate curl -sS -m 5 -o "$STATE/body" -w '%{http_code}' "$@" >"$STATE/code"; cat "$STATE/body"; }
code() { cat "$STATE/code"; }
json() { python3 -c "import json,sys; j=json.load(sys.stdin); $1"; }
# a preview's field from 'kbridge ... --output json' (the preview object, or {"preview": ...})
pfield() { json "p=j.get('preview', j); print(p['$1'])"; }
rand_token() { python3 -c 'import base64,os; print(base64.b32encode(os.urandom(16)).decode().lower().rstrip("="))'; }

shot() { # NODE NAME URL: screenshot to $ART/NAME.png
	chrome "$1" /dev/null --window-size=1024,768 --screenshot="$ART/$2.png" "$3"
	[[ -s $ART/$2.png ]]
	echo "  screenshot: ${ART#"$top"/}/$2.png" >&2
}

[[ -x $KB_BIN/kbridge-agent ]]
command -v chromium >/dev/null
"$KB_BIN/kbridge-agent" manager --help 2>&1 | grep -q -- --preview-listen
rm -rf "$ART"
mkdir -p "$ART"
two_developers "$SITE"
poll 50 listening mgr 8080
ok "playground up (manager with --preview-listen); alice and bob connected, each with a local web app"

# --- one step: intercept with a header, and a preview URL
alice intercept web --port 8080 --http-header x-dev=alice --preview-url --output json >"$STATE/icpt.json"
tok=$(pfield token <"$STATE/icpt.json")
url=$(pfield url <"$STATE/icpt.json")
link=$(pfield link <"$STATE/icpt.json")
[[ $tok =~ ^[a-z2-7]{26}$ ]]
[[ $url == "http://$tok.preview.kb.test:8080/" && $link == "$BASE/.kbridge/preview/$tok" ]]
json "assert j['preview']['workload'] == 'web' and j['preview']['owner'] == 'alice' and j['preview']['mine'], j" <"$STATE/icpt.json"
json "import re; p=j['preview']; assert p['expires_at'] is None and re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', p['created_at']), p" <"$STATE/icpt.json"
ok "intercept --http-header x-dev=alice --preview-url: token of 26 base32 chars, host-name URL and link"

# --- the teammate's browser: link form (cookie), page and XHR from alice's workstation
chrome mate "$ART/preview-link.html" --dump-dom "$link"
grep -q "alice's local web" "$ART/preview-link.html"
grep -q '<b id="api">alice api</b>' "$ART/preview-link.html"
shot mate preview-link "$link"
ok "chromium in mate opens the link: alice's page, and its fetch('/api/hello') carried the cookie to alice ($(sed -n 's/.*<b id="api">\([^<]*\)<.*/\1/p' "$ART/preview-link.html"))"

chrome mate "$ART/preview-host.html" --dump-dom "$url"
grep -q "alice's local web" "$ART/preview-host.html"
grep -q '<b id="api">alice api</b>' "$ART/preview-host.html"
ok "chromium in mate opens the host-name URL: alice's page and API"

# the same page without the preview: the cluster's version, as a pod sees it
chrome api "$ART/cluster.html" --dump-dom http://web.default.svc.cluster.local/
grep -q "the cluster's version" "$ART/cluster.html"
grep -q '<b id="api">cluster api</b>' "$ART/cluster.html"
no grep -q "alice" "$ART/cluster.html"
shot api cluster http://web.default.svc.cluster.local/
ok "the same page without the preview (chromium in the api pod) is the cluster's, API included"

chrome mate "$ART/no-token.html" --dump-dom "$BASE/"
grep -q "404 Not Found" "$ART/no-token.html"
no grep -qiE "alice|web|cluster" "$ART/no-token.html"
shot mate no-token "$BASE/"
ok "chromium in mate without a token gets the plain 404 page"

# --- curl, host-name form
[[ $(mcurl "$url") == *"alice's local web"* && $(code) == 200 ]]
[[ $(mcurl "${url}api/hello") == "alice api" && $(code) == 200 ]]
[[ $(mcurl "${url}some/path?q=1") == "alice local: GET /some/path?q=1" ]]
ok "curl through the host-name form reaches alice's page, /api/hello and any path"

# link form by hand: 302 + HttpOnly cookie; the cookie routes; it never reaches alice
hdrs=$(pg mate curl -sS -m 5 -o /dev/null -D - "$link" | tr -d '\r')
grep -qE '^HTTP/1\.[01] 302' <<<"$hdrs"
grep -qix 'location: /' <<<"$hdrs" || grep -qix "location: $BASE/" <<<"$hdrs"
c=$(grep -i '^set-cookie:' <<<"$hdrs")
[[ $c == *"kbridge-preview=$tok"* && $c == *HttpOnly* && $c == *"Path=/"* ]]
[[ $(mcurl -H "Cookie: kbridge-preview=$tok" "$BASE/api/hello") == "alice api" ]]
mcurl -H "Cookie: theme=dark; kbridge-preview=$tok; lang=en" "$BASE/headers" >"$STATE/h.json"
json "h=dict(j); assert 'x-kbridge-intercept-id' in h, h; c=h.get('cookie',''); assert '$tok' not in c and 'kbridge-preview' not in c and 'theme=dark' in c and 'lang=en' in c, c" <"$STATE/h.json"
json "import ipaddress; h=dict(j); assert ipaddress.ip_address(h.get('x-forwarded-for', '')) and h.get('x-forwarded-proto') == 'http' and h.get('x-forwarded-host') == 'preview.kb.test:8080', h" <"$STATE/h.json"
ok "link form: 302 to / with an HttpOnly cookie; the cookie routes and is stripped before alice, other cookies pass; X-Forwarded-For/Proto/Host name the teammate"

hdrs=$(pg mate curl -sS -m 5 -o "$STATE/body" -D - -H "Cookie: kbridge-preview=$tok" "$BASE/.kbridge/leave" | tr -d '\r')
grep -qE '^HTTP/1\.[01] 200' <<<"$hdrs" && grep -q "You left the preview" "$STATE/body"
grep -i '^set-cookie:' <<<"$hdrs" | grep -q 'kbridge-preview=.*Max-Age=0'
ok "/.kbridge/leave clears the cookie"

# --- everyone else keeps the normal app; other routes are unaffected
[[ $(pg api curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
[[ $(pg api curl -sS -m 5 -H 'x-dev: alice' http://web.default/x) == "alice local: GET /x" ]]
ok "cluster callers still get the app, and alice's header still reaches alice"

# --- no tricks: tokens, client headers, Host headers
for t in "$(rand_token)" "$(rand_token)"; do
	[[ $(mcurl "http://$t.preview.kb.test:8080/") != *web* && $(code) == 404 ]]
	# link form, following a redirect if any, with a cookie jar
	pg mate curl -sS -m 5 -L -b '' -o "$STATE/body" -w '%{http_code}' "$BASE/.kbridge/preview/$t" >"$STATE/code"
	[[ $(code) == 404 ]]
	no grep -qiE "web|alice|default" "$STATE/body"
	[[ $(mcurl -H "Cookie: kbridge-preview=$t" "$BASE/") != *web* && $(code) == 404 ]]
done
grep -q "404 Not Found" "$STATE/body"
ok "unknown tokens (host name, link, cookie) get a plain 404 that names nothing"

bob intercept web --port 8080 --http-header x-dev=bob >/dev/null
bob_id=$(bob list --output json | json "print([i['id'] for w in j['workloads'] for i in w['intercepts'] if i['mine']][0])")
[[ $(pg api curl -sS -m 5 -H "x-kbridge-intercept-id: $bob_id" http://web.default/x) == "bob local: GET /x" ]]
[[ $(mcurl -H "x-kbridge-intercept-id: $bob_id" "${url}api/hello") == "alice api" ]]
[[ $(mcurl -H "x-kbridge-intercept-id: bogus-$RANDOM" "${url}api/hello") == "alice api" ]]
mcurl -H "x-kbridge-intercept-id: $bob_id" "$BASE/api/hello" >/dev/null
[[ $(code) == 404 ]]
mcurl -H "x-kbridge-intercept-id: $bob_id" -H "Host: web.default" "http://192.168.60.1:8080/" >/dev/null
[[ $(code) == 404 ]]
ok "a client's own x-kbridge-intercept-id (bob's or bogus) changes nothing: alice's preview stays alice's, none is 404"

# --- the preview plus another developer's header: routed by the intercept id only. alice
# makes her intercept again, after bob's (the sidecar once took the first match in order).
alice leave web >/dev/null
alice intercept web --port 8080 --http-header x-dev=alice --preview-url --output json >"$STATE/icpt.json"
tok=$(pfield token <"$STATE/icpt.json")
url=$(pfield url <"$STATE/icpt.json")
link=$(pfield link <"$STATE/icpt.json")
[[ $(mcurl -H 'x-dev: bob' "${url}api/hello") == "alice api" ]]
[[ $(mcurl -H 'x-dev: bob' -H "Cookie: kbridge-preview=$tok" "$BASE/some/path") == "alice local: GET /some/path" ]]
[[ $(pg api curl -sS -m 5 -H 'x-dev: bob' http://web.default/x) == "bob local: GET /x" ]]
[[ $(pg api curl -sS -m 5 -H 'x-dev: alice' http://web.default/x) == "alice local: GET /x" ]]
ok "a preview link plus 'x-dev: bob' reaches alice (routed by the intercept id only); bob's header alone reaches bob"

for h in api.default api.default.svc.cluster.local web.default 10.96.1.2 kbridge-manager.kbridge.svc.cluster.local:8443 localhost; do
	mcurl -H "Host: $h" "http://192.168.60.1:8080/" >/dev/null
	[[ $(code) == 404 ]]
	no grep -q "hello from" "$STATE/body"
done
for target in http://api.default/ http://10.96.1.2/ http://web.default.svc.cluster.local/; do
	# absolute-form request targets must not pick the upstream either
	mcurl --request-target "$target" -H "Host: preview.kb.test:8080" "http://192.168.60.1:8080/" >/dev/null
	[[ $(code) == 404 || $(code) == 400 ]]
	no grep -qE "hello from|alice" "$STATE/body"
done
ok "Host headers and absolute request targets naming other services get 404 (no Host-header tricks)"

# --- list, ownership, remove, TTL
# (long enough for the checks below to see it alive also under the sanitizer build)
alice preview create web --ttl 10s --output json >"$STATE/ttl.json"
ttl_tok=$(pfield token <"$STATE/ttl.json")
ttl_at=$(date +%s)
[[ $(mcurl "http://$ttl_tok.preview.kb.test:8080/api/hello") == "alice api" ]]

out=$(alice preview create web)
printf '  | %s\n' "${out//$'\n'/$'\n'  | }" >&2
rm_tok=$(grep -oE 'http://[a-z2-7]{26}\.preview\.kb\.test:8080/' <<<"$out" | sed -n 1p | sed -E 's#http://([a-z2-7]+)\..*#\1#')
[[ $rm_tok =~ ^[a-z2-7]{26}$ ]]
[[ $out == *"$BASE/.kbridge/preview/$rm_tok"* && $out == *"expires"* ]]
[[ $(mcurl "http://$rm_tok.preview.kb.test:8080/api/hello") == "alice api" ]]
ok "preview create web: text output with both URLs and the expiry; works at once"

alice preview create web --host shop.example.test:8443 --output json >"$STATE/host.json"
htok=$(pfield token <"$STATE/host.json")
[[ $(pfield host <"$STATE/host.json") == "shop.example.test:8443" ]]
mcurl "http://$htok.preview.kb.test:8080/headers" >"$STATE/h2.json"
json "h=dict(j); assert h.get('host') == 'shop.example.test:8443', h" <"$STATE/h2.json"
[[ $(mcurl "http://$rm_tok.preview.kb.test:8080/headers" | json "print(dict(j)['host'])") == "$rm_tok.preview.kb.test:8080" ]]
rc=0; QUIET=1 alice preview create web --host 'a b' 2>"$STATE/err" || rc=$?
[[ $rc -eq 2 && $(wc -l <"$STATE/err") -eq 1 ]]
grep -q "invalid host" "$STATE/err"
ok "preview create --host: the workload gets that Host header (others keep the browser's); a bad one is a usage error"

alice preview list --output json >"$STATE/list.json"
json "
p = {x.get('token'): x for x in j['previews']}
assert '$tok' in p and '$rm_tok' in p and '$ttl_tok' in p, j
x = p['$tok']
assert x['workload'] == 'web' and x['namespace'] == 'default' and x['owner'] == 'alice', x
assert x['mine'] and x['active'] and x['url'] == '$url' and x['link'] == '$link', x
assert x['expires'] is None and p['$ttl_tok']['expires'] is not None, j
# the times also in ISO 8601 UTC, the same instants
import re, datetime
iso = lambda n: datetime.datetime.fromtimestamp(n, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
y = p['$ttl_tok']
assert x['expires_at'] is None and re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', y['expires_at']), j
assert y['expires_at'] == iso(y['expires']) and x['created_at'] == iso(x['created']), j
" <"$STATE/list.json"
out=$(alice preview list)
[[ $out == *"$tok"* && $out == *web* && $out == *alice* && $out == *active* ]]
[[ $out != *LINK* && $out != *"$link"* ]]
# -o wide: the intercept, host, created and link columns too
out=$(alice preview list -o wide)
[[ $(head -n1 <<<"$out") == *" INTERCEPT "*" HOST "*" CREATED "*" LINK" ]]
icpt=$(alice list --output json | json "print([i['id'] for w in j['workloads'] for i in w['intercepts'] if i['mine']][0])")
grep -F "$tok" <<<"$out" | grep -F "$icpt" | grep -F "$link" | grep -qE ' [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z '
# -o yaml: the same document (only these two fields change with time)
alice preview list --output yaml | python3 -c "
import json, sys, yaml
a = yaml.safe_load(sys.stdin)
b = json.load(open('$STATE/list.json'))
key = lambda d: sorted((p.get('token_prefix'), p.get('created')) for p in d['previews'])
fields = lambda d: sorted(sorted(p) for p in d['previews'])
assert key(a) == key(b) and fields(a) == fields(b), (a, b)
"
# kbridge list -o wide: a row per intercept with its owner, id and match
out=$(alice list -o wide)
[[ $(head -n1 <<<"$out") == *" OWNER "*" ID "*" MATCH" ]]
grep -E "^web +default " <<<"$out" | grep -F "alice* " | grep -F " $icpt " | grep -q "x-dev: alice"
bob preview list --output json >"$STATE/bob-list.json"
no grep -qE "$tok|$rm_tok|$ttl_tok" "$STATE/bob-list.json"
json "
x = [x for x in j['previews'] if x['token_prefix'] == '${tok:0:6}'][0]
assert x['owner'] == 'alice' and not x['mine'] and 'url' not in x and 'link' not in x, x
" <"$STATE/bob-list.json"
ok "preview list (JSON and text) shows alice's previews; bob sees them without tokens or URLs"

rc=0; QUIET=1 bob preview remove "$tok" 2>"$STATE/err" || rc=$?
((rc != 0))
grep -q alice "$STATE/err"
# nor by the prefix his list shows: it names whose it is
rc=0; QUIET=1 bob preview remove "${tok:0:6}…" 2>"$STATE/err2" || rc=$?
((rc == 1))
[[ $(cat "$STATE/err2") == "kbridge: preview remove: that preview is alice's, not yours: only its owner removes it" ]] ||
	{ cat "$STATE/err2"; exit 1; }
[[ $(mcurl "${url}api/hello") == "alice api" ]]
ok "bob cannot remove alice's preview, by token or by prefix ($(head -c 100 "$STATE/err"))"

alice preview remove "$rm_tok" >/dev/null
[[ $(mcurl "http://$rm_tok.preview.kb.test:8080/api/hello") != *alice* && $(code) == 404 ]]
[[ $(mcurl -H "Cookie: kbridge-preview=$rm_tok" "$BASE/api/hello") != *alice* && $(code) == 404 ]]
rc=0; QUIET=1 alice preview remove "$rm_tok" 2>/dev/null || rc=$?
((rc != 0))
ok "a removed preview gets 404 (host name and cookie); removing it again fails"

left=$((ttl_at + 11 - $(date +%s)))
if ((left > 0)); then sleep "$left"; fi
[[ $(mcurl "http://$ttl_tok.preview.kb.test:8080/api/hello") != *alice* && $(code) == 404 ]]
alice preview list --output json >"$STATE/list2.json"
no grep -q "$ttl_tok" "$STATE/list2.json"
ok "a preview created with --ttl 10s gets 404 after 11 s and leaves the list"

no grep -rqE "$tok|$rm_tok|$ttl_tok" "$STATE"/*.log "$STATE"/*/*.log
ok "no full token in the manager's, sidecars' or daemons' logs"

# --- the manager restarts: the same URL serves alice again once her daemon made the intercept again
"$PG" restart-manager >/dev/null
poll 100 bash -c "[[ \$($PG exec mate curl -sS -m 2 ${url}api/hello) == 'alice api' ]]"
[[ $(stat -c %a "$STATE/cluster/previews.json") == 600 ]]
no grep -q "$tok" "$STATE"/manager*.log
ok "after a manager restart the preview URL works again (previews kept in the state directory, mode 600)"

# --- leaving the intercept ends its previews
out=$(alice leave web)
[[ $out == "Left web.default: its traffic goes to the cluster again; its preview URL"*" ended" ]]
[[ $(mcurl "${url}api/hello") != *alice* && $(code) == 404 ]]
ok "leave web ends its previews (404) and says so"

# --- the owner's daemon dies: not active at once; released after the grace period, the
# preview ends with its intercept
alice intercept web --port 8080 --http-header x-dev=alice >/dev/null
alice preview create web --output json >"$STATE/q.json"
q_url=$(pfield url <"$STATE/q.json")
[[ $(mcurl "${q_url}api/hello") == "alice api" ]]
pid=$(alice status --output json | json "print(j['daemon']['pid'])")
kill -9 "$pid"
start=$(date +%s%N)
poll 20 bash -c "[[ \$($PG exec mate curl -sS -m 2 -o /dev/null -w '%{http_code}' $q_url) == 503 ]]"
body=$(mcurl --max-time 5 "$q_url")
ms=$((($(date +%s%N) - start) / 1000000))
[[ $(code) == 503 && $body == *"This preview is not active"* ]]
chrome mate "$ART/not-active.html" --dump-dom "$q_url"
grep -q "This preview is not active" "$ART/not-active.html"
shot mate not-active "$q_url"
ok "after alice's daemon dies her preview answers 503 'This preview is not active' ($ms ms; chromium too)"
poll 250 bash -c "[[ \$($PG exec mate curl -sS -m 2 -o /dev/null -w '%{http_code}' $q_url) == 404 ]]"
[[ $(pg api curl -sS -m 5 -H 'x-dev: alice' http://web.default/) == "hello from web (cluster)" ]]
bob preview list --output json | json "assert not [p for p in j['previews'] if p['owner'] == 'alice'], j"
ok "after the grace period the intercept is released and its preview ended with it (404), not listed"

# --- quit: the global intercept and its preview end at once, also for a restarted manager
alice connect --profile "$STATE/alice.json" >/dev/null
bob leave web >/dev/null
alice intercept web --port 8080 --preview-url --output json >"$STATE/g.json"
g_url=$(pfield url <"$STATE/g.json")
[[ $(mcurl "${g_url}api/hello") == "alice api" ]]
[[ $(pg api curl -sS -m 5 http://web.default/x) == "alice local: GET /x" ]]
out=$(alice quit)
[[ $out == *"Ended intercept of web.default: its traffic goes to the cluster again; 1 preview URL ended"* ]]
[[ $(pg api curl -sS -m 5 -o /dev/null -w '%{http_code}' http://web.default/) == 200 ]]
[[ $(pg api curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
[[ $(mcurl "$g_url") != *alice* && $(code) == 404 ]]
bob preview list --output json | json "assert not [p for p in j['previews'] if p['owner'] == 'alice'], j"
"$PG" restart-manager >/dev/null
poll 100 bash -c "[[ \$($PG exec mate curl -sS -m 2 -o /dev/null -w '%{http_code}' $g_url) == 404 ]]"
sleep 1
[[ $(mcurl "$g_url") != *alice* && $(code) == 404 ]]
[[ $(mcurl "$q_url") != *alice* && $(code) == 404 ]]
no grep -q "${g_url:7:26}" "$STATE/cluster/previews.json"
ok "alice quits with a global intercept: callers get the app at once (not 502), quit says what ended, its preview is gone (404), also after a manager restart"

if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/*.log "$STATE"/*/*.log
	ok "no sanitizer reports in the daemon, manager and sidecar logs"
fi
echo "artifacts: ${ART#"$top"/}/ (preview-link, cluster, no-token, not-active: .png and .html)"
echo "1..$n"
