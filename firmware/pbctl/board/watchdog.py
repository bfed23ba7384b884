"""The hardware watchdog, fed only while the control loop is healthy.

machine.WDT resets the board unless it is fed in time. Fed from a timer or
from a task of its own, it would keep a board alive whose control loop hangs
(a bus await that never returns, a dead task); here it is fed only while the
control loop has finished a cycle within max_age_ms (control.Control sets
last_ok_ms at the end of every cycle). Anything that blocks the event loop
starves this task as well, so that resets the board too.

max_age_ms must exceed the longest cycle: `cycle_time` (up to 60 s) plus
the bus time of one cycle (every device timing out, with its retry).
Once started, the ESP32's WDT cannot be stopped, not even by Ctrl-C at the
REPL: start it only in normal operation, never in safe mode.

Wiring into the start-up (pbctl.py, not done yet):
    import watchdog
    asyncio.create_task(watchdog.start(app.control).run())
"""
import time

import asyncio
from micropython import const

_MASK = const(0x3FFFFFFF)  # time.ticks_ms() wraps at 2**30 on the ESP32 (a small int there)
FEED_MS = const(1000)
MAX_AGE_MS = const(90000)  # cycle_time's maximum (60 s) + 30 s of bus time
WDT_MS = const(10000)  # the board resets this long after the last feed


class Watchdog:
    def __init__(self, wdt, control, max_age_ms=MAX_AGE_MS, period_ms=FEED_MS):
        self.wdt = wdt  # machine.WDT (anything with feed())
        self.control = control  # anything with last_ok_ms
        self.max_age_ms = max_age_ms  # < 2**29
        self.period_ms = period_ms
        self.feeds = 0
        self.starved = 0  # checks that found the loop stalled

    def healthy(self, now_ms):
        """Has the control loop completed a cycle within max_age_ms of now_ms?

        now_ms and control.last_ok_ms are ticks_ms values. The age is
        time.ticks_diff's, written out so that CPython can test it, and kept
        in [0, 2**30): a last_ok_ms "after" now_ms counts as very old.
        """
        return ((now_ms - self.control.last_ok_ms) & _MASK) < self.max_age_ms

    def check(self, now_ms):
        """Feed the WDT if the loop is healthy; returns whether it was fed."""
        if self.healthy(now_ms):
            self.wdt.feed()
            self.feeds += 1
            return True
        self.starved += 1
        return False

    async def run(self):
        while True:
            self.check(time.ticks_ms())
            await asyncio.sleep_ms(self.period_ms)


def start(control, timeout_ms=WDT_MS, max_age_ms=MAX_AGE_MS):
    """Start the ESP32's hardware watchdog (irrevocably) and return its feeder."""
    from machine import WDT

    return Watchdog(WDT(timeout=timeout_ms), control, max_age_ms)
