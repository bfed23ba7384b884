"""What runs next to the controller on a real board (one with pbboard.WIFI):
the WiFi (wifi.py, credentials from /wifi.json), the status LED (led.py) and
the mark that this start came up (safemode.good()). pbctl.start calls
start() once the controller runs; the host imports none of this.
"""
import sys
import time

import asyncio
from micropython import const

_STALL_MS = const(90000)  # as watchdog.MAX_AGE_MS: longer without a cycle is a hung loop


def start(app):
    from pbctl.board import wifi

    board = app.board
    n = app.net = wifi.Net(wifi.load_creds(board.FLASH))
    asyncio.create_task(n.run())
    pin = board.led()
    if pin is not None:
        from pbctl.board import led

        asyncio.create_task(led.Led(pin, app).run())
    asyncio.create_task(mark_good(app.control))


async def mark_good(control, good_ms=None, poll_ms=1000):
    """Once the control loop has run for safemode.GOOD_MS (and is not hung),
    this start counts as good: the failed-start count goes back to none."""
    from pbctl.board import safemode

    t0 = time.ticks_ms()
    good_ms = safemode.GOOD_MS if good_ms is None else good_ms
    while True:
        await asyncio.sleep_ms(poll_ms)
        now = time.ticks_ms()
        if (time.ticks_diff(now, t0) >= good_ms and control.cycles
                and time.ticks_diff(now, control.last_ok_ms) < _STALL_MS):
            safemode.good()
            del sys.modules["pbctl.board.safemode"]  # needed no more
            delattr(sys.modules["pbctl.board"], "safemode")
            if not getattr(sys.modules.get("pbboard"), "WIFI", False):
                # the host (start.py: a tentative version): this module goes too
                del sys.modules["pbctl.board.onboard"]
                delattr(sys.modules["pbctl.board"], "onboard")
            return
