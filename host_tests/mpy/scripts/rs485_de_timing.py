# rtu.Master's RS-485 driver-enable timing under MicroPython, with a UART
# that behaves like the ESP32's and a pin that records every value() call.
# Usage: micropython rs485_de_timing.py BAUD; prints RESULT <json>: each
# transaction's log. Run by host_tests/mpy/test_esp32_rs485.py.
import io
import json
import sys
import time

import asyncio
from pblib import rtu

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
