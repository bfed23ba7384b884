# The status LED (pbctl/board/led.py) under MicroPython: state() in each
# situation of a stand-in controller, then the task driving a pin that records
# every level while the controller's state changes under it. Prints
# RESULT <json>. Run by host_tests/board/test_esp32_led.py.
import json
import time

import asyncio
from pbctl.board import led


class Pin:
    def __init__(self):
        self.levels = []

    def value(self, v):
        self.levels.append(v)


class Stats:
    err = False


class Dev:
    def __init__(self):
        self.stats = Stats()


class Lb:
    failsafe = False


class Ctl:
    def __init__(self):
        self.cycles = 1
        self.last_ok_ms = time.ticks_ms()
        self.lb = Lb()


class Ap:
    def __init__(self, on):
        self.on = on

    def active(self):
        return self.on


class Net:
    ap = None


class Site:
    def __init__(self):
        self.params = {"cycle_time": 1000}
        self.devices = [Dev(), Dev()]


class App:
    """pbctl.app.App as the LED sees it: the control task, the site, the WiFi."""

    def __init__(self):
        self.site = Site()
        self.control = Ctl()
        self.net = Net()


def states():
    """state() for each situation, at once (no task)."""
    app = App()
    l = led.Led(Pin(), app)
    now = time.ticks_ms()
    out = {"healthy": l.state(now)}
    app.site.devices[1].stats.err = True
    out["bus_fault"] = l.state(now)
    app.site.devices[1].stats.err = False
    app.control.lb.failsafe = True
    out["failsafe"] = l.state(now)
    app.control.lb.failsafe = False
    out["stalled"] = l.state(time.ticks_add(now, 12001))  # 2 x cycle_time + 10 s
    out["not_stalled"] = l.state(time.ticks_add(now, 11999))
    app.net.ap = Ap(True)
    out["ap_open"] = l.state(now)
    app.site.devices[0].stats.err = True
    out["ap_open_and_fault"] = l.state(now)
    app.site.devices[0].stats.err = False
    app.net.ap = Ap(False)
    out["ap_closed"] = l.state(now)
    app.net = None  # a board without WiFi
    out["no_wifi"] = l.state(now)
    app.control.cycles = 0
    app.control.lb.failsafe = True  # as a new balancer is
    out["no_cycle_yet"] = l.state(now)
    return out


async def alive(ctl):
    while True:
        ctl.last_ok_ms = time.ticks_ms()
        await asyncio.sleep_ms(50)


async def main():
    res = {"states": states()}
    app = App()
    pin = Pin()
    asyncio.create_task(alive(app.control))
    task = asyncio.create_task(led.Led(pin, app).run())
    # the state is looked at on ticks 0, 10, 20, 30 (0, 1, 2, 3 s): change it half-way between
    await asyncio.sleep_ms(500)
    app.site.devices[0].stats.err = True  # a bus fault
    await asyncio.sleep_ms(1000)
    app.site.devices[0].stats.err = False
    app.net.ap = Ap(True)  # the setup access point opens
    await asyncio.sleep_ms(1000)
    app.net.ap.on = False  # and closes: healthy again
    await asyncio.sleep_ms(950)
    task.cancel()
    res["levels"] = pin.levels
    print("RESULT " + json.dumps(res))


asyncio.run(main())
