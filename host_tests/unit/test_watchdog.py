"""The watchdog feeds machine.WDT only while the control loop completes cycles
(CPython and MicroPython; the asyncio task itself: host_tests/board/test_esp32_watchdog.py)."""
import time

from pbctl.board import watchdog


class Wdt:
    def __init__(self):
        self.fed = []

    def feed(self):
        self.fed.append(1)


class Loop:
    """control.Control as the watchdog sees it."""

    def __init__(self, t):
        self.last_ok_ms = t


def mk(t=0, max_age_ms=5000):
    w = Wdt()
    c = Loop(t)
    return watchdog.Watchdog(w, c, max_age_ms), w, c


def test_fed_while_cycles_complete():
    d, w, c = mk()
    for t in range(0, 60000, 1000):
        c.last_ok_ms = t - 300  # the loop finished a cycle 300 ms ago
        assert d.check(t)
    assert len(w.fed) == 60 and d.feeds == 60 and d.starved == 0


def test_stalled_loop_is_not_fed():
    d, w, c = mk(t=1000, max_age_ms=5000)
    fed = [t for t in range(1000, 20000, 1000) if d.check(t)]
    # last cycle at 1000: healthy up to 5999 ms, never after
    assert fed == [1000, 2000, 3000, 4000, 5000]
    assert len(w.fed) == 5 and d.starved == 14
    assert not d.healthy(6000) and d.healthy(5999)


def test_feeding_resumes_with_the_loop():
    d, w, c = mk(t=0, max_age_ms=2000)
    assert not d.check(3000)
    c.last_ok_ms = 3100
    assert d.check(4000) and len(w.fed) == 1


def test_ticks_wrap():
    last = (1 << 30) - 700  # ticks_ms wraps at 2**30 on the ESP32
    d, w, c = mk(t=last, max_age_ms=5000)
    assert d.healthy(last)
    assert d.healthy(1000)  # 1700 ms after the last cycle, across the wrap
    assert d.healthy(4299)
    assert not d.healthy(4300)


def test_last_cycle_in_the_future_is_not_healthy():
    # a last_ok_ms ahead of now means a broken clock or value: no feed
    d, w, c = mk(t=10000)
    assert not d.healthy(9999)
    assert not d.check(5000) and not w.fed


def test_same_age_as_ticks_diff():
    if not hasattr(time, "ticks_diff"):  # CPython: no ticks (MicroPython runs this file too)
        return
    d, w, c = mk(max_age_ms=5000)
    now = time.ticks_ms()
    for age in (0, 1, 4999, 5000, 100000, -1, -5000):
        c.last_ok_ms = time.ticks_add(now, -age)
        assert d.healthy(now) == (0 <= time.ticks_diff(now, c.last_ok_ms) < 5000), age
