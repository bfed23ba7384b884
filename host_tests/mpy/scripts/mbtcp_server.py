"""A pblib.mbtcp server with a small register bank, for the tests and the benchmark (MicroPython).

Usage: micropython -X heapsize=96k mbtcp_server.py ports=P1,P2,... [idle=MS] [frame=MS] [rate=N]
       [clients=N] [host=127.0.0.1]
(MICROPYPATH must reach pblib.) Port k listens for unit k+1 (unit ids 0 and 255 there).
Prints "READY" once listening; "CLOSED <slots in use>" after a close request, then exits.

Devices (unit ids):
  1, 2, 3  registers 8000..8199, register r of unit u reads u * 1000 + r - 8000 until written;
           writes (fn 6/16) only inside 8080..8099, else exception 2; 0xFFFF written to 8099:
           exception 3, nothing stored. Unit 1, reads touching 8190..8199 first wait 100 ms (a
           slow bus read).
  5        the handler raises (exception 4 from the server)
  6        the handler returns None, not an int (exception 4 from the server)
  200      this script: read 0.. (32-bit values, high word first): 0 mem_free after gc.collect(),
           then the server's counters requests, exceptions, refused, malformed, timeouts, idle,
           throttled, dropped, then the loop-lag probe's largest lag (ms) and its number of
           rounds, then the slots in use (12 values, 24 registers). Writes: 100 = 1 resets the
           lag probe; 101 = N: the next N connections meet a MemoryError in the accept loop
           (asyncio.create_task fails); 102 = 1: close the server.
  others   exception 11 (no such device behind the gateway)
The lag probe is a task that sleeps 5 ms in a loop and records how much later than that it woke.
"""
import asyncio
import gc
import sys
import time

from pblib import mbtcp

_BASE = 8000
_N = 200
_banks = {}
_srv = None
_lag = [0, 0]  # largest lag ms, rounds
_nomem = [0]
_create_task = asyncio.create_task
_closing = asyncio.Event()


def _task_or_nomem(coro):
    if _nomem[0]:
        _nomem[0] -= 1
        coro.close()
        raise MemoryError
    return _create_task(coro)


def _bank(unit):
    b = _banks.get(unit)
    if b is None:
        b = _banks[unit] = bytearray(2 * _N)
        for r in range(_N):
            v = unit * 1000 + r
            b[2 * r] = v >> 8
            b[2 * r + 1] = v & 0xFF
    return b


def _stats(out, addr, count):
    s = _srv
    gc.collect()
    vals = (gc.mem_free(), s.requests, s.exceptions, s.refused, s.malformed, s.timeouts, s.idle,
            s.throttled, s.dropped, _lag[0], _lag[1], sum(1 for x in s._st if x))
    if addr + count > 2 * len(vals):
        return 2
    for k in range(count):
        r = addr + k
        v = vals[r >> 1]
        out[2 * k] = (v >> 24 if r & 1 == 0 else v >> 8) & 0xFF
        out[2 * k + 1] = (v >> 16 if r & 1 == 0 else v) & 0xFF
    return 0


async def handler(unit, fn, addr, count, data, out):
    if unit == 200:
        if fn == 3:
            return _stats(out, addr, count)
        v = data[0] << 8 | data[1]
        if fn != 6 or addr not in (100, 101, 102):
            return 2
        if addr == 100:
            _lag[0] = _lag[1] = 0
        elif addr == 101:
            _nomem[0] = v
        else:
            _closing.set()
        return 0
    if unit == 5:
        raise RuntimeError("handler broke")
    if unit == 6:
        return None
    if unit not in (1, 2, 3):
        return 11
    b = _bank(unit)
    r = addr - _BASE
    if r < 0 or r + count > _N:
        return 2
    if fn == 3:
        if unit == 1 and r + count > 190:
            await asyncio.sleep_ms(100)
        out[:] = b[2 * r : 2 * (r + count)]
        return 0
    if r < 80 or r + count > 100:
        return 2
    if r + count == 100 and data[-2] == 0xFF and data[-1] == 0xFF:
        return 3
    b[2 * r : 2 * (r + count)] = data
    return 0


async def _probe():
    while True:
        t = time.ticks_ms()
        await asyncio.sleep_ms(5)
        d = time.ticks_diff(time.ticks_ms(), t) - 5
        if d > _lag[0]:
            _lag[0] = d
        _lag[1] += 1


async def main(opts):
    global _srv
    ports = [int(p) for p in opts["ports"].split(",")]
    for u in (1, 2, 3):
        _bank(u)  # now: a heap measured later does not see them come
    _srv = mbtcp.Server(handler, max_clients=int(opts.get("clients", "4")), idle_ms=int(opts.get("idle", "60000")),
                        frame_ms=int(opts.get("frame", "2000")), rate=int(opts.get("rate", "20")))
    for k, p in enumerate(ports):
        await _srv.start(opts.get("host", "127.0.0.1"), p, k + 1)
    asyncio.create_task(_probe())
    asyncio.create_task = _task_or_nomem  # (only the accept loops create tasks after this)
    print("READY")
    await _closing.wait()
    await asyncio.sleep_ms(20)  # the close request's reply goes out first
    asyncio.create_task = _create_task
    await _srv.close()
    print("CLOSED", sum(1 for x in _srv._st if x))


if __name__ == "__main__":
    asyncio.run(main(dict(a.split("=", 1) for a in sys.argv[1:])))
