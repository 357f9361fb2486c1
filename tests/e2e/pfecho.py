#!/usr/bin/env python3
"""Echo check through a forwarded port: STREAMS connections to HOST:PORT at
once, each sending BYTES random bytes while reading them back; prints
"ok STREAMS BYTES SECONDS" when every stream got its bytes back identical
(sha256), else one line saying what differed, and exits 1.

  pfecho.py HOST PORT BYTES [STREAMS]
  pfecho.py --hold HOST PORT COUNT   COUNT idle connections: how many echo
                                     one byte (the rest were refused)"""
import hashlib, os, socket, sys, threading, time

def one(host, port, n, res, i):
    data = os.urandom(n)
    try:
        s = socket.create_connection((host, port), timeout=60)
        t = threading.Thread(target=s.sendall, args=(data,))
        t.start()
        h, got = hashlib.sha256(), 0
        while got < n:
            b = s.recv(1 << 20)
            if not b:
                break
            h.update(b)
            got += len(b)
        t.join()
        s.close()
        res[i] = "ok" if got == n and h.digest() == hashlib.sha256(data).digest() else \
            "stream %d: %d of %d bytes back, sha256 %s" % (i, got, n,
                "differs" if got == n else "not compared")
    except OSError as e:
        res[i] = "stream %d: %s" % (i, e)

def hold(host, port, count):
    socks, good = [], 0
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=20)
        socks.append(s)
        try:
            s.sendall(b"x")
            good += s.recv(1) == b"x"
        except OSError:
            pass
    print(good)

if sys.argv[1] == "--hold":
    hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    sys.exit(0)
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
k = int(sys.argv[4]) if len(sys.argv) > 4 else 1
res = [None] * k
t0 = time.time()
ts = [threading.Thread(target=one, args=(host, port, n, res, i)) for i in range(k)]
for t in ts:
    t.start()
for t in ts:
    t.join()
bad = [r for r in res if r != "ok"]
if bad:
    print(bad[0])
    sys.exit(1)
print("ok %d %d %.2f" % (k, n, time.time() - t0))
