"""Heap cost of each firmware module when loaded from .mpy (run under MicroPython).

    python tools/bench/modmem.py            # builds build/host, runs the probe
    python tools/bench/modmem.py net led    # only these modules (e.g. the board-only ones)

Names are interned once up front (the qstr pools are reported separately),
so each figure is what importing that module costs on a warm heap: its
code, constants and globals. Resident modules stay loaded all the time;
on-demand ones (pbctl.api.cnf.on_demand()) only while a request needs them.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PROBE = r"""
import gc, sys, micropython
import asyncio
base = list(sys.modules)
MODS = %r
for m in MODS:
    __import__(m)
for k in list(sys.modules):
    if k not in base:
        del sys.modules[k]
gc.collect()
tot = 0
for m in MODS:
    gc.collect(); a = gc.mem_free(); __import__(m); gc.collect(); d = a - gc.mem_free(); tot += d
    print('%%-18s %%6d' %% (m, d))
print('%%-18s %%6d' %% ('all', tot))
micropython.qstr_info()
"""

RESIDENT = ["pblib.rtu", "pblib.httpd", "pbctl.store", "pbctl.devices", "pbctl.app", "pbctl.api.cnf", "pbboard",
            "pblib.balancer", "pbctl.control", "pbctl"]
ON_DEMAND = ["pbctl.api.info", "pblib.reasons", "pbctl.config", "pbctl.api.auth", "pbctl.api.args", "pblib.registers",
             "pbctl.api.modbus", "pbctl.api.admin", "pbctl.api.ajax", "pbctl.api.session", "pbctl.api.users", "pbctl.diag",
             "pbctl.repl", "pbctl.start"]


def main():
    import mpybuild
    from simrun import micropython_bin

    out = mpybuild.build(os.path.join(mpybuild.ROOT, "build", "host"), "HOST")
    mods = [m for m in sys.argv[1:] or RESIDENT + ON_DEMAND
            if os.path.exists(os.path.join(out, m.replace(".", os.sep) + ".mpy"))]
    env = dict(os.environ, MICROPYPATH=out + ":.frozen", PBCTL_FLASH="/tmp")
    r = subprocess.run([micropython_bin(), "-X", "heapsize=400k", "-c", PROBE % (mods,)], env=env,
                       capture_output=True, text=True)
    print(r.stdout + r.stderr)


if __name__ == "__main__":
    main()
