"""A tiny lib/httpd.py app for the server tests and the benchmark (MicroPython).

Usage: micropython -X heapsize=96k tools/bench/hello_httpd.py PORT [STATIC_DIR] [MAX_CONNS]
(MICROPYPATH must contain lib/). Prints "READY <port>" once listening.

Routes (path /cnf, by cmd=):
  echo   -> {"method", "path", "query"}        mem   -> gc.mem_free() after gc.collect()
  post   -> {"query", "ctype", "len", "json", "ends": first and last 8 bytes of the body}
  stats  -> the server's counters        nomem -> the next n=N connections meet a MemoryError while
                                           the accept loop sets them up (asyncio.create_task fails)
  nohead -> a reply whose head finds no room (its header lines raise MemoryError)
  vip    -> from now on the client at ip=A is the server's vip (as pbctl's admin)
  auth   -> [user, password] or 401 (own=1: with the challenge header given by the app)
  err    -> HTTPError(status=S (409), "conflict here", [("X-Why", "test")])
  crash  -> a plain exception (500)            sleep -> waits ms=N milliseconds, then "ok"
  big    -> a list of n=N integers
  stream -> a generator: '{"items":[' then n=N items '"<i>:<size x>"' (str and bytes
            pieces) then ']}'; fail=K: raises after K items; err0=1: raises
            HTTPError(409) before its first piece; empty=1: yields nothing
  upload -> a streamed body (Server.stream): {"len", "sha256", "pieces", "max_piece", "grew": heap
            kept after it was read}; stop=K: 400 "stopped" after K bytes (the server
            drops the rest); a body cut short: 400 "truncated"
The server is made with handler None and gets it afterwards, as pbctl does.
Any other path is echoed as {"method", "path", "query"}; /static/NAME serves
STATIC_DIR/NAME as a File (NAME ending in .gz with gzip=True), /self serves this script.
"""
import asyncio
import gc
import sys

from pblib import httpd

_server = None
_static = None
_nomem = [0]
_create_task = asyncio.create_task


def _task_or_nomem(coro):
    # cmd=nomem: the accept loop's asyncio.create_task fails as on a full heap
    if _nomem[0]:
        _nomem[0] -= 1
        coro.close()
        raise MemoryError
    return _create_task(coro)


def _no_room():
    # cmd=nohead: header lines that cannot be made, as on a full heap
    raise MemoryError
    yield


async def handler(req):
    if req.path.startswith("/static/") and _static:
        name = req.path[8:]
        if "/" in name or name.startswith("."):
            raise httpd.HTTPError(404, "not found")
        gz = name.endswith(".gz")
        return 200, httpd.File(_static + "/" + name, "application/octet-stream", gzip=gz, max_age=60)
    if req.path == "/self":
        return 200, httpd.File(sys.argv[0], "text/plain")
    cmd = req.query.get("cmd")
    if req.path != "/cnf" or cmd == "echo" or cmd is None:
        return 200, {"method": req.method, "path": req.path, "query": req.query}
    if cmd == "mem":
        gc.collect()
        return 200, gc.mem_free()
    if cmd == "stats":
        s = _server
        return 200, {"requests": s.requests, "errors": s.errors, "refused": s.refused, "timeouts": s.timeouts,
                     "dropped": s.dropped}
    if cmd == "nomem":  # the next n=N connections cannot be set up: as on a full heap
        _nomem[0] = int(req.query.get("n", "1"))
        return 200, "ok"
    if cmd == "vip":
        ip = req.query.get("ip")
        _server.vip = lambda a: a == ip
        return 200, "ok"
    if cmd == "nohead":
        return 200, "never sent", _no_room()
    if cmd == "upload":
        return 200, await _upload(req)
    if cmd == "post":
        ct = req.headers.get("content-type", "")
        j = req.json() if ct.startswith("application/json") else None
        b = req.body
        return 200, {"query": req.query, "ctype": ct, "len": len(b), "json": j, "ends": str(b[:8] + b[-8:], "utf-8")}
    if cmd == "auth":
        a = req.auth()
        if a is None:
            own = [("WWW-Authenticate", 'Basic realm="own"')] if "own" in req.query else None
            raise httpd.HTTPError(401, "unauthorized", own)
        return 200, [a[0], a[1], req.client]
    if cmd == "err":
        raise httpd.HTTPError(int(req.query.get("status", "409")), "conflict here", [("X-Why", "test")])
    if cmd == "crash":
        raise RuntimeError("boom")
    if cmd == "sleep":
        await asyncio.sleep_ms(int(req.query.get("ms", "100")))
        return 200, "ok"
    if cmd == "big":
        return 200, list(range(int(req.query.get("n", "100"))))
    if cmd == "stream":
        q = req.query
        gen = _stream(int(q.get("n", "10")), int(q.get("size", "8")), int(q.get("fail", "-1")), q)
        return 200, gen, [("X-Stream", "1")]
    raise httpd.HTTPError(404, "unknown cmd")


async def _upload(req):
    import binascii
    import hashlib

    s = req.stream
    h = hashlib.sha256()
    stop = int(req.query.get("stop", "-1"))
    n = pieces = big = 0
    gc.collect()
    m0 = gc.mem_alloc()
    try:
        while True:
            mv = await s.read()
            if not mv:
                break
            h.update(mv)
            n += len(mv)
            pieces += 1
            big = max(big, len(mv))
            if 0 <= stop <= n:
                raise httpd.HTTPError(400, "stopped")
    except EOFError:
        raise httpd.HTTPError(400, "truncated")
    gc.collect()
    grew = gc.mem_alloc() - m0  # kept (each piece's view and bounded read is garbage, ~80 bytes)
    return {"len": n, "sha256": binascii.hexlify(h.digest()).decode(), "pieces": pieces, "max_piece": big,
            "grew": grew}


def _stream(n, size, fail, q):
    if "err0" in q:
        raise httpd.HTTPError(409, "not now")
    if "empty" in q:
        return
    yield '{"items":['
    for i in range(n):
        if i == fail:
            raise RuntimeError("stream broke")
        p = '%s"%d:%s"' % ("," if i else "", i, "x" * size)
        yield p.encode() if i % 2 else p
    yield b"]}"


async def main(port, max_conns):
    global _server
    _server = httpd.Server(None, max_conns=max_conns)  # handler set later, as in pbctl
    _server.handler = handler
    _server.stream = lambda path, qs: "cmd=upload" in qs
    await _server.start("127.0.0.1", port)
    asyncio.create_task = _task_or_nomem  # (only the accept loop creates tasks after this)
    print("READY", port)
    while True:
        await asyncio.sleep(3600)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2]:
        _static = sys.argv[2]
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[3]) if len(sys.argv) > 3 else 4))
