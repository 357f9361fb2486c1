#!/bin/bash
# One JSON shape for every command that prints data (-o json and -o yaml):
# the keys of every object sorted, at every depth, and the lists
# (workloads, intercepts, previews) sorted as kubectl sorts, by namespace,
# then name (workload, then owner, id, token for ties); -o yaml the same
# document. Against a connected session with something in each list:
#
#   alice: intercepts web.default (x-dev=alice) and cart.shop, previews of both
#   bob:   intercepts web.default (x-dev=bob)
#
# Checked for list (both namespaces), status, version, preview list and
# preview create; the text of list and status in the same order.
set -euo pipefail

KB_PG_PREFIX=kbjs
FAIL_LOGS=(ws/kbridged.sock.log bob/kbridged.sock.log manager.log)
. "$(dirname "$0")/common.bash"
python3 -c 'import yaml' || { echo "not ok - python3 yaml (PyYAML) is needed"; exit 1; }
tmp=$(mktemp -d /tmp/kbridge-jsonshape.$$.XXXXXX)
cleanup_extra() { rm -rf "$tmp"; }

two_developers "$here/devserver.py"
# shop first, so the daemon's own order is not the sorted one
alice intercept cart -n shop --port 8080 >/dev/null
alice intercept web --port 8080 --http-header x-dev=alice >/dev/null
bob intercept web --port 8080 --http-header x-dev=bob >/dev/null
alice preview create cart -n shop >/dev/null
alice preview create web >/dev/null
ok "alice intercepts cart.shop and web.default, bob web.default; alice has a preview of each"

# shape FILE json|yaml: keys sorted at every depth; every list of
# workloads, intercepts or previews sorted by namespace, name, workload,
# owner, id, token_prefix; prints how many objects and lists it saw
shape() {
	python3 - "$@" <<'PY'
import json, sys, yaml
doc = json.load(open(sys.argv[1])) if sys.argv[2] == "json" else yaml.safe_load(open(sys.argv[1]))
KEYS = ("namespace", "name", "workload", "owner", "id", "token_prefix")
seen = {"objects": 0, "lists": 0}
def check(v, where):
    if isinstance(v, dict):
        seen["objects"] += 1
        assert list(v) == sorted(v), ("keys not sorted", where, list(v))
        for k, x in v.items():
            if k in ("workloads", "intercepts", "previews") and isinstance(x, list):
                seen["lists"] += 1
                order = [tuple(str(i.get(f) or "") for f in KEYS) for i in x]
                assert order == sorted(order), ("list not sorted", where + "." + k, order)
            check(x, where + "." + k)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            check(x, "%s[%d]" % (where, i))
check(doc, "")
print(seen["objects"], seen["lists"])
PY
}
# both CMD...: -o json and -o yaml of alice's CMD: the same document, in
# one shape; its counts
both() {
	alice "$@" -o json >"$tmp/j"
	alice "$@" -o yaml >"$tmp/y"
	python3 -c 'import json,sys,yaml; assert json.load(open(sys.argv[1])) == yaml.safe_load(open(sys.argv[2]))' "$tmp/j" "$tmp/y"
	shape "$tmp/y" yaml >/dev/null
	shape "$tmp/j" json
}

read -r o l < <(both list)
((o >= 5 && l >= 4)) || { cat "$tmp/j"; exit 1; }
json 'w = j["workloads"]
k = [(x["namespace"], x["name"]) for x in w]
assert k == sorted(k) and ("default", "web") in k and ("shop", "cart") in k, k
web = [x for x in w if x["name"] == "web"][0]
assert [i["owner"] for i in web["intercepts"]] == ["alice", "bob"], web' <"$tmp/j"
# the text rows in the same order
rows=$(alice list | awk 'NR > 1 {print $2 "/" $1}')
[[ $rows == "$(json 'print("\n".join(x["namespace"] + "/" + x["name"] for x in j["workloads"]))' <"$tmp/j")" ]] ||
	{ echo "$rows"; exit 1; }
read -r o l < <(both list -n shop)
((o >= 2 && l >= 2)) || { cat "$tmp/j"; exit 1; }
ok "list, list -n shop (-o json, -o yaml): keys sorted at every depth ($o objects in shop's), workloads by namespace and name, web's intercepts alice then bob; the text in that order"

read -r o l < <(both status)
((o >= 3 && l >= 1)) || { cat "$tmp/j"; exit 1; }
json 'i = j["intercepts"]
assert [(x["namespace"], x["workload"]) for x in i] == [("default", "web"), ("shop", "cart")], i' <"$tmp/j"
read -r o l < <(both preview list)
((o >= 3 && l >= 1)) || { cat "$tmp/j"; exit 1; }
json 'p = [x for x in j["previews"] if x["owner"] == "alice"]
assert [(x["namespace"], x["workload"]) for x in p] == [("default", "web"), ("shop", "cart")], p
assert all(x["created_at"].endswith("Z") and "T" in x["created_at"] for x in p), p' <"$tmp/j"
read -r o l < <(both version)
((o >= 2)) || { cat "$tmp/j"; exit 1; }
alice preview create web -o json >"$tmp/j"
shape "$tmp/j" json >/dev/null
ok "status (intercepts default/web before shop/cart), preview list (the same, ISO 8601 times), version, preview create: one shape, JSON and YAML alike"

alice quit >/dev/null
bob quit >/dev/null
echo "1..$n"
