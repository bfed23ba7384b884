"""The shared unit suites in host_tests/unit/, run again under MicroPython.

Each file there runs under CPython (pytest collects it directly) and here
under the MicroPython unix port with an ESP32-sized heap.
"""
import glob
import os

import pytest

import mp

UNIT = os.path.join(mp.ROOT, "host_tests", "unit")
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(UNIT, "test_*.py")))


@pytest.mark.parametrize("module", MODULES)
def test_under_micropython(module):
    r = mp.run([os.path.join(mp.ROOT, "tools", "mptest.py"), module], extra_dirs=(UNIT,))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert " passed, 0 failed" in out, out
    assert not out.strip().endswith(" 0 passed, 0 failed"), "no test ran: " + out
