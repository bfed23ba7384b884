"""firmware/led.py, the status LED: the patterns (pure, CPython), and the task
under MicroPython's asyncio driving a pin that records every level it is
given, while the controller's state changes under it."""
import json

import mp
import led


def test_patterns():
    # 20 ticks of 100 ms: one period of the slow blink
    assert [led.level(led.SLOW, t) for t in range(20)] == [1] * 10 + [0] * 10
    assert [led.level(led.FAST, t) for t in range(20)] == [1, 0] * 10
    assert [led.level(led.ON, t) for t in range(20)] == [1] * 20
    assert [led.level(led.OFF, t) for t in range(20)] == [0] * 20


SCRIPT = r'''
import json
import time

import asyncio
import led


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


class App:
    def __init__(self):
        self.params = {"cycle_time": 1000}
        self.control = Ctl()
        self.devices = [Dev(), Dev()]
        self.net = Net()


def states():
    """state() for each situation, at once (no task)."""
    app = App()
    l = led.Led(Pin(), app)
    now = time.ticks_ms()
    out = {"healthy": l.state(now)}
    app.devices[1].stats.err = True
    out["bus_fault"] = l.state(now)
    app.devices[1].stats.err = False
    app.control.lb.failsafe = True
    out["failsafe"] = l.state(now)
    app.control.lb.failsafe = False
    out["stalled"] = l.state(time.ticks_add(now, 12001))  # 2 x cycle_time + 10 s
    out["not_stalled"] = l.state(time.ticks_add(now, 11999))
    app.net.ap = Ap(True)
    out["ap_open"] = l.state(now)
    app.devices[0].stats.err = True
    out["ap_open_and_fault"] = l.state(now)
    app.devices[0].stats.err = False
    app.net.ap = Ap(False)
    out["ap_closed"] = l.state(now)
    del app.net
    out["no_wifi"] = l.state(now)
    app.control.cycles = 0
    app.control.lb.failsafe = True  # as a new balancer is
    out["no_cycle_yet"] = l.state(now)
    app.control = None
    out["not_started"] = l.state(now)
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
    app.devices[0].stats.err = True  # a bus fault
    await asyncio.sleep_ms(1000)
    app.devices[0].stats.err = False
    app.net.ap = Ap(True)  # the setup access point opens
    await asyncio.sleep_ms(1000)
    app.net.ap.on = False  # and closes: healthy again
    await asyncio.sleep_ms(950)
    task.cancel()
    res["levels"] = pin.levels
    print("RESULT " + json.dumps(res))


asyncio.run(main())
'''


def test_led_task(tmp_path):
    p = tmp_path / "led_run.py"
    p.write_text(SCRIPT)
    r = mp.run([str(p)], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][0][7:])
    assert res["states"] == {"healthy": led.SLOW, "bus_fault": led.FAST, "failsafe": led.FAST,
                             "stalled": led.FAST, "not_stalled": led.SLOW, "ap_open": led.ON,
                             "ap_open_and_fault": led.FAST, "ap_closed": led.SLOW, "no_wifi": led.SLOW,
                             "no_cycle_yet": led.OFF, "not_started": led.OFF}
    lv = res["levels"]
    # one level every 100 ms: healthy (first half of the slow blink), fault (5 Hz), access point (on),
    # healthy again (tick 30 = the second half of the slow period: off)
    want = [1] * 10 + [1, 0] * 5 + [1] * 10 + [0] * 5
    assert 34 <= len(lv) <= 36, lv
    assert lv[:34] == want[:34], lv
