# The watchdog task (pbctl/board/watchdog.py) under MicroPython's asyncio, fed
# by a stand-in control loop that completes a cycle every 20 ms for 300 ms,
# then hangs. Prints RESULT <json>: when the WDT was fed, the loop's last
# cycle, the task's counters. Run by host_tests/board/test_esp32_watchdog.py.
import json
import time

import asyncio
from pbctl.board import watchdog

T0 = time.ticks_ms()


def now():
    return time.ticks_diff(time.ticks_ms(), T0)


class Wdt:
    def __init__(self):
        self.fed = []

    def feed(self):
        self.fed.append(now())


class Loop:
    """Completes a cycle every 20 ms until run_ms, then hangs on the bus."""

    def __init__(self):
        self.last_ok_ms = time.ticks_ms()
        self.last = 0

    async def run(self, run_ms):
        while now() < run_ms:
            await asyncio.sleep_ms(20)
            self.last_ok_ms = time.ticks_ms()
            self.last = now()
        await asyncio.Event().wait()  # a reply that never comes


async def main():
    w = Wdt()
    loop = Loop()
    d = watchdog.Watchdog(w, loop, max_age_ms=150, period_ms=20)
    asyncio.create_task(loop.run(300))
    asyncio.create_task(d.run())
    await asyncio.sleep_ms(900)
    print("RESULT " + json.dumps({"fed": w.fed, "last": loop.last, "feeds": d.feeds, "starved": d.starved}))


asyncio.run(main())
