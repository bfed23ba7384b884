"""The shared unit suites in host_tests/unit/, run again under MicroPython.

Each file there runs under CPython (pytest collects it directly) and here
under the MicroPython unix port with an ESP32-sized heap (96 KB for data),
on the firmware's .mpy build in a ROMFS image (tools/mpybuild.py, what the
board runs in place: its code outside the budget, README "Memory"; the image
is read into the heap first and the heap is the budget plus the image, as
tools/simrun.py does). The test modules themselves come from source
(host_tests/unit). tools/mptest.py runs every test_* callable of a module
(async ones with asyncio.run).
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
def image(tmp_path_factory):
    out = mpybuild.build(os.path.join(mp.ROOT, "build", "rom"), "HOST", root="/rom/")
    path = str(tmp_path_factory.mktemp("rom") / "units.romfs")
    return path, mpybuild.romfs(out, path)


# mount the image at /rom (boards/HOST/romfs_main.py does the same for the firmware), then mptest
_RUN = """import os, sys, vfs
p = %r
b = bytearray(os.stat(p)[6])
with open(p, "rb") as f:
    f.readinto(b)
vfs.mount(vfs.VfsRom(b), "/rom")
sys.path[:] = ["/rom", %r, %r, ".frozen"]
del p, f
import mptest
sys.exit(1 if mptest.main([%r]) else 0)
"""


@pytest.mark.parametrize("module", MODULES)
def test_under_micropython(image, module):
    path, size = image
    heap = mp.heap_bytes(mp.HEAP) + (size + 1023) // 1024 * 1024
    code = _RUN % (path, UNIT, os.path.join(mp.ROOT, "tools"), module)
    r = subprocess.run([mp.micropython_bin(), "-X", "heapsize=%d" % heap, "-c", code],
                       cwd=mp.ROOT, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert " passed, 0 failed" in out, out
    assert not out.strip().endswith(" 0 passed, 0 failed"), "no test ran: " + out
