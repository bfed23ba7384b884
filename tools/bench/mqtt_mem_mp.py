# Heap cost of pblib.mqtt under MicroPython (run by tools/bench/mqtt_mem.py on
# an .mpy build): the import, and a Client connected to a broker with two
# subscriptions, its buffers, its reader task and socket.
#   micropython mqtt_mem_mp.py PORT BUF_SIZE MAX_IN
import asyncio
import gc
import socket  # noqa: F401 (the client imports it; loaded before the first figure)
import sys


def free():
    gc.collect()
    return gc.mem_free()


async def session(mqtt, port, buf_size, max_in, b):
    c = mqtt.Client("membench", "127.0.0.1", port, keepalive=60, will=("pb/mem/status", "offline", True),
                    buf_size=buf_size, max_in=max_in)
    f0 = free()
    print("client_idle %d" % (b - f0))
    c.subscribe("pb/mem/+/set/current")
    c.subscribe("pb/mem/+/set/enable")
    c.on_message = lambda t, p: None
    t = asyncio.create_task(c.run())
    for _ in range(200):
        await asyncio.sleep_ms(10)
        if c.connected:
            break
    await asyncio.sleep_ms(300)  # SUBSCRIBE out, SUBACK in
    c.publish("pb/mem/status", "online", True)
    await asyncio.sleep_ms(100)
    print("client_connected %d" % (b - free()))
    print("connected %s sent %d" % (c.connected, c.sent))
    for _ in range(50):  # steady state: 50 publishes of a 200-byte state
        c.publish("pb/mem/E1/state", "x" * 200)
        await asyncio.sleep_ms(20)
    print("after_50_publishes %d sent %d" % (b - free(), c.sent))
    t.cancel()
    await asyncio.sleep_ms(10)
    print("socket_closed %s" % (c._sock is None))


async def main(port, buf_size, max_in):
    # asyncio loads these on first use; the firmware has them loaded already (rtu, httpd)
    asyncio.wait_for_ms, asyncio.Event, asyncio.StreamReader  # noqa: B018
    import errno, random  # noqa: E401,F401
    from pblib import mqtt  # first import: interns the module's names

    del sys.modules["pblib.mqtt"]
    del sys.modules["pblib"]
    mqtt = None
    a = free()
    from pblib import mqtt

    b = free()
    print("import %d" % (a - b))
    await session(mqtt, port, buf_size, max_in, b)
    await asyncio.sleep_ms(10)
    # a first run leaves a one-time cost (asyncio's poller and other state
    # grown on first use): repeated runs add nothing
    print("after_cancel_and_drop %d" % (b - free()))
    for _ in range(3):
        await session(mqtt, port, buf_size, max_in, b)
        await asyncio.sleep_ms(10)
    print("after_3_more_sessions %d" % (b - free()))


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
