# httpd.Server.close(): connections in a handler or half-way through their head
# are cancelled at once, their buffers back in the pool, the port free again.
# Usage: micropython httpd_close.py PORT; prints CLOSE OK.
# Run by host_tests/mpy/test_httpd_server.py.
import sys

import asyncio
from pblib import httpd

PORT = int(sys.argv[1])


async def handler(req):
    if req.query.get("cmd") == "slow":
        await asyncio.sleep_ms(5000)
    return 200, "ok"


async def client(data):
    r, w = await asyncio.open_connection("127.0.0.1", PORT)
    w.write(data)
    await w.drain()
    got = b""
    try:
        while True:
            b = await asyncio.wait_for_ms(r.read(512), 3000)
            if not b:
                break
            got += b
    except OSError:
        pass
    w.close()
    await w.wait_closed()
    return got


async def main():
    s = httpd.Server(handler, max_conns=2)
    await s.start("127.0.0.1", PORT)
    assert b" 200 OK" in await client(b"GET /cnf HTTP/1.1\r\n\r\n")
    t1 = asyncio.create_task(client(b"GET /cnf?cmd=slow HTTP/1.1\r\n\r\n"))  # in the handler
    t2 = asyncio.create_task(client(b"GET /cnf"))  # half a head
    await asyncio.sleep_ms(100)
    assert not s._pool and len(s._tasks) == 2
    await s.close()
    assert (await t1, await t2) == (b"", b"")  # both closed at once, nothing hangs
    assert len(s._pool) == 2 and not s._tasks
    s = httpd.Server(handler)  # the port is free again
    await s.start("127.0.0.1", PORT)
    assert b" 200 OK" in await client(b"GET /cnf HTTP/1.1\r\n\r\n")
    await s.close()
    print("CLOSE OK")


asyncio.run(main())
