# holder_client.py HOST PORT N READY RELEASE MAXWAIT: open N connections, each
# sends one byte and waits for one back (so the tunnel stream is complete end
# to end); write "ok fail secs" to READY; hold until RELEASE exists or MAXWAIT
import asyncio, os, sys, time
host, port, n, ready, release, maxwait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], float(sys.argv[6])
conns, fail = [], 0
async def one(sem):
    global fail
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
            w.write(b'x')
            await w.drain()
            if await asyncio.wait_for(r.read(1), 10) != b'y':
                raise OSError('no answer')
            conns.append(w)
        except (OSError, asyncio.TimeoutError):
            fail += 1
async def main():
    t0 = time.monotonic()
    sem = asyncio.Semaphore(100)
    await asyncio.gather(*(one(sem) for _ in range(n)))
    with open(ready + '.tmp', 'w') as f:
        f.write('%d %d %.2f\n' % (len(conns), fail, time.monotonic() - t0))
    os.rename(ready + '.tmp', ready)
    end = time.monotonic() + maxwait
    while not os.path.exists(release) and time.monotonic() < end:
        await asyncio.sleep(0.1)
    for w in conns:
        w.close()
    await asyncio.sleep(0.2)
asyncio.run(main())
