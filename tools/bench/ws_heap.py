"""Heap and per-message cost of pblib.ws + pblib.ocppj as .mpy (-O3) on the MicroPython unix port.

    python tools/bench/ws_heap.py [--n 10] [--heap 96k]

Builds build/bench_ws/pblib/*.mpy, serves a `websockets` echo (/echo) and a minimal OCPP-J peer (/ocpp:
answers every CALL; after a CALL "Burst" it sends n CALLs of its own, one at a time) on 127.0.0.1,
and runs tools/bench/ws_heap_mp.py against it. Figures in bytes of the unix port's heap (64-bit: object
headers and pointers are twice an ESP32's, so the board needs less; buffers are the same).
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from mpybuild import mpy_cross  # noqa: E402
from simrun import ROOT, micropython_bin  # noqa: E402


def build(out):
    d = os.path.join(out, "pblib")
    os.makedirs(d, exist_ok=True)
    for name in ("__init__", "ws", "ocppj"):
        subprocess.run([mpy_cross(), "-O3", "-o", os.path.join(d, name + ".mpy"),
                        os.path.join(ROOT, "lib", "pblib", name + ".py")], check=True)


def serve(n_ready):
    from websockets.asyncio.server import serve as ws_serve

    async def handler(ws):
        if ws.request.path == "/echo":
            async for m in ws:
                await ws.send(m)
            return
        async for m in ws:
            msg = json.loads(m)
            if msg[0] != 2:
                continue
            await ws.send(json.dumps([3, msg[1], {"currentTime": "2026-07-05T10:00:00Z"}]))
            if msg[2] == "Burst":
                for i in range(msg[3]["n"]):
                    await ws.send(json.dumps([2, "s%d" % i, "ChangeConfiguration",
                                              {"key": "HeartbeatInterval", "value": "300"}]))
                    while json.loads(await ws.recv())[0] == 2:  # (our own CALLs are not expected now)
                        pass

    async def main():
        async with ws_serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"], ping_interval=None) as s:
            n_ready.append(s.sockets[0].getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--heap", default="96k")
    a = ap.parse_args()
    out = os.path.join(ROOT, "build", "bench_ws")
    build(out)
    port = []
    threading.Thread(target=serve, args=(port,), daemon=True).start()
    while not port:
        pass
    env = dict(os.environ, MICROPYPATH=out + ":.frozen")
    r = subprocess.run([micropython_bin(), "-X", "heapsize=" + a.heap, os.path.join(HERE, "ws_heap_mp.py"),
                        "ws://127.0.0.1:%d" % port[0], str(a.n)], env=env, capture_output=True, text=True, timeout=120)
    q = []
    for line in r.stdout.splitlines():
        if line.startswith("qstr pool:"):
            q.append(int(line.split("n_qstr=")[1].split(",")[0]))
        else:
            print(line)
    if len(q) == 3:
        print("qstrs_ws %d\nqstrs_ocppj %d" % (q[1] - q[0], q[2] - q[1]))
    print(r.stderr, end="")
    sizes = {n: os.path.getsize(os.path.join(out, "pblib", n + ".mpy")) for n in ("ws", "ocppj")}
    print(".mpy sizes: ws %(ws)d B, ocppj %(ocppj)d B" % sizes)
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
