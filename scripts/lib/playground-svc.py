#!/usr/bin/env python3
"""The playground's service sync plan (scripts/playground sync-services).

What an EndpointSlice controller, kube-proxy and CoreDNS would derive from
the API server's Services, Pods and EndpointSlices, for every Service but
the static playground's (their rules and records are up's own):

  DIR/apply.json     the EndpointSlices to write (a v1 List; empty file if none)
  DIR/delete.txt     "NAMESPACE NAME" of the sync's own slices whose Service is gone
  DIR/services.nft   the nftables table ip playground-services, replaced atomically
  DIR/services.hosts dnsmasq hosts: ClusterIP (or a headless Service's
                     endpoints) NAME.NS.svc.cluster.local

usage: playground-svc.py DIR NODE POD_IP_ANNOTATION STATIC_NS/NAME...
reads DIR/objects.json (kubectl get services,pods,endpointslices -A -o json).

Anything that does not validate (an address outside the pod network, a bad
port or name) is left out with a warning on stderr, so nothing a Service's
author writes reaches the node's rules unchecked.
"""
import ipaddress
import json
import re
import sys

TABLE = "playground-services"
MANAGER = "services.playground.kbridge.dev"
POD_NET = ipaddress.ip_network("10.244.0.0/16")
SVC_NET = ipaddress.ip_network("10.96.0.0/16")
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PROTOS = {"TCP": "tcp", "UDP": "udp"}


def warn(msg):
    sys.stderr.write("sync-services: %s\n" % msg)


def ipv4_in(s, net):
    try:
        a = ipaddress.ip_address(s)
    except (ValueError, TypeError):
        return False
    return a.version == 4 and a in net


def port_ok(p):
    return isinstance(p, int) and 0 < p < 65536


def ready_pod(p, ipkey):
    """The pod's address if it may serve (Running, Ready, not terminating)."""
    meta, st = p["metadata"], p.get("status", {})
    if meta.get("deletionTimestamp") or st.get("phase") != "Running":
        return None
    ip = st.get("podIP") or meta.get("annotations", {}).get(ipkey)
    conds = {c.get("type"): c.get("status") for c in st.get("conditions", [])}
    if conds.get("Ready") != "True" or not ipv4_in(ip, POD_NET):
        return None
    return ip


def target(sp, pod):
    """A Service port's target on a pod: number, or the container port of that name."""
    tp = sp.get("targetPort", sp["port"])
    if isinstance(tp, int):
        return tp
    for c in pod["spec"].get("containers", []):
        for cp in c.get("ports", []):
            if cp.get("name") == tp and cp.get("protocol", "TCP") == sp.get("protocol", "TCP"):
                return cp["containerPort"]
    return None


def want_slices(svc, pods, node, ipkey):
    """The EndpointSlices an EndpointSlice controller would write: one per
    set of resolved ports (named targetPorts may differ between pods)."""
    meta, spec = svc["metadata"], svc["spec"]
    sel = spec["selector"]
    groups = {}
    for p in pods:
        if p["metadata"]["namespace"] != meta["namespace"]:
            continue
        labels = p["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in sel.items()):
            continue
        ip = ready_pod(p, ipkey)
        if ip is None:
            continue
        ports = []
        for sp in spec.get("ports", []):
            t = target(sp, p)
            if port_ok(t):
                ports.append((sp.get("name", ""), t, sp.get("protocol", "TCP")))
        groups.setdefault(tuple(ports), []).append((ip, p))
    if not groups:
        groups[()] = []
    out = []
    for i, key in enumerate(sorted(groups)):
        name = "%s-sync" % meta["name"] + ("-%d" % i if i else "")
        eps = [{"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": p["spec"].get("nodeName", node),
                "targetRef": {"kind": "Pod", "namespace": meta["namespace"],
                              "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}}
               for ip, p in sorted(groups[key], key=lambda e: e[0])]
        out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": name, "namespace": meta["namespace"],
                                 "labels": {"kubernetes.io/service-name": meta["name"],
                                            "endpointslice.kubernetes.io/managed-by": MANAGER},
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Service",
                                                      "name": meta["name"], "uid": meta["uid"],
                                                      "controller": True, "blockOwnerDeletion": True}]},
                    "addressType": "IPv4",
                    "ports": [{"name": n, "port": t, "protocol": pr} for n, t, pr in key],
                    "endpoints": eps})
    return out


def same_slice(a, b):
    key = lambda s: (json.dumps(s.get("ports") or [], sort_keys=True),
                     json.dumps([(e["addresses"], e.get("conditions", {}).get("ready"),
                                  e.get("targetRef", {}).get("uid")) for e in s.get("endpoints") or []]),
                     s["metadata"].get("labels", {}).get("kubernetes.io/service-name"))
    return key(a) == key(b)


def backends(sp, slices):
    """(address, port) pairs serving a Service port, from its slices."""
    out = set()
    for s in slices:
        if s.get("addressType") != "IPv4":
            continue
        for p in s.get("ports") or []:
            if p.get("name", "") != sp.get("name", "") or p.get("protocol", "TCP") != sp.get("protocol", "TCP"):
                continue
            if not port_ok(p.get("port")):
                continue
            for e in s.get("endpoints") or []:
                if e.get("conditions", {}).get("ready") is False:
                    continue
                for a in e.get("addresses", []):
                    if ipv4_in(a, POD_NET):
                        out.add((a, p["port"]))
                    else:
                        warn("%s: endpoint %s is not a pod address: left out" % (s["metadata"]["name"], a))
    return sorted(out)


def nft_rules(lines):
    yield "add table ip %s" % TABLE
    yield "delete table ip %s" % TABLE
    yield "table ip %s {" % TABLE
    yield " chain svc {"
    yield from lines
    yield " }"
    yield " chain prerouting {"
    yield "  type nat hook prerouting priority dstnat;"
    yield '  iifname "cbr0" jump svc'
    yield " }"
    yield " chain output {"
    yield "  type nat hook output priority -100;"
    yield "  jump svc"
    yield " }"
    # node's own packets to a ClusterIP no rule took (svc_node_route sends
    # them to cbr0): refused at once, not left to ARP
    yield " chain output-filter {"
    yield "  type filter hook output priority filter;"
    yield '  oifname "cbr0" ip daddr %s meta l4proto tcp reject with tcp reset' % SVC_NET
    yield '  oifname "cbr0" ip daddr %s reject' % SVC_NET
    yield " }"
    yield "}"


def main():
    d, node, ipkey = sys.argv[1:4]
    static = set(sys.argv[4:])
    items = json.load(open(d + "/objects.json"))["items"]
    svcs = [o for o in items if o["kind"] == "Service"]
    pods = [o for o in items if o["kind"] == "Pod"]
    slices = [o for o in items if o["kind"] == "EndpointSlice"]
    by_svc = {}
    for s in slices:
        n = s["metadata"].get("labels", {}).get("kubernetes.io/service-name")
        if n:
            by_svc.setdefault((s["metadata"]["namespace"], n), []).append(s)
    have = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in slices}

    apply, keep, rules, hosts, served = [], set(), [], [], 0
    for svc in sorted(svcs, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])):
        meta, spec = svc["metadata"], svc["spec"]
        kns, name = meta["namespace"], meta["name"]
        if "%s/%s" % (kns, name) in static or spec.get("type") == "ExternalName":
            continue
        if not (LABEL.match(kns) and LABEL.match(name)):
            warn("%s/%s: not a DNS label: skipped" % (kns, name))
            continue
        mine = by_svc.get((kns, name), [])
        if spec.get("selector"):
            # ours replace what we wrote before; anyone else's slices
            # count too, as for kube-proxy
            want = want_slices(svc, pods, node, ipkey)
            mine = want + [s for s in mine if s["metadata"].get("labels", {}).get(
                "endpointslice.kubernetes.io/managed-by") != MANAGER]
            for s in want:
                k = (kns, s["metadata"]["name"])
                keep.add(k)
                if k not in have or not same_slice(s, have[k]):
                    apply.append(s)
        served += 1
        fqdn = "%s.%s.svc.cluster.local" % (name, kns)
        cip = spec.get("clusterIP")
        if cip == "None":
            for a in sorted({a for sp in spec.get("ports", [{}]) for a, _ in backends(sp, mine)}):
                hosts.append("%s %s" % (a, fqdn))
            continue
        if not ipv4_in(cip, SVC_NET):
            warn("%s/%s: clusterIP %s is not in %s: skipped" % (kns, name, cip, SVC_NET))
            continue
        hosts.append("%s %s" % (cip, fqdn))
        for sp in spec.get("ports", []):
            proto = PROTOS.get(sp.get("protocol", "TCP"))
            if proto is None or not port_ok(sp.get("port")):
                continue
            bs = backends(sp, mine)
            rules.append("  # %s/%s port %d" % (kns, name, sp["port"]))
            for i, (a, p) in enumerate(bs):
                # kube-proxy's choice: each rule takes 1/(the endpoints left)
                pick = " numgen random mod %d == 0" % (len(bs) - i) if i < len(bs) - 1 else ""
                rules.append("  ip daddr %s %s dport %d%s dnat to %s:%d" % (cip, proto, sp["port"], pick, a, p))

    delete = sorted(k for k, s in have.items()
                    if s["metadata"].get("labels", {}).get("endpointslice.kubernetes.io/managed-by") == MANAGER
                    and k not in keep)
    with open(d + "/apply.json", "w") as f:
        if apply:
            json.dump({"apiVersion": "v1", "kind": "List", "items": apply}, f)
    with open(d + "/delete.txt", "w") as f:
        f.writelines("%s %s\n" % k for k in delete)
    with open(d + "/services.nft", "w") as f:
        f.writelines(l + "\n" for l in nft_rules(rules))
    with open(d + "/services.hosts", "w") as f:
        f.writelines(h + "\n" for h in hosts)
    print("%d services, %d slices written, %d deleted" % (served, len(apply), len(delete)))


if __name__ == "__main__":
    main()
