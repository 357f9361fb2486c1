#!/usr/bin/env python3
"""dnsflood.py SERVER COUNT SECONDS: one UDP socket sends COUNT queries for
names nobody has (half cluster-style f<N>.default, half f<N>.outside.test)
spread over SECONDS, and never reads its answers. Meanwhile another socket
asks web.default and outside.test one at a time (each may take up to 5 s)
until the flood is over. Prints what the second client saw; exit 1 if any
of its queries went unanswered or failed."""
import random
import socket
import struct
import sys
import threading
import time

server, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])


def query(name, qid):
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.split("."))
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", 1, 1)


done = threading.Event()


def flood():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    for i in range(count):
        name = "f%d.default" % i if i % 2 else "f%d.outside.test" % i
        try:
            s.sendto(query(name, i & 0xFFFF), (server, 53))
        except OSError:
            pass
        if i % 200 == 199:
            ahead = start + seconds * (i + 1) / count - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    done.set()


threading.Thread(target=flood, daemon=True).start()
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(5)
times, failed = [], []
while not done.is_set() or len(times) < 20:
    for name in ("web.default", "outside.test"):
        qid = random.randrange(65536)
        t = time.monotonic()
        c.sendto(query(name, qid), (server, 53))
        try:
            while True:
                m = c.recv(4096)
                if len(m) >= 12 and struct.unpack(">H", m[:2])[0] == qid:
                    break
            good = (m[3] & 15) == 0 and struct.unpack(">H", m[6:8])[0] > 0
            what = "rcode %d" % (m[3] & 15)
        except socket.timeout:
            good, what = False, "no answer"
        times.append(time.monotonic() - t)
        if not good:
            failed.append("%s: %s after %.0f ms" % (name, what, 1000 * times[-1]))
    time.sleep(0.01)
times.sort()
print("during a flood of %d queries in %.1f s: %d of %d other queries answered, median %.1f ms, max %.1f ms"
      % (count, seconds, len(times) - len(failed), len(times), 1000 * times[len(times) // 2], 1000 * times[-1]))
for f in failed[:10]:
    print("  " + f)
sys.exit(1 if failed else 0)
