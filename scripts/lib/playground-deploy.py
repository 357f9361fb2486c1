#!/usr/bin/env python3
"""The playground's stand-in for the Deployment, ReplicaSet and StatefulSet
controllers (none runs there: no kube-controller-manager): scripts/playground
follow-deployments SECONDS NS...

It is a stand-in, kept faithful to what the real controllers do where kbridge
depends on it (which template change replaces which pods, and in what order),
not a reimplementation. Every 0.5 s, for the namespaces given:
  - Deployment: the ReplicaSet of its current pod template (NAME-HASH, HASH
    the first 10 hex digits of the SHA-256 of the template as sorted JSON;
    owned by the Deployment, label pod-template-hash) is made if missing and
    given spec.replicas; its other ReplicaSets are scaled to 0, as after a
    rollout; its status (replicas, readyReplicas, updatedReplicas) written.
  - ReplicaSet (a Deployment's or a bare one): as many Pods as spec.replicas
    from its template (generateName NAME-, owned by it; excess ones deleted,
    not-ready then newest first); its status written. As in Kubernetes, a
    change of a ReplicaSet's template replaces NO existing pod: only pods
    made later (after one is deleted or evicted) get the new template.
  - StatefulSet: Pods NAME-0 .. NAME-(replicas-1), stable names (label
    controller-revision-hash NAME-HASH, statefulset.kubernetes.io/pod-name,
    apps.kubernetes.io/pod-index; hostname and subdomain its serviceName).
    podManagementPolicy OrderedReady (the default): pod i is made only once
    0..i-1 are Running and Ready, extra ones deleted from the highest, one at
    a time; Parallel: all at once. updateStrategy RollingUpdate (the
    default): once every pod is there and Ready, the highest-ordinal pod of
    an older template is deleted, one at a time, and made again (same name)
    from the new one when its object is gone; OnDelete: only pods made later
    get the new template. Its status (replicas, readyReplicas,
    currentReplicas, updatedReplicas, updateRevision, currentRevision)
    written.
Pods are created through the API (so admission webhooks see them) on the kwok
node, which reports them Running and every container ready. Without --run no
Pod runs a process (kwok gives them its own IPs, which no network namespace
serves). With --run (env PG_RUN=1, set by scripts/lib/playground-deploy.bash),
each Pod made is also run as a kubelet would (playground-run.py says how), and
becomes Ready only once its containers listen. Not emulated: surge and rolling
pace of Deployments (everything at once), minReadySeconds, a StatefulSet's
rollingUpdate.partition and maxUnavailable, volumeClaimTemplates,
ControllerRevision objects, adoption of orphan Pods. Stops after SECONDS (or
on SIGTERM; with --run, its pods' processes and namespaces go too). The
kubectl command to use follows "--" (the admin's, in node)."""
import hashlib, json, os, re, signal, subprocess, sys, time

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


def deleting(p):
    return bool(p["metadata"].get("deletionTimestamp"))


def template_hash(t):
    return hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:10]


def create_pod(cmd, runner, pod):
    if runner:
        runner.create(pod)
    else:
        kubectl(cmd, "create", "-o", "name", "-f", "-", stdin=json.dumps(pod))


def delete_pod(cmd, ns, name):
    kubectl(cmd, "-n", ns, "delete", "pod", name, "--wait=false", "--ignore-not-found")


def write_status(cmd, ns, o, resource, st):
    if any(o.get("status", {}).get(k) != v for k, v in st.items()):
        kubectl(cmd, "-n", ns, "patch", resource, o["metadata"]["name"], "--subresource=status",
                "--type=merge", "-p", json.dumps({"status": st}))


def deployment(cmd, ns, d, rss, pods):
    """Its current ReplicaSet made and scaled, the others scaled to 0; the
    new ones appended to rss (the ReplicaSet stand-in makes their pods)."""
    mine = [r for r in rss if owned_by(r, d["metadata"]["uid"])]
    t = d["spec"]["template"]
    h = template_hash(t)
    name = d["metadata"]["name"] + "-" + h
    want = d["spec"].get("replicas", 1)
    cur = [r for r in mine if r["metadata"]["name"] == name]
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
            return
        rs = json.loads(out)
        rs["kind"] = "ReplicaSet"
        rss.append(rs)
        cur = [rs]
    rs = cur[0]
    for r in mine:
        n = want if r is rs else 0
        if r["spec"].get("replicas", 1) != n and kubectl(
                cmd, "-n", ns, "scale", "rs", r["metadata"]["name"], "--replicas=%d" % n) is not None:
            r["spec"]["replicas"] = n
    ps = [p for p in pods if owned_by(p, rs["metadata"]["uid"])]
    nready = sum(1 for p in ps if ready(p))
    write_status(cmd, ns, d, "deployment", {
        "observedGeneration": d["metadata"].get("generation", 1), "replicas": len(ps),
        "updatedReplicas": len(ps), "readyReplicas": nready, "availableReplicas": nready})


def replicaset(cmd, ns, rs, pods, runner):
    """spec.replicas pods from its template; existing pods are never
    replaced because the template changed (as in Kubernetes)."""
    name = rs["metadata"]["name"]
    want = rs["spec"].get("replicas", 1)
    mine = [p for p in pods if owned_by(p, rs["metadata"]["uid"])]
    rt = rs["spec"]["template"]
    for _ in range(want - len(mine)):
        create_pod(cmd, runner, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": name + "-", "namespace": ns,
                         "labels": rt["metadata"].get("labels", {}),
                         "annotations": rt["metadata"].get("annotations", {}),
                         "ownerReferences": owner(rs)},
            "spec": dict(rt["spec"], nodeName=NODE)})
    # the controller's order: not ready first, then the newest
    excess = sorted(mine, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
    excess = sorted(excess, key=ready)[:max(len(mine) - want, 0)]
    for p in excess:
        delete_pod(cmd, ns, p["metadata"]["name"])
    nready = sum(1 for p in mine if ready(p))
    write_status(cmd, ns, rs, "replicaset", {
        "observedGeneration": rs["metadata"].get("generation", 1), "replicas": len(mine),
        "fullyLabeledReplicas": len(mine), "readyReplicas": nready, "availableReplicas": nready})


def statefulset(cmd, ns, s, allpods, runner):
    """Pods NAME-0.. in order; a template change rolls them from the
    highest ordinal, one at a time (RollingUpdate), or not (OnDelete)."""
    name, uid = s["metadata"]["name"], s["metadata"]["uid"]
    spec = s["spec"]
    want = spec.get("replicas", 1)
    t = spec["template"]
    rev = name + "-" + template_hash(t)
    ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
    rolling = spec.get("updateStrategy", {}).get("type", "RollingUpdate") == "RollingUpdate"
    pat = re.compile("^" + re.escape(name) + r"-(0|[1-9][0-9]*)$")
    mine = {}
    for p in allpods:
        m = pat.match(p["metadata"]["name"])
        if m and owned_by(p, uid):
            mine[int(m.group(1))] = p
    revof = lambda p: p["metadata"].get("labels", {}).get("controller-revision-hash")
    steady = True
    for i in range(want):
        p = mine.get(i)
        if p is None:
            labels = dict(t["metadata"].get("labels", {}), **{
                "controller-revision-hash": rev, "statefulset.kubernetes.io/pod-name": "%s-%d" % (name, i),
                "apps.kubernetes.io/pod-index": str(i)})
            pspec = dict(t["spec"], nodeName=NODE, hostname="%s-%d" % (name, i))
            if spec.get("serviceName"):
                pspec["subdomain"] = spec["serviceName"]
            create_pod(cmd, runner, {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "%s-%d" % (name, i), "namespace": ns, "labels": labels,
                             "annotations": t["metadata"].get("annotations", {}), "ownerReferences": owner(s)},
                "spec": pspec})
            steady = False
            if ordered:
                break
        elif deleting(p) or not ready(p):
            steady = False
            if ordered:
                break
    # extra ordinals: the highest first (one at a time when ordered)
    extra = sorted((i for i in mine if i >= want), reverse=True)
    for i in extra:
        if not deleting(mine[i]) and (not ordered or steady):
            delete_pod(cmd, ns, mine[i]["metadata"]["name"])
        if ordered:
            break
    if rolling and steady and not extra:
        for i in range(want - 1, -1, -1):
            if revof(mine[i]) != rev:
                delete_pod(cmd, ns, mine[i]["metadata"]["name"])
                break
    live = [p for i, p in mine.items() if i < want and not deleting(p)]
    nready = sum(1 for p in live if ready(p))
    updated = sum(1 for p in live if revof(p) == rev)
    cur = rev if updated == want else s.get("status", {}).get("currentRevision") or rev
    write_status(cmd, ns, s, "statefulset", {
        "observedGeneration": s["metadata"].get("generation", 1), "replicas": len(live),
        "readyReplicas": nready, "availableReplicas": nready, "currentReplicas": len(live) - (
            0 if cur == rev else updated), "updatedReplicas": updated, "updateRevision": rev,
        "currentRevision": cur})


def reconcile(cmd, ns, runner):
    out = kubectl(cmd, "-n", ns, "get", "deployments,replicasets,statefulsets,pods", "-o", "json")
    if out is None:
        return
    items = json.loads(out)["items"]
    allpods = [p for p in items if p["kind"] == "Pod"]
    if runner:
        runner.check(ns, allpods)
    pods = [p for p in allpods if not deleting(p)]
    rss = [o for o in items if o["kind"] == "ReplicaSet"]
    for d in (o for o in items if o["kind"] == "Deployment"):
        deployment(cmd, ns, d, rss, pods)
    for rs in rss:
        replicaset(cmd, ns, rs, pods, runner)
    for s in (o for o in items if o["kind"] == "StatefulSet"):
        statefulset(cmd, ns, s, allpods, runner)


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
