"""pbctl/board/led.py, the status LED: the patterns (pure, CPython), and the
task under MicroPython's asyncio driving a pin that records every level it is
given, while the controller's state changes under it (mpy/scripts/led_task.py)."""
import json

import mp
from pbctl.board import led


def test_patterns():
    # 20 ticks of 100 ms: one period of the slow blink
    assert [led.level(led.SLOW, t) for t in range(20)] == [1] * 10 + [0] * 10
    assert [led.level(led.FAST, t) for t in range(20)] == [1, 0] * 10
    assert [led.level(led.ON, t) for t in range(20)] == [1] * 20
    assert [led.level(led.OFF, t) for t in range(20)] == [0] * 20


def test_led_task():
    r = mp.run([mp.script("led_task.py")], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][0][7:])
    assert res["states"] == {"healthy": led.SLOW, "bus_fault": led.FAST, "failsafe": led.FAST,
                             "stalled": led.FAST, "not_stalled": led.SLOW, "ap_open": led.ON,
                             "ap_open_and_fault": led.FAST, "ap_closed": led.SLOW, "no_wifi": led.SLOW,
                             "no_cycle_yet": led.OFF}
    lv = res["levels"]
    # one level every 100 ms: healthy (first half of the slow blink), fault (5 Hz), access point (on),
    # healthy again (tick 30 = the second half of the slow period: off)
    want = [1] * 10 + [1, 0] * 5 + [1] * 10 + [0] * 5
    assert 34 <= len(lv) <= 36, lv
    assert lv[:34] == want[:34], lv
