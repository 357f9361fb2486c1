#!/usr/bin/env python3
"""How the playground runs a Pod's container, as a kubelet and a container
runtime would (shared by scripts/playground run-pod and follow-deployments
--run; neither runs an image).

Images: the kbridge image (ghcr.io/kbridge/kbridge-agent:TAG, what
`kbridge install` and the webhook's --sidecar-image use, or the playground's
kbridge/agent:TAG) runs $KB_BIN's kbridge-agent or kbridge-sidecar, as its
command says; HELLO (playground.kbridge.dev/hello[:TAG]) runs
playground-hello.py, an HTTP server on each of its containerPorts answering
with the pod's name; any other image is refused (Refuse: one line).

A container gets: env (value, fieldRef; HOSTNAME and the
KUBERNETES_SERVICE_* a kubelet sets), command and args ($(VAR) expanded),
the user, group and supplemental groups of its securityContext (setpriv),
its capabilities (a runtime's default set for root, minus drop, plus add;
a non-root process has none effective, as with runc), no-new-privs when
allowPrivilegeEscalation is false. Not emulated: probes, resources,
lifecycle hooks, image entrypoints other than these.

usage (run-pod): playground-pod.py run-pod DIR KB_BIN SVC_IP POD_IP HOST_IP
writes DIR/run (NUL-separated argv) for DIR/pod.json.created's one container.
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KB_IMAGE = re.compile(r"^(ghcr\.io/kbridge/kbridge-agent|kbridge/agent)(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")
HELLO_IMAGE = re.compile(r"^playground\.kbridge\.dev/hello(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")
KB_PROGS = {"kbridge-agent", "kbridge-sidecar"}
# the images' USER (agent/Containerfile: 65532; hello: nobody)
IMAGE_USER = {"kbridge": 65532, "hello": 65534}
# what containerd/runc give a container by default
DEFAULT_CAPS = {"chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
                "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write"}
CAP_NAME = re.compile(r"^(CAP_)?[A-Z_]{2,32}$")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Refuse(Exception):
    """The container cannot run here (the message says why, one line)."""


def image_kind(image):
    if KB_IMAGE.match(image or ""):
        return "kbridge"
    if HELLO_IMAGE.match(image or ""):
        return "hello"
    return None


def env_of(pod, c, svcip, podip, hostip):
    spec, meta = pod["spec"], pod["metadata"]
    fields = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
              "metadata.uid": meta["uid"], "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
              "status.podIP": podip, "status.hostIP": hostip}
    env = {"PATH": PATH, "HOSTNAME": meta["name"], "HOME": "/",
           "KUBERNETES_SERVICE_HOST": svcip, "KUBERNETES_SERVICE_PORT": "443",
           "KUBERNETES_SERVICE_PORT_HTTPS": "443"}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
        elif "fieldRef" in e.get("valueFrom", {}):
            p = e["valueFrom"]["fieldRef"]["fieldPath"]
            if p not in fields:
                raise Refuse("env %s: fieldRef %s is not supported here" % (e["name"], p))
            env[e["name"]] = fields[p]
        else:
            raise Refuse("env %s: only value and fieldRef are supported here" % e["name"])
    return env


def expand(s, env):
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), s)


def argv_of(c, kbbin, env):
    """The program and its arguments for the container's image."""
    kind = image_kind(c.get("image"))
    args = [expand(a, env) for a in c.get("args", [])]
    if kind == "kbridge":
        # the image's ENTRYPOINT and CMD (agent/Containerfile)
        if not c.get("command") and not args:
            args = ["--help"]
        cmd = [expand(a, env) for a in c.get("command") or ["kbridge-agent"]]
        prog = cmd[0][len("/usr/local/bin/"):] if cmd[0].startswith("/usr/local/bin/") else cmd[0]
        if prog not in KB_PROGS:
            raise Refuse("command %r: the kbridge image has only %s" % (cmd[0], ", ".join(sorted(KB_PROGS))))
        return [os.path.join(kbbin, prog)] + cmd[1:] + args
    if kind == "hello":
        if c.get("command") or args:
            raise Refuse("image %s takes no command or args here" % c["image"])
        ports = [str(p["containerPort"]) for p in c.get("ports", []) if p.get("protocol", "TCP") == "TCP"]
        if not ports:
            raise Refuse("image %s needs a TCP containerPort to serve" % c["image"])
        return ["/usr/bin/python3", os.path.join(HERE, "playground-hello.py")] + ports
    raise Refuse("image %r is not one the playground runs (the kbridge image, or "
                 "playground.kbridge.dev/hello)" % c.get("image"))


def caps_of(csc):
    cap = csc.get("capabilities", {})
    norm = lambda v: {x.lower()[4:] if x.upper().startswith("CAP_") else x.lower() for x in v}
    for x in cap.get("add", []) + cap.get("drop", []):
        if not (x == "ALL" or CAP_NAME.match(x.upper())):
            raise Refuse("capability %r: not a capability name" % x)
    drop, add = norm(cap.get("drop", [])), norm(cap.get("add", []))
    have = set() if "all" in drop else DEFAULT_CAPS - drop
    if "all" in add:
        return None
    return sorted(have | add)


def privileges(pod, c, kind):
    """setpriv's arguments: user, group, groups, capabilities, no-new-privs."""
    psc, csc = pod["spec"].get("securityContext", {}), c.get("securityContext", {})
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    if uid is None:
        uid = IMAGE_USER.get(kind)
    if uid is None:
        raise Refuse("no runAsUser: the image's user is not known here")
    gid = csc.get("runAsGroup", psc.get("runAsGroup", uid))
    if not (isinstance(uid, int) and isinstance(gid, int) and 0 <= uid < 2**31 and 0 <= gid < 2**31):
        raise Refuse("runAsUser/runAsGroup: not a number")
    if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:
        raise Refuse("runAsNonRoot with runAsUser 0: a kubelet refuses to start it")
    groups = [g for g in psc.get("supplementalGroups", []) + ([psc["fsGroup"]] if "fsGroup" in psc else [])
              if isinstance(g, int) and 0 <= g < 2**31]
    priv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid]
    priv += ["--groups=" + ",".join(str(g) for g in groups)] if groups else ["--clear-groups"]
    if csc.get("allowPrivilegeEscalation") is False:
        priv.append("--no-new-privs")
    caps = caps_of(csc)
    if caps is not None:
        bound = ",".join(["-all"] + ["+" + x for x in caps])
        priv += ["--inh-caps=-all", "--bounding-set=" + bound]
    return priv, uid, gid


def command_line(pod, c, kbbin, svcip, podip, hostip, extra_env=None):
    """setpriv ... env -i VAR=... PROGRAM ARGS: the container's process, to
    run as root in its network (and mount) namespace."""
    kind = image_kind(c.get("image"))
    if kind is None:
        argv_of(c, kbbin, {})
    env = env_of(pod, c, svcip, podip, hostip)
    env.update(extra_env or {})
    argv = argv_of(c, kbbin, env)
    priv, uid, gid = privileges(pod, c, kind)
    return priv + ["env", "-i"] + ["%s=%s" % kv for kv in env.items()] + argv, uid, gid


# every mount read-only, but the kernel's (/proc, /sys, /dev), which a
# runtime mounts apart, and those under /run the harness made for volumes
RO_SCRIPT = ('while read -r _ _ _ _ m _; do case $m in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) ;; '
             '*) mount -o bind,remount,ro "$m" 2>/dev/null || echo "run-pod: $m stays writable" >&2 ;; esac; '
             'done </proc/self/mountinfo; exec "$@"')


def run_pod(d, kbbin, svcip, podip, hostip):
    """run-pod's one container (the manager's pod), as before this module."""
    pod = json.load(open(d + "/pod.json.created"))
    spec = pod["spec"]
    if len(spec["containers"]) != 1 or spec.get("initContainers"):
        raise Refuse("only pods with one container run here")
    c = spec["containers"][0]
    cmd = c.get("command") or ["kbridge-agent"]
    if cmd[0] not in ("kbridge-agent", "/usr/local/bin/kbridge-agent"):
        raise Refuse("command %r: the playground runs only the kbridge-agent image" % cmd[0])
    # (run-pod's pods have no mounts here: the harness hands the
    # ServiceAccount directory over in KB_SERVICEACCOUNT_DIR)
    c = dict(c, image="kbridge/agent")
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    if csc.get("runAsUser", psc.get("runAsUser")) is None:
        raise Refuse("no runAsUser: the image's user is not known here")
    out, _, _ = command_line(pod, c, kbbin, svcip, podip, hostip,
                             {"KB_SERVICEACCOUNT_DIR": d + "/serviceaccount"})
    if csc.get("readOnlyRootFilesystem"):
        out = ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", RO_SCRIPT,
               "run-pod"] + out
    open(d + "/run", "w").write("\0".join(out) + "\0")


def main():
    if len(sys.argv) != 7 or sys.argv[1] != "run-pod":
        sys.stderr.write("usage: playground-pod.py run-pod DIR KB_BIN SVC_IP POD_IP HOST_IP\n")
        sys.exit(2)
    try:
        run_pod(*sys.argv[2:])
    except Refuse as e:
        sys.stderr.write("playground: run-pod: %s\n" % e)
        sys.exit(1)


if __name__ == "__main__":
    main()
