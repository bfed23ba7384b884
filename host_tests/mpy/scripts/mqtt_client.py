# pblib.mqtt's Client under the MicroPython unix port, driven by
# host_tests/mpy/test_mqtt_client.py.
#
#   micropython mqtt_client.py '{"host": "127.0.0.1", "port": 1883, "id": "c1", ...}'
#
# Config keys: host, port, id, keepalive, user, password, will ([topic, payload,
# retain]), buf_size, max_in, dns, backoff_ms, backoff_max_ms, subs (filters).
# Commands, one JSON object a line on stdin:
#   {"pub": [topic, payload, retain]}   {"flood": [topic, count, payload_len]}
#   {"sub": filter}   {"status": 1}   {"stop": 1}   {"cancel": 1}
# Output, one JSON object a line: {"ev": "ready"}, {"ev": "connect", "n": k},
# {"ev": "msg", "topic": t, "payload": p}, {"ev": "down", "last_error": e}, {"ev": "status", ...the client's
# fields, "gap_ms": the longest extra delay a 10 ms sleep loop saw since the
# last status, "free": gc.mem_free() after a collect}, {"ev": "done"}.
import asyncio
import gc
import json
import sys
import time

from pblib import mqtt


def out(**kw):
    print(json.dumps(kw))


async def ticker(st, c, n):
    # a second task: how late does a 10 ms sleep come back? It also reports
    # each loss of the connection (n[0] connects so far, n[1] losses reported).
    while True:
        t = time.ticks_ms()
        await asyncio.sleep_ms(10)
        g = time.ticks_diff(time.ticks_ms(), t) - 10
        if g > st[0]:
            st[0] = g
        if n[0] > n[1] and not c.connected:
            n[1] += 1
            out(ev="down", last_error=c.last_error)


def status(c, st):
    gc.collect()
    out(ev="status", connected=c.connected, last_error=c.last_error, sent=c.sent, dropped=c.dropped,
        received=c.received, skipped=c.skipped, reconnects=c.reconnects, gap_ms=st[0], free=gc.mem_free())
    st[0] = 0


async def main(cfg):
    c = mqtt.Client(cfg["id"], cfg["host"], cfg.get("port", 1883), cfg.get("user"), cfg.get("password"),
                    cfg.get("keepalive", 60), cfg.get("will"), cfg.get("buf_size", 2048), cfg.get("max_in", 512))
    c.dns = cfg.get("dns")
    c.backoff_ms = cfg.get("backoff_ms", c.backoff_ms)
    c.backoff_max_ms = cfg.get("backoff_max_ms", c.backoff_max_ms)
    n = [0, 0]

    def on_connect():
        n[0] += 1
        out(ev="connect", n=n[0])

    c.on_connect = on_connect
    c.on_message = lambda t, p: out(ev="msg", topic=t, payload=str(p, "utf-8"))
    for f in cfg.get("subs", ()):
        c.subscribe(f)
    st = [0]
    tick = asyncio.create_task(ticker(st, c, n))
    run = asyncio.create_task(c.run())
    sr = asyncio.StreamReader(sys.stdin)
    out(ev="ready")
    while True:
        line = await sr.readline()
        if not line:
            break
        cmd = json.loads(line)
        if "pub" in cmd:
            p = cmd["pub"]
            out(ev="pub", ok=c.publish(p[0], p[1], p[2]))
        elif "flood" in cmd:
            t, k, m = cmd["flood"]
            p = "x" * m
            ok = 0
            for _ in range(k):
                ok += c.publish(t, p)
                await asyncio.sleep_ms(0)
            out(ev="flood", ok=ok)
        elif "sub" in cmd:
            c.subscribe(cmd["sub"])
        elif "status" in cmd:
            status(c, st)
        elif "stop" in cmd:
            c.stop()
            await asyncio.wait_for_ms(run, 5000)
            break
        elif "cancel" in cmd:
            run.cancel()
            await asyncio.sleep_ms(10)
            break
    tick.cancel()
    status(c, st)
    out(ev="done", sock=c._sock is None)


asyncio.run(main(json.loads(sys.argv[1])))
