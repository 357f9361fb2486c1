# dnsbench.py SERVER PORT NAME COUNT: time COUNT A lookups, one fresh UDP
# socket per lookup like a stub resolver; prints JSON
import json, random, socket, struct, sys, time
server, port, name, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def query(qid):
    q = struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip('.').split('.'):
        q += bytes([len(label)]) + label.encode()
    return q + b'\0' + struct.pack('>HH', 1, 1)
lat, fail, warm = [], 0, 5
for i in range(count + warm):
    qid = random.randrange(65536)
    pkt = query(qid)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    ok = False
    t0 = time.perf_counter_ns()
    try:
        s.sendto(pkt, (server, port))
        while True:
            r = s.recv(4096)
            if len(r) >= 12 and struct.unpack('>H', r[:2])[0] == qid:
                break
        t1 = time.perf_counter_ns()
        ok = (r[3] & 0xf) == 0 and struct.unpack('>H', r[6:8])[0] > 0
    except OSError:
        pass
    s.close()
    if i < warm:
        continue
    if ok:
        lat.append((t1 - t0) / 1e6)
    else:
        fail += 1
lat.sort()
pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 4) if lat else None
print(json.dumps({'p50_ms': pct(0.5), 'p90_ms': pct(0.9), 'p99_ms': pct(0.99),
                  'ok': len(lat), 'fail': fail}))
