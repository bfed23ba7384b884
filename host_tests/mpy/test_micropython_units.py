"""The shared unit suites in host_tests/unit/, run again under MicroPython.

Each file there runs under CPython (pytest collects it directly) and here
under the MicroPython unix port with an ESP32-sized heap (96 KB), on the
firmware's .mpy build (tools/mpybuild.py, what the board runs): MICROPYPATH =
build/host, host_tests/unit, .frozen. tools/mptest.py runs every test_*
callable of a module (async ones with asyncio.run).
"""
import glob
import os
import subprocess

import pytest

import mp
import mpybuild

UNIT = os.path.join(mp.ROOT, "host_tests", "unit")
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(UNIT, "test_*.py")))


@pytest.fixture(scope="module")
def build():
    return mpybuild.build(os.path.join(mp.ROOT, "build", "host"), "HOST")


@pytest.mark.parametrize("module", MODULES)
def test_under_micropython(build, module):
    env = dict(os.environ, MICROPYPATH=":".join([build, UNIT, ".frozen"]))
    r = subprocess.run([mp.micropython_bin(), "-X", "heapsize=" + mp.HEAP,
                        os.path.join(mp.ROOT, "tools", "mptest.py"), module],
                       cwd=mp.ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert " passed, 0 failed" in out, out
    assert not out.strip().endswith(" 0 passed, 0 failed"), "no test ran: " + out
