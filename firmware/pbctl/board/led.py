"""The status LED (board.led()): the controller's state at a glance.

    off          not started (before the control loop's first cycle, or stopped)
    on           safe mode (safemode.py), or the setup access point is open
                 (net.py: join it, see README)
    slow blink   healthy: 1 s on, 1 s off
    fast blink   trouble, 5 Hz: a device's last bus transaction failed, the
                 balancer is in failsafe (grid meter lost), or the control
                 loop has not finished a cycle for 2 cycle times + 10 s

Trouble wins over the access point: on the wall, a controller that cannot
see its meter matters more than one waiting for setup. The state is looked
at once a second; the task wakes every 100 ms and allocates nothing.
"""
import time

import asyncio
from micropython import const

OFF = const(0)
ON = const(1)
SLOW = const(2)
FAST = const(3)
_TICK_MS = const(100)
_TICKS = const(20)  # one slow period: 10 ticks on, 10 off


class Led:
    def __init__(self, pin, app):
        self.pin = pin  # machine.Pin (anything with value(v))
        self.app = app  # control, devices, params; net while WiFi runs
        self.mode = OFF

    def state(self, now):
        """The pattern for the controller's state at ticks_ms now."""
        app = self.app
        ctl = app.control
        if not ctl.cycles:
            return OFF  # before the first cycle nothing is known (the balancer starts in failsafe)
        if time.ticks_diff(now, ctl.last_ok_ms) > 2 * app.site.params["cycle_time"] + 10000 or ctl.lb.failsafe:
            return FAST
        for d in app.site.devices:
            if d.stats.err:
                return FAST
        n = app.net
        if n is not None and n.ap is not None and n.ap.active():
            return ON
        return SLOW

    async def run(self):
        tick = 0
        while True:
            if tick % 10 == 0:
                self.mode = self.state(time.ticks_ms())
            self.pin.value(level(self.mode, tick))
            tick = (tick + 1) % _TICKS
            await asyncio.sleep_ms(_TICK_MS)


def level(mode, tick):
    """The LED's level (0/1) at tick (0.._TICKS-1, 100 ms each) of a pattern."""
    if mode == SLOW:
        return 1 if tick < _TICKS // 2 else 0
    if mode == FAST:
        return 1 - (tick & 1)
    return 1 if mode == ON else 0
