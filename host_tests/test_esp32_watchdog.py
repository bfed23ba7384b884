"""The watchdog task under MicroPython's asyncio: a control loop that completes
cycles keeps it fed; once the loop hangs (an await that never returns) the
feeding stops, so machine.WDT would reset the board. (The pure logic:
host_tests/unit/test_watchdog.py.)"""
import json

import mp

SCRIPT = r'''
import json
import time

import asyncio
import watchdog

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
'''


def test_stalled_loop_starves_the_wdt(tmp_path):
    path = tmp_path / "wdt_stall.py"
    path.write_text(SCRIPT)
    r = mp.run([str(path)], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][0][7:])
    fed, last = res["fed"], res["last"]
    assert 280 <= last <= 400, res  # the loop ran ~300 ms, then hung
    assert len(fed) >= 10 and fed[0] < 50, res  # fed every 20 ms while it ran
    assert fed[-1] <= last + 150, res  # and never once the last cycle was 150 ms old
    assert res["starved"] >= 15, res  # it kept checking: ~(900 - 450) / 20 refusals
    assert res["feeds"] == len(fed)
