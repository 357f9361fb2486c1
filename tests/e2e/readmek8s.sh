#!/bin/bash
# README.md's Kubernetes commands, as printed, against the playground's real
# kube-apiserver (the control plane of scripts/build-control-plane):
#   - the block a "<!-- playground-k8s:" comment announces: each "$ " line
#     runs in order, in one bash (so `pg=`, `ws()`, `kubectl()` and the
#     exported KUBECONFIG carry over), from the top of the clone, against
#     this test's own playground (KB_PG); each must exit 0, and each line
#     shown under a command (indented, no "$ ") must be a line of what it
#     printed (stdout and stderr), so a command whose behaviour changes
#     fails here;
#   - from "## Installing in Kubernetes" to "### Sidecar injection", every
#     indented block must follow a marker: that one, "runs-in-playground-k8s"
#     (each of its lines must be a command of that block, so it ran) or
#     "not-run: REASON" (a synopsis with [OPTIONS], or output of one run);
#     an unmarked block, or none of the run block, fails. The test says
#     which commands it ran and which blocks it did not, and why.
# HOME is a directory of the test's (connect caches alice's certificate
# under ~/.cache).
set -euo pipefail

KB_PG_PREFIX=kbrk
FAIL_LOGS=(kube/apiserver.log pods/kbridge/kbridge-manager/pod.log ws/kbridged.sock.log)
. "$(dirname "$0")/common.bash"
cd "$top"
[[ -x bin/kbridge ]] || { echo "not ok - bin/kbridge is missing (make)"; exit 1; }
control_plane
tmp=$(mktemp -d /tmp/kbridge-readmek8s.$$.XXXXXX)
cleanup_extra() { rm -rf "$tmp"; }

# The plan: the run block's commands and the lines shown under each, the
# other marked blocks; or one line saying what is wrong with the README.
python3 - README.md "$tmp" <<'PY'
import json, re, sys
lines = open(sys.argv[1]).read().split("\n")
out = sys.argv[2]
try:
    start = lines.index("## Installing in Kubernetes")
    end = lines.index("### Sidecar injection")
except ValueError as e:
    sys.exit("not ok - README.md: no section %s" % e)
blocks, i, marker = [], start, None
while i < end:
    l = lines[i]
    m = re.match(r"<!-- (playground-k8s|runs-in-playground-k8s|not-run)(:\s*(.*))?", l)
    if m:
        reason = [m.group(3) or ""]
        while "-->" not in lines[i]:
            i += 1
            reason.append(lines[i].strip())
        marker = (m.group(1), " ".join(reason).replace("-->", "").strip(), i + 1)
        i += 1
        continue
    if l.startswith("    ") and (i == 0 or lines[i - 1].strip() == ""):
        body = []
        while i < end and (lines[i].startswith("    ") or
                           (lines[i] == "" and i + 1 < end and lines[i + 1].startswith("    "))):
            body.append(lines[i][4:])
            i += 1
        if marker is None:
            sys.exit("not ok - README.md line %d: a command block without a marker "
                     "(playground-k8s, runs-in-playground-k8s or not-run: REASON): %s" % (i - len(body) + 1, body[0]))
        blocks.append((marker[0], marker[1], marker[2], body))
        marker = None
        continue
    i += 1
runs = [b for b in blocks if b[0] == "playground-k8s"]
if len(runs) != 1:
    sys.exit("not ok - README.md: %d playground-k8s blocks (wanted one)" % len(runs))
cmds = []
for l in runs[0][3]:
    if l.startswith("$ "):
        cmds.append({"cmd": l[2:], "shown": []})
    elif l.strip() and cmds:
        cmds[-1]["shown"].append(l)
if len(cmds) < 20:
    sys.exit("not ok - README.md: the playground-k8s block has %d commands (wanted 20 or more)" % len(cmds))
texts = [c["cmd"] for c in cmds]
for kind, why, at, body in blocks:
    if kind == "runs-in-playground-k8s":
        for l in body:
            if l.strip() and l not in texts:
                sys.exit("not ok - README.md line %d: '%s' is not a command of the playground-k8s block" % (at, l))
json.dump({"cmds": cmds, "blocks": [[k, w, a, b] for k, w, a, b in blocks if k != "playground-k8s"]},
          open(out + "/plan.json", "w"))
PY
plan=$tmp/plan.json
ncmd=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["cmds"]))' "$plan")

# One script: each command in { } (a function or variable it defines
# stays), its output kept in out.N and shown, then its check.
python3 - "$plan" "$tmp" >"$tmp/script" <<'PY'
import json, shlex, sys
plan, tmp = json.load(open(sys.argv[1])), sys.argv[2]
print("set -u")
for i, c in enumerate(plan["cmds"], 1):
    o = "%s/out.%d" % (tmp, i)
    print("{\n%s\n} >%s 2>&1 </dev/null" % (c["cmd"], o))
    print("rc=$?; sed 's/^/#   /' %s" % o)
    q = shlex.quote(c["cmd"])
    print("if ((rc != 0)); then echo \"not ok - README (command %d): \"%s\" (exit $rc)\"; exit 1; fi" % (i, q))
    for s in c["shown"]:
        print("grep -qxF -- %s %s || { echo \"not ok - README (command %d): \"%s\" did not print: \"%s; exit 1; }"
              % (shlex.quote(s), o, i, q, shlex.quote(s)))
    print("echo \"ok - README: \"%s" % q)
PY
HOME=$tmp timeout 900 bash "$tmp/script"
ok "README.md's playground-k8s block: $ncmd commands ran as printed, against the playground's kube-apiserver, and printed what it shows"
python3 - "$plan" <<'PY'
import json, sys
for kind, why, at, body in json.load(open(sys.argv[1]))["blocks"]:
    first = next(l for l in body if l.strip())
    if kind == "runs-in-playground-k8s":
        print("# README.md line %d (%s ...): ran, as lines of the playground-k8s block" % (at, first))
    else:
        print("# README.md line %d (%s ...): not run as printed: %s" % (at, first, why))
PY
ok "every command block of README.md's Kubernetes sections is marked: run, or not run with its reason (above)"
echo "1..$n"
