#!/usr/bin/env python3
"""Idle TCP connections for tests/e2e/exhaust.sh: open COUNT connections to
HOST:PORT (from the source addresses given, in turn), send nothing, and keep
COUNT open: one the server closes is opened again, at most RATE a second.
Stops after SECONDS or when the file STOP exists; writes the number of
connections that completed their connect to READY once the first COUNT
connects ended (or after 10 s).
Bounded: COUNT <= 5000, SECONDS <= 120, RATE <= 500.

usage: flood.py HOST PORT COUNT SECONDS RATE READY STOP [SRC...]
"""
import errno
import os
import resource
import selectors
import socket
import sys
import time


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    count, seconds, rate = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    ready, stop = sys.argv[6], sys.argv[7]
    srcs = sys.argv[8:] or [None]
    assert 0 < count <= 5000 and 0 < seconds <= 120 and 0 < rate <= 500
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:  # root may raise the hard limit
        hard = max(hard, count + 100)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    end = time.monotonic() + seconds
    sel = selectors.DefaultSelector()
    state = {}  # socket -> "connecting" | "open"
    nsrc = 0
    established = 0
    reported = False
    tokens, last = float(count), time.monotonic()
    first = set()  # of the first COUNT, those still connecting
    begin = last

    def start():
        nonlocal nsrc
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        src = srcs[nsrc % len(srcs)]
        nsrc += 1
        if src:
            s.bind((src, 0))
        rc = s.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            return
        state[s] = "connecting"
        sel.register(s, selectors.EVENT_WRITE)
        if nsrc <= count:
            first.add(s)

    def drop(s):
        first.discard(s)
        sel.unregister(s)
        del state[s]
        s.close()

    while time.monotonic() < end and not os.path.exists(stop):
        now = time.monotonic()
        tokens = min(float(count), tokens + (now - last) * rate)
        last = now
        while len(state) < count and tokens >= 1:
            tokens -= 1
            start()
        if not reported and ((nsrc >= count and not first) or now > begin + 10):
            with open(ready, "w") as f:
                f.write("%d\n" % established)
            reported = True
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            if state[s] == "connecting":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    drop(s)
                    continue
                established += 1
                first.discard(s)
                state[s] = "open"
                sel.modify(s, selectors.EVENT_READ)
            else:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:  # the server closed it: open another
                    drop(s)
    for s in list(state):
        s.close()


if __name__ == "__main__":
    main()
