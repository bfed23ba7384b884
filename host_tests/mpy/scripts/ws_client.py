# pblib.ws under the MicroPython unix port: one scenario against a real server, driven by
# host_tests/mpy/test_ws_client.py.
#   micropython ws_client.py URL SCENARIO [key=value ...]
# keys: max_msg, timeout_ms, ping_ms, tx_size (Client), user, password, protocol ("" = none), ca (a DER
# certificate: verify the server against it); per scenario: n, echo, code.
# Prints one JSON line per result; exits 0 unless the script itself broke.
import asyncio
import json
import sys
import time

from pblib import ws


def out(d):
    print(json.dumps(d))


def opts():
    o = {}
    for a in sys.argv[3:]:
        k, _, v = a.partition("=")
        o[k] = v
    return o


def client(o):
    return ws.Client(max_msg=int(o.get("max_msg", 4096)), timeout_ms=int(o.get("timeout_ms", 3000)),
                     ping_ms=int(o.get("ping_ms", 30000)), tx_size=int(o.get("tx_size", 256)))


async def connect(c, url, o, headers=()):
    ctx = None
    if "ca" in o:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        with open(o["ca"], "rb") as f:
            ctx.load_verify_locations(cadata=f.read())
    await c.connect(url, protocol=o.get("protocol", "ocpp1.6") or None, user=o.get("user"),
                    password=o.get("password"), headers=headers, ssl=ctx)


async def roundtrip(c, data, op):
    await c.send(data, op)
    m = await c.recv()
    if m is None:
        return "ended: %s" % c.last_error
    if c.opcode != op:
        return "opcode %d" % c.opcode
    want = data.encode() if isinstance(data, str) else bytes(data)
    return "ok" if bytes(m) == want else "differs (%d bytes, sent %d)" % (len(m), len(want))


async def echo(c, url, o):
    await connect(c, url, o, [("X-Test", "yes")])
    res = []
    for data, op in (("hello", ws.TEXT), (bytes(range(256)), ws.BINARY), ("\u00e9\u20ac" * 300, ws.TEXT),
                     ("x" * 125, ws.TEXT), ("y" * 126, ws.TEXT), ("", ws.TEXT), (bytearray(4000), ws.BINARY),
                     ("q" * int(o.get("max_msg", 4096)), ws.TEXT)):
        res.append(await roundtrip(c, data, op))
    out({"echo": res})
    # two tasks sending at once: every echo must come back whole (frames never interleave)
    sent = []

    async def sender(ch, size):
        for i in range(5):
            sent.append((ch, size + i))
            await c.send(ch * (size + i))

    asyncio.create_task(sender("a", 3000))
    asyncio.create_task(sender("b", 10))
    got = []
    for _ in range(10):
        m = await c.recv()
        if m is None:
            break
        m = str(m, "utf-8")
        got.append((m[0], len(m)) if m == m[0] * len(m) else ("mixed", len(m)))
        m = None
    out({"concurrent": sorted(got) == sorted(sent), "n": len(got)})
    await c.close(int(o.get("code", 1000)))
    out({"closed": c.close_code, "error": c.last_error, "rx": c.rx, "tx": c.tx, "after": await c.recv()})


async def frag(c, url, o):
    await connect(c, url, o)
    m = await c.recv()
    t = str(m, "utf-8")
    await c.send(t)
    m = await c.recv()
    b = bytes(m)
    op = c.opcode
    await c.send(b, ws.BINARY)
    out({"text": t, "binary_len": len(b), "binary_op": op})
    await c.close()
    out({"closed": c.close_code})


async def ping(c, url, o):
    await connect(c, url, o)
    m = await c.recv()
    out({"got": str(m, "utf-8") if m is not None else None, "error": c.last_error})
    await c.close()


async def until_end(c, url, o):
    # receive until the connection ends (n=K: close after K messages; echo=1: send each one back)
    t0 = None
    try:
        await connect(c, url, o)
    except Exception as e:
        out({"connect": type(e).__name__, "message": str(e), "status": getattr(e, "status", None)})
        return
    out({"connected": True})
    t0 = time.ticks_ms()
    k = int(o.get("n", -1))
    if k == 0:
        await c.close()
    while True:
        m = await c.recv()
        if m is None:
            break
        out({"message": str(m, "utf-8") if c.opcode == ws.TEXT else None, "len": len(m), "op": c.opcode})
        if o.get("echo"):
            await c.send(bytes(m), c.opcode)
        k -= 1
        if k == 0:
            await c.close()
    out({"ended_ms": time.ticks_diff(time.ticks_ms(), t0), "code": c.close_code, "error": c.last_error,
         "pings": c.pings, "again": await c.recv()})
    try:
        await c.send("late")
        out({"send_after_end": "sent"})
    except OSError as e:
        out({"send_after_end": str(e)})


async def close_while_reading(c, url, o):
    await connect(c, url, o)
    got = []

    async def reader():
        got.append(await c.recv())

    t = asyncio.create_task(reader())
    await asyncio.sleep_ms(100)
    t0 = time.ticks_ms()
    await c.close(int(o.get("code", 4000)))
    await t
    out({"recv": got[0], "code": c.close_code, "ms": time.ticks_diff(time.ticks_ms(), t0), "error": c.last_error})


async def main():
    url = sys.argv[1]
    o = opts()
    c = client(o)
    fn = {"echo": echo, "frag": frag, "ping": ping, "until_end": until_end,
          "close_while_reading": close_while_reading}[sys.argv[2]]
    await fn(c, url, o)
    out({"done": True})


asyncio.run(main())
