"""follow-deployments --run: the playground's kubelet for the Pods the
stand-in controllers make (scripts/lib/playground-deploy.py imports it).

A Pod it creates gets an address from POOL (claimed as the directory
$STATE/runpods/pN, N its last byte), the annotations pod-ip (kwok reports
it as status.podIP), netns, and starting (kwok's pod-ready stage waits
while it is there). What the API server returns (so with what admission
webhooks added) is then run:
  - a network namespace $KB_PG-pN, a veth to node's bridge (v-pN, hairpin),
    ADDR/32, routes to 10.244.0.0/16 and 10.96.0.0/16 via 10.244.0.1 and no
    default route, as up builds the playground's pods; its resolv.conf
    points at the cluster DNS with the pod's search list, ndots:5;
  - volumes: projected (serviceAccountToken, made with kubectl create token
    bound to the Pod, audience as asked; configMap; downwardAPI), configMap
    and emptyDir, each a directory under the pod's; mounted only under /run
    (or /var/run): each container has a mount namespace of its own with a
    private tmpfs /run holding its volume mounts, a UTS namespace with the
    pod's name as host name;
  - initContainers in order, each must exit 0 (within 60 s), then the
    containers, each a process (playground-pod.py: image, env, user,
    capabilities; readOnlyRootFilesystem makes its mounts read-only but
    its volumes');
  - once every declared TCP containerPort listens in the namespace (and a
    kbridge-sidecar container has logged its registration with the
    manager), the starting annotation is removed, so the Pod becomes Ready.
A container that exits, there being no restart here, deletes its Pod (the
ReplicaSet's stand-in makes another). A Pod that cannot run (an image other
than playground-pod.py's, an unsupported volume or field, a failed init
container) is left Pending with annotation playground.kbridge.dev/not-run
and one warning line. A Pod deleted (or gone) has its processes killed (its
process groups, by PID), its namespace deleted; all of them when the
follower stops, which deletes their Pods too (no process serves them; a
follower started later makes new ones). Services: sync-services runs when a run Pod's readiness
changes or one goes. Not emulated: probes, restarts, resources, hairpin
DNAT to a pod's own Service, volumes other than those above.
"""
import importlib
import ipaddress
import json
import os
import posixpath
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
podmod = importlib.import_module("playground-pod")

POOL = ipaddress.ip_network("10.244.3.0/24")
NODE_IP = "10.244.0.1"
SVC_IP = "10.96.0.1"
DNS_IP = "10.96.0.10"
IPKEY = "playground.kbridge.dev/pod-ip"
NSKEY = "playground.kbridge.dev/netns"
STARTKEY = "playground.kbridge.dev/starting"
NOTRUNKEY = "playground.kbridge.dev/not-run"
SIDECAR = "kbridge-sidecar"
REGISTERED = re.compile(r"\bregistered \S+ \(\S+\) with the manager")
# mounts a container's /run is built from (its tmpfs, then each volume)
SETUP = r'''
h=$1 m=$2 ro=$3; shift 3
hostname "$h" || exit 1
mount -t tmpfs -o mode=755,size=8m kbridge-pod "$m" || exit 1
while [ "$1" != -- ]; do
	mkdir -p "$m/$2" && mount --bind "$1" "$m/$2" || exit 1
	[ "$3" = 1 ] && { mount -o remount,bind,ro "$m/$2" || exit 1; }
	shift 3
done
shift
mount -n --move "$m" /run || exit 1
if [ "$ro" = 1 ]; then
	while read -r _ _ _ _ p _; do case $p in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run/*) ;;
	*) mount -n -o bind,remount,ro "$p" 2>/dev/null || echo "run: $p stays writable" >&2 ;; esac
	done </proc/self/mountinfo
fi
exec "$@"
'''


def warn(msg):
    sys.stderr.write("follow-deployments: %s\n" % msg)
    sys.stderr.flush()


def run(*argv, check=True, timeout=20):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv[:4]), r.stderr.strip()))
    return r.stdout


def ready(p):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in p.get("status", {}).get("conditions", []))


class RunPod:
    def __init__(self, n, ip, netns, d):
        self.n, self.ip, self.netns, self.dir = n, ip, netns, d
        self.ns = self.name = self.uid = None
        self.procs = {}
        self.ports = []
        self.sidecars = []
        self.starting = True
        self.notrun = None
        self.netns_made = False
        self.api_ready = False


class Runner:
    def __init__(self, cmd, kubectl):
        self.cmd, self.kubectl = cmd, kubectl
        self.kbpg = os.environ["PG_KB_PG"]
        self.state = os.environ["PG_STATE"]
        self.kbbin = os.environ["KB_BIN"]
        self.repo = os.environ["PG_REPO"]
        self.node = self.kbpg + "-node"
        self.dir = os.path.join(self.state, "runpods")
        os.makedirs(os.path.join(self.dir, "gone"), exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.pidfile = os.path.join(self.dir, "follower-%d.pid" % os.getpid())
        with open(self.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
        self.pods = {}
        self.sig = None

    # --- creation ---
    def claim(self):
        for host in list(POOL.hosts())[1:]:
            n = int(str(host).rsplit(".", 1)[1])
            d = os.path.join(self.dir, "p%d" % n)
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                continue
            return RunPod(n, str(host), "%s-p%d" % (self.kbpg, n), d)
        return None

    def create(self, pod):
        rp = self.claim()
        if rp is None:
            warn("no address left in %s: pod not created" % POOL)
            return
        ann = pod["metadata"].setdefault("annotations", {})
        ann.update({IPKEY: rp.ip, NSKEY: rp.netns, STARTKEY: "containers not listening yet"})
        out = self.kubectl(self.cmd, "create", "-o", "json", "-f", "-", stdin=json.dumps(pod))
        if out is None:
            shutil.rmtree(rp.dir, ignore_errors=True)
            return
        p = json.loads(out)
        rp.ns, rp.name, rp.uid = p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"]["uid"]
        with open(os.path.join(rp.dir, "pod"), "w") as f:
            f.write("%s %s %s\n" % (rp.ns, rp.name, rp.uid))
        self.pods[rp.uid] = rp
        try:
            self.start(rp, p)
        except (podmod.Refuse, RuntimeError, subprocess.TimeoutExpired, OSError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            warn("pod %s/%s: not run: %s" % (rp.ns, rp.name, msg))
            self.teardown(rp)
            rp.notrun = msg
            self.kubectl(self.cmd, "-n", rp.ns, "annotate", "--overwrite", "pod", rp.name,
                         "%s=%s" % (NOTRUNKEY, msg[:200]))

    def plan(self, pod):
        """Every container's command line and mounts, or Refuse before
        anything is made."""
        spec = pod["spec"]
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        out = []
        for kind, cs in (("init", spec.get("initContainers", [])), ("app", spec.get("containers", []))):
            for c in cs:
                if c.get("restartPolicy") == "Always":
                    raise podmod.Refuse("init container %s: sidecar init containers are not run here" % c["name"])
                argv, uid, gid = podmod.command_line(pod, c, self.kbbin, SVC_IP, self.cur.ip, NODE_IP)
                mounts = []
                for m in c.get("volumeMounts", []):
                    if m.get("subPath") or m.get("subPathExpr"):
                        raise podmod.Refuse("container %s: subPath mounts are not supported here" % c["name"])
                    path = posixpath.normpath(m["mountPath"])
                    rel = None
                    for top in ("/run/", "/var/run/"):
                        if path.startswith(top) and ".." not in path.split("/"):
                            rel = path[len(top):]
                    if not rel:
                        raise podmod.Refuse("container %s: mountPath %s: only under /run or /var/run here"
                                            % (c["name"], m["mountPath"]))
                    if m["name"] not in vols:
                        raise podmod.Refuse("container %s: no volume %s" % (c["name"], m["name"]))
                    mounts.append((m["name"], rel, bool(m.get("readOnly"))))
                ro = bool(c.get("securityContext", {}).get("readOnlyRootFilesystem"))
                ports = [(p["containerPort"]) for p in c.get("ports", []) if p.get("protocol", "TCP") == "TCP"]
                out.append((kind, c["name"], argv, mounts, ro, ports))
        for name in {m[0] for x in out for m in x[3]}:
            v = vols[name]
            if not any(k in v for k in ("projected", "emptyDir", "configMap", "downwardAPI")):
                raise podmod.Refuse("volume %s: only projected, configMap, downwardAPI and emptyDir "
                                    "volumes are supported here" % name)
        return out, vols

    def start(self, rp, pod):
        self.cur = rp
        plan, vols = self.plan(pod)
        self.make_volumes(rp, pod, {m[0] for x in plan for m in x[3]}, vols)
        self.make_netns(rp, pod["metadata"]["namespace"])
        # the sandbox is up: a kubelet reports its address now (kwok's
        # pod-ready stage, once the starting annotation goes, the rest)
        st = {"status": {"phase": "Pending", "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}],
                         "podIP": rp.ip, "podIPs": [{"ip": rp.ip}]}}
        if self.kubectl(self.cmd, "-n", rp.ns, "patch", "pod", rp.name, "--subresource=status",
                        "--type=merge", "-p", json.dumps(st)) is None:
            raise RuntimeError("cannot write the pod's status")
        for kind, name, argv, mounts, ro, ports in plan:
            p = self.spawn(rp, name, argv, mounts, ro)
            if kind == "init":
                rp.procs[name] = p  # (killed with the pod if the follower stops now)
                try:
                    rc = p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.kill([p])
                    raise RuntimeError("init container %s: still running after 60 s" % name)
                del rp.procs[name]
                if rc != 0:
                    raise RuntimeError("init container %s exited %d (log %s)" % (name, rc, self.log(rp, name)))
            else:
                rp.procs[name] = p
                rp.ports += ports
                if name == SIDECAR:
                    rp.sidecars.append(name)

    def log(self, rp, name):
        return os.path.join(rp.dir, name + ".log")

    def spawn(self, rp, name, argv, mounts, ro):
        mnt = os.path.join(rp.dir, "mnt-" + name)
        os.makedirs(mnt, exist_ok=True)
        margs = []
        for vol, rel, vro in mounts:
            margs += [os.path.join(rp.dir, "vol", vol), rel, "1" if vro else "0"]
        full = ["ip", "netns", "exec", rp.netns, "unshare", "--mount", "--uts", "--propagation", "private",
                "--", "sh", "-c", SETUP, "run", rp.name[:63], mnt, "1" if ro else "0"] + margs + ["--"] + argv
        with open(self.log(rp, name), "ab") as log:
            p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        with open(os.path.join(rp.dir, name + ".pid"), "w") as f:
            f.write("%d\n" % p.pid)
        return p

    def make_volumes(self, rp, pod, names, vols):
        meta = pod["metadata"]
        sa = pod["spec"].get("serviceAccountName", "default")
        fields = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
                  "metadata.uid": meta["uid"]}
        for name in names:
            v = vols[name]
            d = os.path.join(rp.dir, "vol", name)
            os.makedirs(d)
            if "emptyDir" in v:
                os.chmod(d, 0o777)
                continue
            os.chmod(d, 0o755)
            files = {}
            srcs = v["projected"].get("sources", []) if "projected" in v else [v]
            for s in srcs:
                if "serviceAccountToken" in s:
                    t = s["serviceAccountToken"]
                    secs = max(int(t.get("expirationSeconds", 3600)), 600)
                    args = ["-n", meta["namespace"], "create", "token", sa, "--duration", "%ds" % secs,
                            "--bound-object-kind", "Pod", "--bound-object-name", meta["name"],
                            "--bound-object-uid", meta["uid"]]
                    if t.get("audience"):
                        args += ["--audience", t["audience"]]
                    tok = self.kubectl(self.cmd, *args)
                    if tok is None:
                        raise RuntimeError("volume %s: no token for serviceaccount %s" % (name, sa))
                    files[t["path"]] = tok.strip()
                elif "configMap" in s:
                    cm = s["configMap"]
                    out = self.kubectl(self.cmd, "-n", meta["namespace"], "get", "configmap", cm["name"], "-o", "json")
                    if out is None:
                        raise RuntimeError("volume %s: no configmap %s" % (name, cm["name"]))
                    data = json.loads(out).get("data", {})
                    for it in cm.get("items") or [{"key": k, "path": k} for k in data]:
                        files[it["path"]] = data.get(it["key"], "")
                elif "downwardAPI" in s:
                    for it in s["downwardAPI"].get("items", []):
                        fp = it.get("fieldRef", {}).get("fieldPath")
                        if fp not in fields:
                            raise podmod.Refuse("volume %s: downwardAPI %s is not supported here" % (name, fp))
                        files[it["path"]] = fields[fp]
                else:
                    raise podmod.Refuse("volume %s: a projected source other than serviceAccountToken, "
                                        "configMap, downwardAPI" % name)
            for path, data in files.items():
                rel = posixpath.normpath(path)
                if rel.startswith("/") or rel.split("/")[0] == "..":
                    raise podmod.Refuse("volume %s: bad path %r" % (name, path))
                f = os.path.join(d, rel)
                os.makedirs(os.path.dirname(f), mode=0o755, exist_ok=True)
                with open(f, "w") as o:
                    o.write(data)
                os.chmod(f, 0o644)

    def make_netns(self, rp, kns):
        n, P = rp.n, rp.netns
        with open(os.path.join(rp.dir, "netns"), "w") as f:
            f.write(P + "\n")
        run("ip", "netns", "add", P)
        rp.netns_made = True
        veth = "v-p%d" % n
        run("ip", "-n", P, "link", "set", "lo", "up")
        run("ip", "-n", self.node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", P)
        run("ip", "-n", self.node, "link", "set", veth, "master", "cbr0", "up")
        run("ip", "-n", self.node, "link", "set", veth, "type", "bridge_slave", "hairpin", "on")
        run("ip", "-n", P, "addr", "add", rp.ip + "/32", "dev", "eth0")
        run("ip", "-n", P, "link", "set", "eth0", "up")
        run("ip", "-n", P, "route", "add", NODE_IP, "dev", "eth0", "scope", "link")
        run("ip", "-n", P, "route", "add", "10.244.0.0/16", "via", NODE_IP, "dev", "eth0")
        run("ip", "-n", P, "route", "add", "10.96.0.0/16", "via", NODE_IP, "dev", "eth0")
        # no redirects; unprivileged ports from 0, as containerd sets
        run("ip", "netns", "exec", P, "sysctl", "-qw", "net.ipv4.conf.all.accept_redirects=0",
            "net.ipv4.conf.eth0.accept_redirects=0", "net.ipv4.ip_unprivileged_port_start=0")
        os.makedirs("/etc/netns/" + P, exist_ok=True)
        with open("/etc/netns/%s/resolv.conf" % P, "w") as f:
            f.write("nameserver %s\nsearch %s.svc.cluster.local svc.cluster.local cluster.local\n"
                    "options ndots:5\n" % (DNS_IP, kns))

    # --- following ---
    def check(self, ns, pods):
        live = {p["metadata"]["uid"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}
        for uid, rp in list(self.pods.items()):
            if rp.ns != ns:
                continue
            if uid not in live:
                self.stop(rp)
                continue
            rp.api_ready = ready(live[uid])
            if rp.notrun:
                continue
            dead = [(c, p.returncode) for c, p in rp.procs.items() if p.poll() is not None]
            if dead:
                warn("pod %s/%s: container %s exited (%d; log %s): pod deleted (nothing restarts it here)"
                     % (rp.ns, rp.name, dead[0][0], dead[0][1], self.log(rp, dead[0][0])))
                self.kubectl(self.cmd, "-n", rp.ns, "delete", "pod", rp.name, "--wait=false", "--ignore-not-found")
                self.stop(rp)
            elif rp.starting and self.listening(rp):
                if self.kubectl(self.cmd, "-n", rp.ns, "annotate", "pod", rp.name, STARTKEY + "-") is not None:
                    rp.starting = False

    def listening(self, rp):
        try:
            out = run("ip", "netns", "exec", rp.netns, "ss", "-Hltn")
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        have = {int(l.split()[3].rsplit(":", 1)[1]) for l in out.splitlines() if len(l.split()) > 3}
        if any(p not in have for p in rp.ports):
            return False
        for c in rp.sidecars:
            try:
                if not REGISTERED.search(open(self.log(rp, c), errors="replace").read()):
                    return False
            except OSError:
                return False
        return True

    def sync_services(self, namespaces):
        sig = sorted((rp.uid, rp.api_ready) for rp in self.pods.values())
        if sig == self.sig:
            return
        self.sig = sig
        env = dict(os.environ, KB_PG=self.kbpg, KB_PG_STATE=self.state)
        r = subprocess.run([os.path.join(self.repo, "scripts/playground"), "sync-services"], env=env,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            warn("sync-services failed: %s" % r.stderr.strip()[-300:])
            self.sig = None

    # --- stopping ---
    def kill(self, procs):
        procs = [p for p in procs if p.poll() is None]
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 1.5
        while time.monotonic() < end and any(p.poll() is None for p in procs):
            time.sleep(0.05)
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()

    def teardown(self, rp):
        self.kill(list(rp.procs.values()))
        rp.procs = {}
        if rp.netns_made:
            # anything left in the namespace, by PID
            try:
                left = [int(x) for x in run("ip", "netns", "pids", rp.netns, check=False).split()]
            except subprocess.TimeoutExpired:
                left = []
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            run("ip", "netns", "del", rp.netns, check=False)
            rp.netns_made = False
        shutil.rmtree("/etc/netns/" + rp.netns, ignore_errors=True)

    def stop(self, rp):
        self.teardown(rp)
        self.pods.pop(rp.uid, None)
        # the logs stay (gone/NS.NAME); the address is free again
        dest = os.path.join(self.dir, "gone", "%s.%s" % (rp.ns, rp.name))
        shutil.rmtree(dest, ignore_errors=True)
        for f in os.listdir(rp.dir):
            if f.startswith("mnt-") or f == "vol":
                shutil.rmtree(os.path.join(rp.dir, f), ignore_errors=True)
        os.rename(rp.dir, dest)

    def stop_all(self):
        # no process will serve them: the Pods go (a follower started
        # later makes and runs new ones)
        byns = {}
        for rp in self.pods.values():
            byns.setdefault(rp.ns, []).append(rp.name)
        for ns, names in byns.items():
            self.kubectl(self.cmd, "-n", ns, "delete", "pod", *names, "--wait=false", "--ignore-not-found")
        for rp in list(self.pods.values()):
            try:
                self.stop(rp)
            except Exception as e:  # keep going: everything must go
                warn("pod %s/%s: %s" % (rp.ns, rp.name, e))
        try:
            os.unlink(self.pidfile)
        except OSError:
            pass
