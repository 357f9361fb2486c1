#!/bin/bash
# The messages of the first hour, in the playground (alice on ws, bob on
# bob, the manager run from a profile):
#   - intercept cart in the wrong namespace names the one that has it
#     (-n shop) and the namespaces with sidecars; a name nothing has says
#     so; a workload whose sidecars are gone says that instead;
#   - repeating an identical intercept succeeds (the same id); another
#     port or match is still refused;
#   - two connects at once both succeed; a profile others can read gets a
#     warning;
#   - preview remove takes the URL and the prefix preview list shows;
#     --ttl 1h30m is an hour and a half.
set -euo pipefail

KB_PG_PREFIX=kbm
FAIL_LOGS=(ws/kbridged.sock.log bob/kbridged.sock.log manager.log)
. "$(dirname "$0")/common.bash"
export KB_PG_GRACE=3

"$PG" up >/dev/null
cp "$STATE/alice.json" "$STATE/alice-open.json"
chmod 0644 "$STATE/alice-open.json"
alice connect --profile "$STATE/alice-open.json" >"$STATE/c1" 2>&1 & c1=$!
alice connect --profile "$STATE/alice-open.json" >"$STATE/c2" 2>&1 & c2=$!
wait $c1 || { cat "$STATE/c1"; exit 1; }
wait $c2 || { cat "$STATE/c2"; exit 1; }
grep -q '^Connected to ' "$STATE/c1" && grep -q '^Connected to ' "$STATE/c2"
alice status >/dev/null
ok "two connects at once both succeed"
grep -qx "kbridge: warning: profile $STATE/alice-open.json is readable by everyone (mode 0644): it holds your private key; run 'chmod 600 $STATE/alice-open.json'" "$STATE/c1"
[[ -z $(QUIET=1 alice connect --profile "$STATE/alice.json" 2>&1 >/dev/null) ]]
ok "a profile others can read gets a warning (a 0600 one none)"

out=$(QUIET=1 alice intercept cart --port 8080 2>&1) && exit 1
[[ $out == "kbridge: intercept failed: no workload cart in namespace default runs a kbridge sidecar, but one in namespace shop does: add -n shop (namespaces with sidecars: default, shop)" ]] ||
	{ echo "$out"; exit 1; }
out=$(QUIET=1 alice intercept nosuch --port 8080 2>&1) && exit 1
[[ $out == "kbridge: intercept failed: no workload nosuch in namespace default runs a kbridge sidecar (namespaces with sidecars: default, shop; 'kbridge list -n NS' shows theirs)" ]] ||
	{ echo "$out"; exit 1; }
ok "intercept cart in the wrong namespace suggests -n shop and lists the namespaces; a name no sidecar has says so"

id1=$(alice intercept web --port 8080 -H x-dev=alice -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["intercept"]["id"])')
id2=$(alice intercept web --port 8080 -H x-dev=alice -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["intercept"]["id"])')
[[ -n $id1 && $id1 == "$id2" ]]
[[ $(alice status -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["intercepts"]))') == 1 ]]
out=$(QUIET=1 alice intercept web --port 8081 -H x-dev=alice 2>&1) && exit 1
[[ $out == *"you already intercept web.default (header x-dev=alice)"* ]] || { echo "$out"; exit 1; }
out=$(QUIET=1 alice intercept web --port 8080 -H x-dev=bob 2>&1) && exit 1
[[ $out == *"you already intercept web.default"* ]] || { echo "$out"; exit 1; }
ok "an identical intercept again succeeds with the same id; another port or match is refused"

# preview create --ttl 1h30m; remove by URL, then by the listed prefix
exp=$(alice preview create web --ttl 1h30m -o json | python3 -c '
import json, sys, time
print(int(json.load(sys.stdin)["preview"]["expires"] - time.time()))')
((exp > 5300 && exp <= 5400)) || { echo "expires in $exp s"; exit 1; }
mine() { alice preview list -o json | python3 -c "import json,sys; print([p for p in json.load(sys.stdin)['previews'] if p['mine']][0]['$1'])"; }
url=$(mine url)
[[ $url == http://* ]]
alice preview remove "$url" >"$STATE/out"
grep -q '^Removed the preview of web.default' "$STATE/out"
[[ $(alice preview list) == "No previews"* ]]
alice preview create web >/dev/null
tok=$(mine token)
prefix=$(alice preview list | awk 'NR == 2 { print substr($1, 1, 6) }')
[[ $tok == "$prefix"* ]]
alice preview remove "$prefix…" >"$STATE/out"
grep -q '^Removed the preview of web.default' "$STATE/out"
[[ $(alice preview list) == "No previews"* ]]
out=$(QUIET=1 alice preview remove zzzzzz 2>&1) && exit 1
[[ $out == "kbridge: preview remove: no preview of yours starts with that ('kbridge preview list' shows yours)" ]] || { echo "$out"; exit 1; }
ok "preview create --ttl 1h30m expires in 90 minutes; preview remove takes the URL and the listed prefix"

# echo's sidecar goes away while alice holds an intercept of it: the
# manager still knows echo, but nothing can serve an intercept now.
alice intercept echo --port 7070 >/dev/null 2>&1
kill "$(cat "$STATE/echo/sidecar.pid")"
poll 100 grep -q 'sidecar echo.default left workload echo.default' "$STATE/manager.log"
bob connect --profile "$STATE/bob.json" >/dev/null
out=$(QUIET=1 bob intercept echo --port 7070 2>&1) && exit 1
[[ $out == "kbridge: intercept failed: workload echo in namespace default has no kbridge sidecar connected now (its pods are gone or starting): try again once one runs" ]] ||
	{ echo "$out"; exit 1; }
ok "a workload whose sidecar is gone: its own message, not 'no such workload'"

bob quit >/dev/null
alice quit >/dev/null
echo "1..$n"
