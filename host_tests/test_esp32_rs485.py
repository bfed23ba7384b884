"""RS-485 driver-enable timing of rtu.Master, under MicroPython with a fake UART.

On the board the MAX485's DE and /RE share GPIO4: DE high drives the bus and
mutes our receiver. It must go high before the first byte is written, and go
low only after the UART reports the last stop bit sent (`UART.txdone()`,
not a fixed sleep) — and before the reply comes, or its first bytes are lost.

The script below gives rtu.Master a UART that behaves like the ESP32's:
write() queues bytes that take 10 bit times each on the wire, txdone() is
true only once they all have, the reply arrives a turnaround after that and
is readable (and pollable: an io.IOBase stream, which asyncio polls like
machine.UART) from then on. The pin records every value() call. The
transitions are checked here, in CPython.
"""
import json
import os

import pytest

import mp

SCRIPT = r'''
import io
import json
import sys
import time

import asyncio
import rtu

BAUD = int(sys.argv[1])
CHAR_US = 10 * 1000000 // BAUD  # 8N1: 10 bits a character
TURN_US = 3 * CHAR_US  # slave turnaround before its reply starts
T0 = time.ticks_us()
log = []


def now():
    return time.ticks_diff(time.ticks_us(), T0)


class Pin:
    def __init__(self):
        self.v = 0

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
        log.append([now(), "de", v])


class Uart(io.IOBase):
    """ESP32-like UART: TX takes wire time, txdone() after the last stop bit."""

    def __init__(self, chunk=256, answer=True):
        self.chunk = chunk  # most bytes one write() takes (a full TX FIFO takes fewer)
        self.answer = answer
        self.req = b""
        self.wire_end = 0  # when the last written byte has left the wire
        self.rx = b""
        self.rx_at = 0
        self.done_seen = True

    def write(self, buf):
        t = now()
        k = min(len(buf), self.chunk)
        self.wire_end = max(t, self.wire_end) + k * CHAR_US
        self.done_seen = False
        self.req += bytes(buf[:k])
        log.append([t, "write", k, self.wire_end])
        r = self.req
        if len(r) >= 8 and len(r) == (9 + r[6] if r[1] == 16 else 8):
            if self.answer:
                self.rx = reply(r)
                self.rx_at = self.wire_end + TURN_US
            self.req = b""
        return k

    def txdone(self):
        t = now()
        done = t >= self.wire_end
        if done and not self.done_seen:
            self.done_seen = True
            log.append([t, "txdone", self.wire_end])
        return done

    def ioctl(self, req, arg):
        if req == 3:  # MP_STREAM_POLL
            r = arg & 4  # writable
            if arg & 1 and self.rx and now() >= self.rx_at:
                r |= 1
            return r
        return -1  # no file descriptor: poll through ioctl

    def readinto(self, buf):
        t = now()
        if not self.rx or t < self.rx_at:
            return None
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        log.append([t, "read", n])
        return n


def reply(req):
    if req[1] == 3:
        count = req[5]
        body = bytes([req[0], 3, 2 * count]) + bytes(range(2 * count))
    else:  # 06 and 16 echo address and value/count
        body = bytes(req[:6])
    c = rtu.crc16(body)
    return body + bytes([c & 0xFF, c >> 8])


async def main():
    out = []
    for name, chunk, answer, op in (
        ("read10", 256, True, "read"),
        ("write1_chunked", 3, True, "write1"),
        ("writen_chunked", 5, True, "writen"),
        ("no_reply", 256, False, "read"),
    ):
        del log[:]
        pin = Pin()
        u = Uart(chunk, answer)
        m = rtu.Master(u, BAUD, pin, timeout_ms=30, retries=0)
        res = "ok"
        try:
            if op == "read":
                d = await m.read(7, 8002, 10)
                res = "ok" if bytes(d) == bytes(range(20)) else "bad data"
            elif op == "write1":
                await m.write1(7, 8093, 160)
            else:
                await m.writen(7, 8093, b"\x00\xa0\x00\x01")
        except rtu.ModbusError as e:
            res = str(e)
        out.append({"name": name, "result": res, "log": list(log)})
    print("RESULT " + json.dumps(out))


asyncio.run(main())
'''


def run_script(tmp, baud, extra_dirs=()):
    path = tmp / "de_timing.py"
    path.write_text(SCRIPT)
    r = mp.run([str(path), str(baud)], extra_dirs=extra_dirs, timeout=60)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, text
    return {t["name"]: t for t in json.loads(line[0][7:])}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rs485")
    return {baud: run_script(tmp, baud) for baud in (9600, 115200)}


def de_order(t):
    """Check one transaction's log; returns (first DE-low time, wire end)."""
    log = t["log"]
    kinds = [e[1] for e in log]
    writes = [i for i, k in enumerate(kinds) if k == "write"]
    assert writes, log
    de = [(i, e[2]) for i, e in enumerate(log) if e[1] == "de"]
    # DE high first, before the first byte is written
    assert de and de[0][1] == 1 and de[0][0] < writes[0], log
    assert log[de[0][0]][0] <= log[writes[0]][0]
    # it stays high while the frame is written
    lows = [i for i, v in de if v == 0]
    assert lows and lows[0] > writes[-1], log
    low = lows[0]
    wire_end = log[writes[-1]][3]
    # released only after txdone() said the last stop bit is out
    done = [i for i, k in enumerate(kinds) if k == "txdone"]
    assert done and writes[-1] < done[0] < low, "DE released before txdone() was true: %r" % log
    assert log[low][0] >= wire_end, "DE released %d us before the last stop bit" % (wire_end - log[low][0])
    # never high again in this transaction
    assert all(v == 0 for i, v in de if i > low), log
    # and released before the reply is read
    reads = [i for i, k in enumerate(kinds) if k == "read"]
    assert all(i > low for i in reads), log
    return log[low][0], wire_end, reads


@pytest.mark.parametrize("baud", [9600, 115200])
@pytest.mark.parametrize("name", ["read10", "write1_chunked", "writen_chunked"])
def test_de_around_each_frame(runs, baud, name):
    t = runs[baud][name]
    assert t["result"] == "ok", t
    low, wire_end, reads = de_order(t)
    assert reads  # the reply was read, after DE went low
    # and DE was not held long past the frame: the reply comes 3 chars later
    char_us = 10 * 1000000 // baud
    assert t["log"][reads[0]][0] >= wire_end + 3 * char_us
    # the chunked writes really were several write() calls under one DE high
    n_writes = sum(1 for e in t["log"] if e[1] == "write")
    assert n_writes == (1 if name == "read10" else 3 if name == "write1_chunked" else 3)


@pytest.mark.parametrize("baud", [9600, 115200])
def test_de_released_without_reply(runs, baud):
    t = runs[baud]["no_reply"]
    assert t["result"] == "modbus timeout", t
    de_order(t)
    assert t["log"][-1][1:] == ["de", 0]  # and low at the end


def test_a_fixed_sleep_is_caught(tmp_path):
    """The checks are not vacuous: a master that does not wait for txdone()
    (a fixed sleep too short for the frame) fails them."""
    src = open(os.path.join(mp.ROOT, "lib", "rtu.py")).read()
    wait = "while not self._txdone():"
    assert wait in src, "lib/rtu.py changed: update this test"
    (tmp_path / "rtu.py").write_text(src.replace(wait, "while False:"))
    t = run_script(tmp_path, 9600, extra_dirs=(str(tmp_path),))["read10"]
    with pytest.raises(AssertionError, match="before the last stop bit|txdone"):
        de_order(t)
