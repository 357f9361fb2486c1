#!/usr/bin/env python3
"""A raw kbridge protocol peer for the limits test: speaks PROTOCOL.md with a
daemon's profile, but sends what a hostile or broken daemon would.

  kbraw.py PROFILE streams N ADDR:PORT EARLY   N DIAL streams, each followed by
                                               EARLY bytes of early data (sent
                                               whatever the manager announced)
  kbraw.py PROFILE resolve N NAME              N resolve requests at once
  kbraw.py PROFILE dial ADDR:PORT              one DIAL stream
  kbraw.py PROFILE control JSON                one control request (its "id"
                                               is 1), as a daemon would not
                                               send it; its result is "result"
  kbraw.py PROFILE goaway ADDR:PORT            one DIAL stream, kept open; once
                                               accepted, GOAWAY; on the
                                               manager's GOAWAY a DIAL on a new
                                               stream and a second session of
                                               the same identity, which says
                                               GOAWAY (no stream open) once the
                                               first has closed. Times are
                                               seconds after our GOAWAY

Waits (answering PINGs) until every stream or request is answered, at most
--wait seconds, then prints one JSON object: what came back, and the
manager's hello. Exit 0 once the session was set up and stayed up, else 1.

  --hold DIR   (resolve) keep N requests in flight, sending one for each
               answer, from the first answer (then DIR/started is written)
               until DIR/stop exists (at most HOLD_MAX_S seconds and
               HOLD_MAX_SENT requests); the result then has the flood's
               wall-clock start and end and how many answers came in each
               tenth of a second.
"""
import json
import os
import select
import socket
import ssl
import struct
import sys
import tempfile
import time

HOLD_MAX_S = 30
HOLD_MAX_SENT = 600000

HELLO, CONTROL, OPEN, ACCEPT, DATA, WINDOW, FIN, RESET, PING, PONG, GOAWAY = range(1, 12)


def frame(ftype, stream, payload=b""):
    return struct.pack(">BBHI", ftype, 0, len(payload), stream) + payload


def open_dial(stream, addr, port):
    a = socket.inet_aton(addr)
    return frame(OPEN, stream, struct.pack(">BBH", 1, 4, port) + a)


class Peer:
    def __init__(self, profile, wait):
        p = json.load(open(profile))
        self.wait = wait
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
        host, port = p["manager"].rsplit(":", 1)
        raw = socket.create_connection((host, int(port)), timeout=10)
        self.s = ctx.wrap_socket(raw)
        self.s.setblocking(False)
        self.inbuf = bytearray()
        self.out = bytearray()
        self.hello = None
        self.goaway = None
        self.closed = False
        self.last_tx = time.monotonic()
        self.on_frame = lambda t, sid, pl: None

    def send(self, b):
        self.out += b

    def frames(self):
        while len(self.inbuf) >= 8:
            t, _, n, sid = struct.unpack(">BBHI", self.inbuf[:8])
            if len(self.inbuf) < 8 + n:
                return
            pl = bytes(self.inbuf[8:8 + n])
            del self.inbuf[:8 + n]
            yield t, sid, pl

    def pump(self, timeout=0.1):
        """One round of I/O; frames received go to on_frame."""
        if time.monotonic() - self.last_tx > 0.5:
            self.send(frame(PING, 0, b"kbraw!!!"))
        r, w, _ = select.select([self.s], [self.s] if self.out else [], [], timeout)
        if self.out and (w or r):
            try:
                n = self.s.send(self.out[:262144])
                del self.out[:n]
                self.last_tx = time.monotonic()
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        while True:
            try:
                b = self.s.recv(262144)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (ConnectionError, ssl.SSLError):
                self.closed = True
                break
            if not b:
                self.closed = True
                break
            self.inbuf += b
        for t, sid, pl in self.frames():
            if t == PING:
                self.send(frame(PONG, 0, pl))
            elif t == HELLO:
                self.hello = json.loads(pl)
            elif t == GOAWAY:
                self.goaway = pl[5:].decode(errors="replace")
            self.on_frame(t, sid, pl)

    def start(self):
        self.send(frame(HELLO, 0, json.dumps({"proto": 1, "role": "daemon", "software": "kbraw",
                                               "namespace": "default"}).encode()))
        end = time.monotonic() + 10
        while self.hello is None and not self.closed and time.monotonic() < end:
            self.pump()
        if self.hello is None:
            raise SystemExit("kbraw: no hello from the manager (goaway: %s)" % self.goaway)

    def run(self, done):
        end = time.monotonic() + self.wait
        while not self.closed and time.monotonic() < end and (self.out or not done()):
            self.pump()


def goaway(peer, profile, dst):
    addr, port = dst.rsplit(":", 1)
    res = {"accepted": False, "resets": {}}

    def on_frame(t, sid, pl):
        if t == ACCEPT and sid == 1:
            res["accepted"] = True
        elif t == RESET:
            res["resets"][str(sid)] = [pl[0], pl[1:].decode(errors="replace")]
    peer.on_frame = on_frame
    peer.send(open_dial(1, addr, int(port)))
    peer.run(lambda: res["accepted"] or res["resets"])
    if not res["accepted"]:
        return res
    peer.send(frame(GOAWAY, 0, struct.pack(">IB", 0, 0) + b"kbraw leaving"))
    while peer.out and not peer.closed:
        peer.pump(0.01)
    t0 = time.monotonic()
    second = None
    end = t0 + peer.wait
    while not peer.closed and time.monotonic() < end:
        peer.pump(0.01)
        if peer.goaway is not None and "t_goaway" not in res:
            res["t_goaway"] = time.monotonic() - t0
            res["goaway"] = peer.goaway
            peer.send(open_dial(3, addr, int(port)))
            second = Peer(profile, peer.wait)
            second.send(frame(HELLO, 0, json.dumps({"proto": 1, "role": "daemon",
                                                     "software": "kbraw",
                                                     "namespace": "default"}).encode()))
        if second is not None:
            second.pump(0.01)
            if second.hello is not None and "t_second_hello" not in res:
                res["t_second_hello"] = time.monotonic() - t0
    res["closed"] = peer.closed
    res["t_closed"] = time.monotonic() - t0
    if second is None:
        return res
    end = time.monotonic() + 5
    while second.hello is None and not second.closed and time.monotonic() < end:
        second.pump(0.05)
    res["second_hello"] = second.hello is not None
    if "t_second_hello" not in res and second.hello is not None:
        res["t_second_hello"] = time.monotonic() - t0
    res["second_refused"] = second.goaway
    if second.hello is None:
        return res
    second.send(frame(GOAWAY, 0, struct.pack(">IB", 0, 0) + b"kbraw leaving"))
    while second.out and not second.closed:
        second.pump(0.01)
    t1 = time.monotonic()
    end = t1 + 5
    while not second.closed and time.monotonic() < end:
        second.pump(0.01)
    res["second_goaway"] = second.goaway
    res["second_closed"] = second.closed
    res["second_t_closed"] = time.monotonic() - t1
    return res


def main():
    args = sys.argv[1:]
    wait, hold = 30.0, None
    while args[:1] in (["--wait"], ["--hold"]):
        if args[0] == "--wait":
            wait = float(args[1])
        else:
            hold = args[1]
        args = args[2:]
    profile, cmd = args[0], args[1]
    peer = Peer(profile, wait)
    peer.start()
    res = {"accepted": 0, "resets": {}, "texts": {}}

    if cmd in ("streams", "dial"):
        if cmd == "dial":
            n, dst, early = 1, args[2], 0
        else:
            n, dst, early = int(args[2]), args[3], int(args[4])
        addr, port = dst.rsplit(":", 1)
        pending = set()
        data = b"x" * 16384

        def on_frame(t, sid, pl):
            if t == ACCEPT and sid in pending:
                res["accepted"] += 1
                pending.discard(sid)
                peer.send(frame(RESET, sid, b"\x01done"))
            elif t == RESET and sid in pending:
                pending.discard(sid)
                r = str(pl[0])
                res["resets"][r] = res["resets"].get(r, 0) + 1
                txt = pl[1:].decode(errors="replace")
                res["texts"][txt] = res["texts"].get(txt, 0) + 1
        peer.on_frame = on_frame
        for i in range(n):
            sid = 2 * i + 1
            pending.add(sid)
            peer.send(open_dial(sid, addr, int(port)))
            left = early
            while left > 0:
                k = min(left, len(data))
                peer.send(frame(DATA, sid, data[:k]))
                left -= k
            while len(peer.out) > 4 << 20 and not peer.closed:
                peer.pump(0.05)
        peer.run(lambda: not pending)
        res["unanswered"] = len(pending)
    elif cmd == "resolve":
        n, name = int(args[2]), args[3]
        pending = set(range(1, n + 1))
        res["rcodes"] = {}
        answers = {}  # tenth of a second (wall clock) -> answers in it
        nxt = [n + 1]
        holding = [hold is not None]

        def ask(i):
            peer.send(frame(CONTROL, 0, json.dumps({"type": "resolve", "id": i, "name": name,
                                                    "qtype": 1}).encode()))

        def on_frame(t, sid, pl):
            if t == CONTROL:
                m = json.loads(pl)
                if m.get("type") == "resolved" and m.get("id") in pending:
                    pending.discard(m["id"])
                    r = str(m.get("rcode"))
                    res["rcodes"][r] = res["rcodes"].get(r, 0) + 1
                    tenth = int(time.time() * 10)
                    answers[tenth] = answers.get(tenth, 0) + 1
                    if holding[0] and nxt[0] <= HOLD_MAX_SENT:
                        pending.add(nxt[0])
                        ask(nxt[0])
                        nxt[0] += 1
        peer.on_frame = on_frame
        for i in range(1, n + 1):
            ask(i)
        if hold is not None:
            # It has started once the manager answers it.
            end = time.monotonic() + 10
            while not peer.closed and not answers and time.monotonic() < end:
                peer.pump(0.05)
            res["flood_start"] = time.time()
            open(os.path.join(hold, "started"), "w").close()
            end = time.monotonic() + HOLD_MAX_S
            while (not peer.closed and time.monotonic() < end and nxt[0] <= HOLD_MAX_SENT and
                   not os.path.exists(os.path.join(hold, "stop"))):
                peer.pump(0.05)
            holding[0] = False
            res["flood_end"] = time.time()
            res["answers_per_tenth"] = {str(k): v for k, v in sorted(answers.items())}
        res["sent"] = nxt[0] - 1
        peer.run(lambda: not pending)
        res["unanswered"] = len(pending)
    elif cmd == "control":
        def on_frame(t, sid, pl):
            if t == CONTROL:
                m = json.loads(pl)
                if m.get("type") == "result" and m.get("id") == 1:
                    res["result"] = m
        peer.on_frame = on_frame
        msg = dict(json.loads(args[2]), id=1)
        peer.send(frame(CONTROL, 0, json.dumps(msg).encode()))
        peer.run(lambda: "result" in res)
    elif cmd == "goaway":
        print(json.dumps(goaway(peer, profile, args[2]), sort_keys=True))
        return 0
    else:
        raise SystemExit("kbraw: unknown command " + cmd)
    res["hello_early_data"] = peer.hello.get("early_data")
    res["closed"] = peer.closed
    res["goaway"] = peer.goaway
    print(json.dumps(res, sort_keys=True))
    return 0 if not peer.closed else 1


if __name__ == "__main__":
    sys.exit(main())
