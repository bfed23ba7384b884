"""The watchdog task under MicroPython's asyncio: a control loop that completes
cycles keeps it fed; once the loop hangs (an await that never returns) the
feeding stops, so machine.WDT would reset the board (mpy/scripts/wdt_stall.py).
(The pure logic: host_tests/unit/test_watchdog.py.)"""
import json

import mp


def test_stalled_loop_starves_the_wdt():
    r = mp.run([mp.script("wdt_stall.py")], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][0][7:])
    fed, last = res["fed"], res["last"]
    assert 280 <= last <= 400, res  # the loop ran ~300 ms, then hung
    assert len(fed) >= 10 and fed[0] < 50, res  # fed every 20 ms while it ran
    assert fed[-1] <= last + 150, res  # and never once the last cycle was 150 ms old
    assert res["starved"] >= 15, res  # it kept checking: ~(900 - 450) / 20 refusals
    assert res["feeds"] == len(fed)
