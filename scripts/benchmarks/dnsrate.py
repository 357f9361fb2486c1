# dnsrate.py SERVER NAME QTYPE SECONDS MAX WINDOW: lookups of NAME (type
# QTYPE, a number) against SERVER:53 over UDP, WINDOW of them in flight at
# once, for at most SECONDS and at most MAX answered; prints JSON: lookups/s,
# p50/p99 latency, answered, lost (no answer within 2 s). Bounded in time and
# count; one socket, ids matched.
import json, random, select, socket, struct, sys, time

server, name, qtype = sys.argv[1], sys.argv[2], int(sys.argv[3])
seconds, maxn, window = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
wire = b''.join(bytes([len(l)]) + l.encode() for l in name.rstrip('.').split('.')) + b'\0'

def query(qid):
    return struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack('>HH', qtype, 1)

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((server, 53))
s.setblocking(False)
inflight, lat, lost, bad, sent = {}, [], 0, 0, 0
t0 = time.perf_counter()
end = t0 + seconds
ids = random.sample(range(65536), 65536)
nid = 0

def send():
    global nid, sent
    while True:
        qid = ids[nid % 65536]
        nid += 1
        if qid not in inflight:
            break
    inflight[qid] = time.perf_counter()
    s.send(query(qid))
    sent += 1

while True:
    now = time.perf_counter()
    if now < end and len(lat) + len(inflight) < maxn:
        while len(inflight) < window and len(lat) + len(inflight) < maxn:
            send()
    elif not inflight:
        break
    for qid in [q for q, t in inflight.items() if now - t > 2]:
        del inflight[qid]
        lost += 1
    if now > end + 2:
        lost += len(inflight)
        break
    r, _, _ = select.select([s], [], [], 0.1)
    if not r:
        continue
    while True:
        try:
            m = s.recv(4096)
        except BlockingIOError:
            break
        if len(m) < 12:
            continue
        qid = struct.unpack('>H', m[:2])[0]
        if qid in inflight:
            t = inflight.pop(qid)
            if (m[3] & 0xf) == 0 and struct.unpack('>H', m[6:8])[0] > 0:
                lat.append((time.perf_counter() - t) * 1000)
            else:
                bad += 1
elapsed = time.perf_counter() - t0
lat.sort()
pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None
print(json.dumps({'lookups_per_s': round(len(lat) / elapsed, 1) if elapsed > 0 else None,
                  'p50_ms': pct(0.5), 'p99_ms': pct(0.99), 'answered': len(lat),
                  'failed': bad, 'lost': lost, 'window': window}))
