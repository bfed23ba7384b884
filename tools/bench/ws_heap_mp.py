# Heap of pblib.ws + pblib.ocppj under MicroPython (run by tools/bench/ws_heap.py, which serves URL).
#   micropython ws_heap_mp.py ws://127.0.0.1:PORT N
# Prints "name value" lines: heap taken (bytes, after gc.collect()) and bytes allocated per message
# (gc.mem_alloc() growth with the collector off: what becomes garbage, the collector's workload).
import asyncio
import gc
import micropython
import sys
import time

URL = sys.argv[1]
N = int(sys.argv[2])


def free():
    gc.collect()
    return gc.mem_free()


def say(name, v):
    print("%s %d" % (name, v))


async def per_msg(fn, n):
    # bytes allocated per fn() call, averaged over n (two warm-up calls first)
    for _ in range(2):
        await fn()
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    t = time.ticks_us()
    for _ in range(n):
        await fn()
    t = time.ticks_diff(time.ticks_us(), t)
    b = gc.mem_alloc()
    gc.enable()
    return (b - a) // n, t // n


async def main():
    f = free()
    # the asyncio parts a client needs, loaded on first use (frozen; their objects are on the heap)
    asyncio.Lock, asyncio.Event, asyncio.StreamReader, asyncio.wait_for_ms
    say("asyncio_parts", f - free())
    # cold: the first import, names interned too (qstr_info lines: the driver counts them); warm: the
    # module's code and objects alone (imported again, its names already interned)
    micropython.qstr_info()
    f = free()
    from pblib import ws

    say("import_ws_cold", f - free())
    micropython.qstr_info()
    f = free()
    from pblib import ocppj

    say("import_ocppj_cold", f - free())
    micropython.qstr_info()
    import pblib

    for m in ("ws", "ocppj"):
        del sys.modules["pblib." + m]
        delattr(pblib, m)
    ws = ocppj = None
    for m in ("ws", "ocppj"):
        f = free()
        __import__("pblib." + m)
        say("import_%s_warm" % m, f - free())
    ws = sys.modules["pblib.ws"]
    ocppj = sys.modules["pblib.ocppj"]
    f = free()
    c = ws.Client()  # max_msg 4096, tx_size 256
    say("client_object", f - free())
    f = free()
    await c.connect(URL + "/echo")
    say("connect_adds", f - free())
    for size in (100, 1000, 4000):
        msg = "m" * size

        async def echo():
            await c.send(msg)
            await c.recv()

        a, us = await per_msg(echo, N)
        say("echo_%d_alloc_per_roundtrip" % size, a)
        say("echo_%d_us_per_roundtrip" % size, us)
    await c.close()
    f = free()
    await c.connect(URL + "/ocpp")

    async def handler(action, payload):
        return {"status": "Accepted"}

    rpc = ocppj.Rpc(c, handler)
    reader = asyncio.create_task(rpc.run())
    await asyncio.sleep_ms(50)
    say("rpc_running_adds", f - free())

    async def heartbeat():
        await rpc.call("Heartbeat", {})

    call_alloc, us = await per_msg(heartbeat, N)
    say("call_alloc_per_call", call_alloc)
    say("call_us_per_call", us)
    # N incoming CALLs (the server sends them after our "Burst"), each answered
    k = rpc.calls_in
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    await rpc.call("Burst", {"n": N})
    while rpc.calls_in < k + N:
        await asyncio.sleep_ms(1)
    await asyncio.sleep_ms(20)  # the last answer goes out
    b = gc.mem_alloc()
    gc.enable()
    say("incoming_call_alloc_per_call", (b - a - call_alloc) // N)  # (the Burst call itself taken off)
    await c.close()
    await reader
    print("rpc", rpc.calls, rpc.results, rpc.calls_in, "ws", c.rx, c.tx, c.last_error or "-")


asyncio.run(main())
