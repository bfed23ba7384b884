# Runs under MicroPython: N reads of 6 registers through rtu.Master on the
# pty in PBCTL_TTY; prints one JSON line with the round-trip times in us.
import asyncio
import json
import os
import time

import pbboard as board
from pblib import rtu


async def main():
    n = int(os.getenv("N") or "200")
    slave = int(os.getenv("SLAVE") or "2")
    m = rtu.Master(board.uart(), board.BAUD, board.de_pin(), timeout_ms=200, retries=0)
    await m.read(slave, 8000, 6)
    out = []
    for _ in range(n):
        await asyncio.sleep_ms(10)  # start each read on an idle bus (no frame gap left to wait)
        t = time.ticks_us()
        await m.read(slave, 8000, 6)
        out.append(time.ticks_diff(time.ticks_us(), t))
    out.sort()
    print(json.dumps({"n": n, "p50": out[n // 2], "p99": out[n * 99 // 100], "min": out[0]}))


asyncio.run(main())
