# holder_server.py PORT: accept, answer one byte, hold until the peer closes
import asyncio, sys
async def handle(r, w):
    try:
        if await r.read(1):
            w.write(b'y')
            await w.drain()
            while await r.read(4096):
                pass
    except OSError:
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(handle, '0.0.0.0', int(sys.argv[1]), backlog=4096)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
