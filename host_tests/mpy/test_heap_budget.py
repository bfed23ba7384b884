"""The firmware's names stay inside six qstr pools on the host (BENCHMARKS.md, "RAM").

MicroPython interns every name a loaded .mpy uses (identifiers, attribute and
argument names, short string constants, module names and paths) in qstr pools
that grow by doubling: 20, 40, 80, 160, 320, 640 entries, then one of 1280
entries — 14 KB of heap at once on the 64-bit unix port, for the few names
past 1260. Since the packages (three names a module: its dotted name, its
last part, its file) and the integrations, the firmware needs the sixth pool
(about 7 KB, allocated at boot while the heap is in one piece: pbctl.main()
interns the on-demand modules' names first); the seventh must never come. A
change that adds names beyond the budget fails here, with the count, before
it fails as a MemoryError somewhere else. The probe (mpy/scripts/heap_probe.py)
loads the resident modules and every on-demand module of the route table
(pbctl.api.cnf.on_demand()).
"""
import re

import mp

# 1260 entries fill six pools; keep room for the names interned at run time
# (the integrations' modules, the fuzz and web UI paths, a REPL session).
BUDGET = 1000


def test_firmware_names_fit_six_qstr_pools():
    r = mp.run([mp.script("heap_probe.py")], heap="160k", timeout=60, built=True)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"n_pool=(\d+), n_qstr=(\d+)", r.stdout)
    assert m, r.stdout
    pools, names = int(m.group(1)), int(m.group(2))
    print("\n%d names interned in %d qstr pools (budget %d)" % (names, pools, BUDGET))
    assert names <= BUDGET, "%d names interned (budget %d, a seventh qstr pool of 14 KB at 1260)" % (names, BUDGET)
    assert pools <= 6, r.stdout
