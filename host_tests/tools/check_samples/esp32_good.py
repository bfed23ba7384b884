import gc
import json
import os
import sys
import time

import asyncio
import pbboard
import machine
import network
import ntptime
from micropython import const

_X = const(3)


async def main():
    t = time.ticks_ms()
    await asyncio.sleep_ms(10)
    await asyncio.wait_for_ms(asyncio.sleep_ms(1), 100)
    u = pbboard.uart()
    u.write(b"\x01")
    print(u.txdone(), time.ticks_diff(time.ticks_ms(), t), gc.mem_free(), os.urandom(4))
    w = machine.WDT(timeout=10000)
    w.feed()
    s = network.WLAN(network.STA_IF)
    s.active(True)
    s.connect("ssid", "key")
    ntptime.settime()
    print(json.dumps({}, separators=(",", ":")), pbboard.DE, time.gmtime()[:6])
    try:
        pass
    except Exception as e:
        sys.print_exception(e)
