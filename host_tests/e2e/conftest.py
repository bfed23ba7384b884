"""End-to-end fixtures: the firmware under MicroPython (.mpy modules, the heap
of simrun.HEAP) against the pymodbus Power Brain simulator, on free ports."""
import time

import pytest

from simrun import ADMIN, Sim


def running(**kw):
    """A started Sim(**kw); stopped at the end, when its log must be clean."""
    s = Sim(**kw)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        assert_clean_log(s)


@pytest.fixture(scope="module")
def sim():
    yield from running()


def assert_clean_log(sim):
    """The firmware printed no MemoryError and no traceback; returns its output."""
    log = "".join(sim.fw_lines)
    assert "MemoryError" not in log, log
    assert "Traceback" not in log.replace("KeyboardInterrupt", ""), log
    return log


def slow_polling(sim):
    """Poll every 60 s so that only the test's own requests reach the bus."""
    st, _ = sim.request("cmd=set_params", ADMIN, b'{"cycle_time": 60000}', "POST",
                        {"Content-Type": "application/json"})[:2]
    assert st == 200
    time.sleep(1.0)  # let the cycle that the change kicked off finish
