#!/usr/bin/env python3
"""scripts/bench team's load client: many kbridge sessions (PROTOCOL.md) with
real TLS client certificates, against a manager on loopback.

  team.py hold DIR ADDR NDAEMONS NSIDECARS     open NDAEMONS daemon sessions
      (profiles DIR/uN.json) and NSIDECARS sidecar sessions (DIR/wN.json,
      workload wN.default), at most 16 handshakes at once (the manager takes
      32 before their hello per address); then DIR/up is written (JSON: how
      many are up, how long it took). Every session answers PINGs. When
      DIR/go-intercepts appears (JSON: {"owners": N, "workloads": M,
      "resume": {"uI wJ": ID}}), owners u0..uN-1 each intercept w0..wM-1
      (header x-dev: uI, so no two overlap), resuming the ids given; then
      DIR/intercepts is written (ok/failed counts, seconds). Ends when
      DIR/stop appears, a session fails, or after --max seconds.
  team.py probe PROFILE ADDR N                 one more daemon session: N PING
      round trips, then N control round trips ("leave" of a workload it does
      not intercept: a 404 result), one at a time; prints JSON with the
      samples' p50/p90/p99/max in ms.
"""
import json
import os
import selectors
import socket
import ssl
import struct
import sys
import tempfile
import time

HELLO, CONTROL, OPEN, ACCEPT, DATA, WINDOW, FIN, RESET, PING, PONG, GOAWAY = range(1, 12)


def frame(ftype, stream, payload=b""):
    return struct.pack(">BBHI", ftype, 0, len(payload), stream) + payload


def context(profile):
    p = json.load(open(profile))
    d = tempfile.mkdtemp()
    files = {}
    for k in ("ca", "cert", "key"):
        files[k] = os.path.join(d, k + ".pem")
        fd = os.open(files[k], os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, p[k].encode())
        os.close(fd)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(files["ca"])
    ctx.load_cert_chain(files["cert"], files["key"])
    for f in files.values():
        os.unlink(f)
    os.rmdir(d)
    return ctx


class Sess:
    def __init__(self, name, ctx, addr, hello):
        self.name = name
        host, port = addr.rsplit(":", 1)
        raw = socket.create_connection((host, int(port)), timeout=10)
        raw.setblocking(False)
        self.s = ctx.wrap_socket(raw, do_handshake_on_connect=False)
        self.state = "hs"
        self.inbuf = bytearray()
        self.out = bytearray(frame(HELLO, 0, json.dumps(hello).encode()))
        self.hello = None
        self.closed = None
        self.last_tx = time.monotonic()
        self.results = {}
        self.on_frame = None

    def fileno(self):
        return self.s.fileno()

    def send(self, b):
        self.out += b

    def io(self):
        """Handshake, write what is queued, read what came; frames to handle()."""
        if self.state == "hs":
            try:
                self.s.do_handshake()
                self.state = "up"
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except (OSError, ssl.SSLError) as e:
                self.closed = "handshake: %s" % e
                return
        while self.out:
            try:
                n = self.s.send(self.out[:262144])
                del self.out[:n]
                self.last_tx = time.monotonic()
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                break
            except (OSError, ssl.SSLError) as e:
                self.closed = "send: %s" % e
                return
        while True:
            try:
                b = self.s.recv(262144)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            except (OSError, ssl.SSLError) as e:
                self.closed = "recv: %s" % e
                return
            if not b:
                self.closed = "closed by the manager"
                return
            self.inbuf += b
        while len(self.inbuf) >= 8:
            t, _, n, sid = struct.unpack(">BBHI", self.inbuf[:8])
            if len(self.inbuf) < 8 + n:
                break
            pl = bytes(self.inbuf[8:8 + n])
            del self.inbuf[:8 + n]
            self.handle(t, sid, pl)

    def handle(self, t, sid, pl):
        if t == PING:
            self.send(frame(PONG, 0, pl))
        elif t == HELLO:
            self.hello = json.loads(pl)
        elif t == GOAWAY:
            self.closed = "goaway: %s" % pl[5:].decode(errors="replace")
        elif t == CONTROL:
            m = json.loads(pl)
            if m.get("type") == "result":
                self.results[m.get("id")] = m
        if self.on_frame:
            self.on_frame(t, sid, pl)


def daemon_hello(name):
    return {"proto": 1, "role": "daemon", "software": "kbbench-team", "namespace": "default",
            "instance": ("%08x" % (hash(name) & 0xffffffff)) + "0" * 24}


def sidecar_hello(wl):
    return {"proto": 1, "role": "sidecar", "software": "kbbench-team", "workload": wl,
            "namespace": "default", "protocol": "http", "env": {"APP": wl}}


def hold(d, addr, ndaemons, nsidecars, max_s):
    t0 = time.monotonic()
    end = t0 + max_s
    sel = selectors.DefaultSelector()
    todo = [("u%d" % i, daemon_hello("u%d" % i)) for i in range(ndaemons)]
    todo += [("w%d" % i, sidecar_hello("w%d" % i)) for i in range(nsidecars)]
    todo.reverse()
    sessions, pending = {}, []
    up_written = icpt_done = False
    icpt = None
    fail = None
    while time.monotonic() < end and not os.path.exists(os.path.join(d, "stop")):
        while todo and len(pending) < 16:
            name, h = todo.pop()
            s = Sess(name, context(os.path.join(d, name + ".json")), addr, h)
            sessions[name] = s
            pending.append(s)
            sel.register(s, selectors.EVENT_READ)
        now = time.monotonic()
        for s in pending + ([] if pending else []):
            s.io()
        for key, _ in sel.select(0.05):
            key.fileobj.io()
        for s in sessions.values():
            if s.out:
                s.io()
            elif s.state == "up" and now - s.last_tx > 2:
                s.send(frame(PING, 0, b"kbteam!!"))
                s.io()
            if s.closed:
                fail = "%s: %s" % (s.name, s.closed)
        if fail:
            break
        pending = [s for s in pending if s.hello is None]
        if not up_written and not todo and not pending:
            up_written = True
            json.dump({"sessions": len(sessions), "seconds": round(time.monotonic() - t0, 2)},
                      open(os.path.join(d, "up.tmp"), "w"))
            os.rename(os.path.join(d, "up.tmp"), os.path.join(d, "up"))
        go = os.path.join(d, "go-intercepts")
        if up_written and icpt is None and os.path.exists(go):
            icpt = start_intercepts(sessions, json.load(open(go)))
        if icpt and not icpt_done:
            next_intercepts(sessions, icpt)
            got = sum(len(sessions[o].results) for o in icpt["owners"])
            if got >= icpt["want"]:
                icpt_done = True
                res = [r for o in icpt["owners"] for r in sessions[o].results.values()]
                bad = [r for r in res if not r.get("ok")]
                json.dump({"ok": len(res) - len(bad), "failed": len(bad),
                           "first_error": bad[0].get("error") if bad else None,
                           "seconds": round(time.monotonic() - icpt["t0"], 2)},
                          open(os.path.join(d, "intercepts.tmp"), "w"))
                os.rename(os.path.join(d, "intercepts.tmp"), os.path.join(d, "intercepts"))
    if fail:
        open(os.path.join(d, "failed"), "w").write(fail + "\n")
        print("team.py hold: " + fail, file=sys.stderr)
        return 1
    return 0


def start_intercepts(sessions, spec):
    """Each owner sends its intercepts one after the other (the next once
    the last is answered), as a daemon does; the owners all at once."""
    owners = ["u%d" % i for i in range(spec["owners"])]
    queue = {}
    for o in owners:
        sessions[o].results = {}
        queue[o] = []
        for j in range(spec["workloads"]):
            req = {"type": "intercept", "id": j + 1, "workload": "w%d" % j,
                   "namespace": "default", "port": 8080,
                   "headers": [{"name": "x-dev", "value": o}]}
            r = spec["resume"].get("%s w%d" % (o, j))
            if r:
                req["resume"] = r
            queue[o].append(req)
    return {"owners": owners, "want": len(owners) * spec["workloads"], "queue": queue,
            "sent": dict((o, 0) for o in owners), "t0": time.monotonic()}


def next_intercepts(sessions, icpt):
    for o in icpt["owners"]:
        s, q = sessions[o], icpt["queue"][o]
        if q and len(s.results) == icpt["sent"][o]:
            s.send(frame(CONTROL, 0, json.dumps(q.pop(0)).encode()))
            icpt["sent"][o] += 1
            s.io()


def pct(v, q):
    v = sorted(v)
    return round(v[min(len(v) - 1, int(q * len(v)))], 3)


def summary(v):
    return {"n": len(v), "p50": pct(v, 0.5), "p90": pct(v, 0.9), "p99": pct(v, 0.99),
            "max": round(max(v), 3)}


def probe(profile, addr, n):
    s = Sess("probe", context(profile), addr, daemon_hello("probe"))
    end = time.monotonic() + 10
    while s.hello is None and not s.closed and time.monotonic() < end:
        s.io()
        time.sleep(0.001)
    if s.hello is None:
        raise SystemExit("team.py probe: no hello (%s)" % s.closed)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    pongs = []
    s.on_frame = lambda t, sid, pl: pongs.append(pl) if t == PONG else None

    def wait(cond):
        lim = time.monotonic() + 5
        while not cond():
            if s.closed or time.monotonic() > lim:
                raise SystemExit("team.py probe: no answer (%s)" % s.closed)
            sel.select(0.5)
            s.io()

    ping, ctl = [], []
    for i in range(n):
        pl = struct.pack(">Q", i)
        t = time.perf_counter()
        s.send(frame(PING, 0, pl))
        s.io()
        wait(lambda: pl in pongs)
        ping.append((time.perf_counter() - t) * 1000)
    for i in range(n):
        req = {"type": "leave", "id": i + 1, "workload": "kbbench-none", "namespace": "default"}
        t = time.perf_counter()
        s.send(frame(CONTROL, 0, json.dumps(req).encode()))
        s.io()
        wait(lambda: (i + 1) in s.results)
        ctl.append((time.perf_counter() - t) * 1000)
        if s.results[i + 1].get("status") != 404:
            raise SystemExit("team.py probe: unexpected result %r" % s.results[i + 1])
    print(json.dumps({"ping_ms": summary(ping), "control_ms": summary(ctl)}))
    return 0


def main(a):
    max_s = 600
    if a[:1] == ["--max"]:
        max_s = float(a[1])
        a = a[2:]
    if len(a) == 5 and a[0] == "hold":
        return hold(a[1], a[2], int(a[3]), int(a[4]), max_s)
    if len(a) == 4 and a[0] == "probe":
        return probe(a[1], a[2], int(a[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
