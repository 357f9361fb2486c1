#!/usr/bin/env python3
"""The playground's stand-in for the Deployment and ReplicaSet controllers
(none runs there): scripts/playground follow-deployments SECONDS NS...

Every 0.5 s, for each Deployment of the namespaces given: the ReplicaSet of
its current pod template (NAME-HASH, HASH the first 10 hex digits of the
SHA-256 of the template as sorted JSON, as run-pod names it; owned by the
Deployment) is made if missing, and gets spec.replicas Pods from the template
(created through the API, so admission webhooks see them; on the kwok node,
which reports them Running and every container ready); the Pods of its other
ReplicaSets are deleted and those scaled to 0, as after a rollout; the
Deployment's status (replicas, readyReplicas, updatedReplicas) is written.
Without --run no Pod runs a process (kwok gives them its own IPs, which no
network namespace serves). With --run (env PG_RUN=1, set by
scripts/lib/playground-deploy.bash), each Pod made is also run as a kubelet
would (playground-run.py says how), and becomes Ready only once its
containers listen. Limits: no surge or rolling pace (everything at once);
StatefulSets and bare ReplicaSets are not followed. Stops after SECONDS (or
on SIGTERM; with --run, its pods' processes and namespaces go too). The
kubectl command to use follows "--" (the admin's, in node)."""
import hashlib, json, os, signal, subprocess, sys, time

NODE = "playground-node"


def kubectl(cmd, *args, stdin=None):
    r = subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        sys.stderr.write("follow-deployments: kubectl %s: %s" % (" ".join(args[:3]), r.stderr))
        return None
    return r.stdout


def owner(o):
    return [{"apiVersion": o.get("apiVersion", "apps/v1"), "kind": o["kind"], "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]


def owned_by(o, uid):
    return any(r.get("uid") == uid and r.get("controller") for r in o["metadata"].get("ownerReferences", []))


def ready(p):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in p.get("status", {}).get("conditions", []))


def reconcile(cmd, ns, runner):
    out = kubectl(cmd, "-n", ns, "get", "deployments,replicasets,pods", "-o", "json")
    if out is None:
        return
    items = json.loads(out)["items"]
    if runner:
        runner.check(ns, [p for p in items if p["kind"] == "Pod"])
    deps = [o for o in items if o["kind"] == "Deployment"]
    for d in deps:
        d["kind"] = "Deployment"
        rss = [o for o in items if o["kind"] == "ReplicaSet" and owned_by(o, d["metadata"]["uid"])]
        t = d["spec"]["template"]
        h = hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:10]
        name = d["metadata"]["name"] + "-" + h
        want = d["spec"].get("replicas", 1)
        cur = [r for r in rss if r["metadata"]["name"] == name]
        if not cur:
            labels = dict(t["metadata"].get("labels", {}), **{"pod-template-hash": h})
            tmpl = json.loads(json.dumps(t))
            tmpl["metadata"]["labels"] = labels
            rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner(d)},
                  "spec": {"replicas": want, "selector": {"matchLabels": dict(
                      d["spec"]["selector"]["matchLabels"], **{"pod-template-hash": h})}, "template": tmpl}}
            out = kubectl(cmd, "create", "-o", "json", "-f", "-", stdin=json.dumps(rs))
            if out is None:
                continue
            cur = [json.loads(out)]
        rs = cur[0]
        rs["kind"] = "ReplicaSet"
        pods = [p for p in items if p["kind"] == "Pod" and not p["metadata"].get("deletionTimestamp")]
        mine = [p for p in pods if owned_by(p, rs["metadata"]["uid"])]
        rt = rs["spec"]["template"]
        for _ in range(want - len(mine)):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"generateName": name + "-", "namespace": ns,
                                "labels": rt["metadata"].get("labels", {}),
                                "annotations": rt["metadata"].get("annotations", {}),
                                "ownerReferences": owner(rs)},
                   "spec": dict(rt["spec"], nodeName=NODE)}
            if runner:
                runner.create(pod)
            else:
                kubectl(cmd, "create", "-o", "name", "-f", "-", stdin=json.dumps(pod))
        for p in mine[want:]:
            kubectl(cmd, "-n", ns, "delete", "pod", p["metadata"]["name"], "--wait=false", "--ignore-not-found")
        for old in rss:
            if old["metadata"]["uid"] == rs["metadata"]["uid"]:
                continue
            for p in pods:
                if owned_by(p, old["metadata"]["uid"]):
                    kubectl(cmd, "-n", ns, "delete", "pod", p["metadata"]["name"], "--wait=false",
                            "--ignore-not-found")
            if old["spec"].get("replicas", 1) != 0:
                kubectl(cmd, "-n", ns, "scale", "rs", old["metadata"]["name"], "--replicas=0")
        nready = sum(1 for p in mine if ready(p))
        st = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": len(mine),
              "updatedReplicas": len(mine), "readyReplicas": nready, "availableReplicas": nready}
        if any(d.get("status", {}).get(k) != v for k, v in st.items()):
            kubectl(cmd, "-n", ns, "patch", "deployment", d["metadata"]["name"], "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": st}))


def main():
    args = sys.argv[1:]
    sep = args.index("--")
    seconds, namespaces, cmd = float(args[0]), args[1:sep], args[sep + 1:]
    end = time.monotonic() + seconds
    runner = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    if os.environ.get("PG_RUN") == "1":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        runner = __import__("playground-run").Runner(cmd, kubectl)
    try:
        while time.monotonic() < end:
            for ns in namespaces:
                reconcile(cmd, ns, runner)
            if runner:
                runner.sync_services(namespaces)
            time.sleep(0.5)
    finally:
        if runner:
            runner.stop_all()


if __name__ == "__main__":
    main()
