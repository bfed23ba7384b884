"""The firmware's names stay inside five qstr pools on the host (BENCHMARKS.md, "Heap").

MicroPython interns every name a loaded .mpy uses (identifiers, attribute and
argument names, short string constants) in qstr pools that grow by doubling:
20, 40, 80, 160, 320 entries, then one of 640 entries — 7 KB of heap at once
on the 64-bit unix port, for the few names past 620. At -X heapsize=96k those
7 KB decide whether the firmware has room to work, so a change that adds
names beyond the budget fails here, with the count, before it fails as a
MemoryError somewhere else.
"""
import os
import re
import subprocess

import mpybuild
from simrun import ROOT, micropython_bin

# 620 entries fill five pools; keep room for the names interned at run time
# (the fuzz and web UI paths, a REPL session) and the next small change.
BUDGET = 600

PROBE = """
import gc, micropython
import start, pbctl, cnf, control, httpd, devices, app, board
for name in cnf.ON_DEMAND:
    __import__(name)
    cnf.unload()
gc.collect()
micropython.qstr_info()
"""


def test_firmware_names_fit_five_qstr_pools():
    out = mpybuild.build(os.path.join(ROOT, "build", "host"), "HOST")
    env = dict(os.environ, MICROPYPATH=out + ":.frozen")
    r = subprocess.run([micropython_bin(), "-X", "heapsize=160k", "-c", PROBE], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"n_pool=(\d+), n_qstr=(\d+)", r.stdout)
    assert m, r.stdout
    pools, names = int(m.group(1)), int(m.group(2))
    assert names <= BUDGET, "%d names interned (budget %d, a sixth qstr pool of 7 KB at 620)" % (names, BUDGET)
    assert pools == 5, r.stdout
