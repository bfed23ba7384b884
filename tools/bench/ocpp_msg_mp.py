# OCPP charge point: heap per message, under the MicroPython unix port on the .mpy build
# (tools/bench/ocpp_bench.py runs it). The real ChargePoint (pbctl.integrations.ocpp) with 8 EVSEs and
# a transaction each; its Rpc's call() replaced by one that serialises the message like ocppj does
# (json.dumps) and answers {}. Each figure: bytes allocated (gc.mem_alloc, the collector off) by one
# operation. Prints one JSON line.
import gc
import json
import os

import asyncio

from pbctl import config, devices

FLASH = "/tmp/pbctl-ocpp-bench-%d" % int.from_bytes(os.urandom(3), "big")
try:
    os.mkdir(FLASH)
except OSError:
    pass


class Board:
    FLASH = FLASH


class Ctl:
    def __init__(self):
        self.n = 0

    def _r(self, *a):
        self.n += 1
        return self.n

    enable = cap = site_cap = authorize = release = _r

    async def settle(self, seq, t=0):
        return True


class App:
    VERSION = "bench"
    serial = "0000-0000-0000"

    def __init__(self, site):
        self.site = site
        self.board = Board()
        self.control = Ctl()


async def fake_call(action, payload):
    s = json.dumps([2, "123456", action, payload], separators=(",", ":"))
    return {"transactionId": 1, "status": "Accepted"} if len(s) else {}


def alloc(f):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    asyncio.run(f())
    b = gc.mem_alloc()
    gc.enable()
    return b - a


def main():
    gc.collect()
    free0 = gc.mem_free()
    from pblib import ws
    from pbctl.integrations import ocpp

    gc.collect()
    free1 = gc.mem_free()
    like = None
    evs = []
    for i in range(8):
        c = config.defaults(config.EVSE, like)
        like = c
        e = devices.new_device("evse_powerbrain", "E%d" % (i + 1), c, 0)
        e.state = 3
        e.energy = 123456 + i
        e.power = 11040
        e.cur[0] = e.cur[1] = e.cur[2] = 16000
        e.limit = 16000
        evs.append(e)
    site = devices.Site(config.defaults(config.PARAMS), evs, "", {})
    app = App(site)
    gc.collect()
    free2 = gc.mem_free()
    cp = ocpp.ChargePoint(app, "ws://127.0.0.1:1/pb1", "", ws.Client(max_msg=2048, timeout_ms=10000, ping_ms=60000,
                                                                     tx_size=256))
    gc.collect()
    free3 = gc.mem_free()
    cp.rpc.call = fake_call
    cp.tick()  # 8 transactions open (journaled)

    async def journal():
        await cp._journal()

    out = {"import_ocpp_ws_ocppj_B": free0 - free1, "charge_point_with_buffers_B": free2 - free3}
    out["journal_8_starts_B_each"] = alloc(journal) // 8

    async def mv():
        await cp._meter_values(False)

    out["meter_values_B_each"] = alloc(mv) // 8

    async def st():
        await cp._status_call(1, "Charging")

    out["status_notification_B"] = alloc(st)

    async def hb():
        await cp.rpc.call("Heartbeat", {})

    out["heartbeat_B"] = alloc(hb)
    frame = b'[2,"1234","GetConfiguration",{"key":["HeartbeatInterval"]}]'

    async def inc():
        from pblib import ocppj

        m = ocppj.decode(frame)
        r = await cp._handle(m[2], m[3])
        json.dumps([3, m[1], r])

    out["incoming_GetConfiguration_B"] = alloc(inc)
    out["incoming_GetConfiguration_again_B"] = alloc(inc)
    gc.collect()
    out["ocpp_calls_dropped"] = "pbctl.integrations.ocpp_calls" not in __import__("sys").modules
    for n in ("ocpp.json", "ocpp.tmp", "ocpp.bak"):
        try:
            os.remove(FLASH + "/" + n)
        except OSError:
            pass
    os.rmdir(FLASH)
    print(json.dumps(out))


main()
