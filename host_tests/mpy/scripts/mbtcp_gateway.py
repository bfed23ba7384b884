# The Modbus TCP gateway's handler (firmware/pbctl/integrations/mbtcp.py)
# under MicroPython, against a fake app whose control task records requests:
# bus reads that hang (exception 6 after 2 s), fail (11) or are refused (the
# device's code); writes that become requests and wait for their pass; a
# full queue (6); mode 1 (1); a pass that never comes (11); stop() withdraws;
# the server's admit hook (a connection refused while the heap is short).
# Prints one line per case, "<name> <result>", then "DONE"; the driver
# (host_tests/mpy/test_mbtcp_gateway_handler.py) compares them exactly.
import sys
import time

import asyncio

from pblib import rtu

from pbctl import devices
from pbctl.integrations import mbtcp as gw


class Board:
    HTTP_HOST = "127.0.0.1"


class Control:
    def __init__(self):
        self.reqs = []
        self.free = 16
        self.settles = True
        self.bus = None  # what rtu_read does: "hang", "timeout", an exception code, or None (data)

    def room(self):
        return self.free

    def _req(self, *r):
        self.reqs.append(r)
        return len(self.reqs)

    def cap(self, dev_id, source, ma):
        return self._req("cap", dev_id, source, ma)

    def enable(self, dev_id, source, on):
        return self._req("enable", dev_id, source, on)

    def phase_wish(self, dev_id, n):
        return self._req("wish", dev_id, n)

    def disconnect(self, dev_id, s):
        return self._req("disconnect", dev_id, s)

    def release(self, source):
        return self._req("release", source)

    async def settle(self, seq, timeout_ms=5000):
        await asyncio.sleep_ms(1)
        return self.settles

    async def rtu_read(self, slave, addr, count):
        b = self.bus
        if b == "hang":
            await asyncio.sleep_ms(5000)
        if b == "timeout":
            raise rtu.ModbusError(rtu.TIMEOUT)
        if b:
            raise rtu.ModbusError(rtu.EXCEPTION, b)
        await asyncio.sleep_ms(1)
        return memoryview(bytes(range(slave, slave + 2 * count)))


class App:
    def __init__(self):
        self.board = Board()
        self.control = Control()
        self.site = devices.Site({}, [], "", {})
        self.ok = True

    def admit(self):
        return self.ok


def cfg(slave):
    return {"address": "rtu:%d" % slave, "id": 1, "device_enabled": 1, "soft_meter": 0}


async def main():
    app = App()
    e = devices.new_device("evse_powerbrain", "E1", cfg(1), 0)
    m = devices.new_device("meter_powerbrain", "M1", cfg(2), 0)
    app.site.devices = [e, m]
    port = int(sys.argv[1])
    g = gw.start(app, (2, port))
    ctl = app.control
    out = bytearray(8)
    mv = memoryview(out)

    async def h(name, unit, fn, addr, count, data=None):
        t = time.ticks_ms()
        r = await g.handler(unit, fn, addr, count, data, mv[: 2 * count] if fn == 3 else None)
        ms = time.ticks_diff(time.ticks_ms(), t)
        extra = " " + bytes(mv[: 2 * count]).hex() if fn == 3 and not r else ""
        print(name, r, ">=2s" if ms >= 2000 else "", str(ctl.reqs) + extra)
        ctl.reqs = []

    await h("no_device", 9, 3, 8092, 1)
    await h("not_read_yet", 1, 3, 8092, 1)
    await h("bus_read", 1, 3, 8096, 2)
    ctl.bus = 2
    await h("bus_exception", 1, 3, 8096, 2)
    ctl.bus = "timeout"
    await h("bus_timeout", 1, 3, 8096, 2)
    ctl.bus = "hang"
    await h("bus_busy", 1, 3, 8096, 2)
    ctl.bus = None
    await h("cap", 1, 6, 8093, 1, b"\x00\x50")
    await h("cap_0", 1, 6, 8093, 1, b"\x00\x00")
    await h("fn16", 1, 16, 8093, 2, b"\x00\x3c\x00\x00")
    await h("phases", 1, 16, 8086, 2, b"\x00\x05\x00\x01")
    await h("three", 1, 6, 8087, 1, b"\x00\x00")
    await h("bad_enable", 1, 6, 8094, 1, b"\x00\x02")
    await h("other_reg", 1, 16, 8093, 3, b"\x00\x3c\x00\x00\x00\x00")
    await h("meter", 2, 6, 8093, 1, b"\x00\x50")
    ctl.free = 1
    await h("queue_full", 1, 16, 8093, 2, b"\x00\x3c\x00\x01")
    ctl.free = 16
    ctl.settles = False
    await h("no_pass", 1, 6, 8094, 1, b"\x00\x01")
    ctl.settles = True
    g.mode = 1
    await h("mode_1", 1, 6, 8093, 1, b"\x00\x50")
    await asyncio.sleep_ms(50)  # (listening)
    st = g.status()
    print("status", st["mode"], st["port"], repr(st["error"]), st["requests"], st["cached"], st["bus_reads"],
          st["writes"])
    # the admit hook: a connection while the heap is short is closed at once
    app.ok = False
    import socket

    s = socket.socket()
    s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    await asyncio.sleep_ms(100)
    print("shed", g.srv.shed, g.status()["clients"])
    s.close()
    g.stop()
    await asyncio.sleep_ms(100)
    print("stop", ctl.reqs, g.srv._lsn)
    print("DONE")


asyncio.run(main())
