"""One owner of the charging limits (issue 12): a write pass never mixes two
decisions, whatever requests arrive at its awaits.

host_tests/mpy/scripts/control_owner.py runs the firmware's control.Control
(the .mpy build) under MicroPython with a fake bus that hands in a request —
override cap, integration cap and enable, configuration change — at every
write, and checks every written limit against its pass's decision (see the
script). The same from the outside, on the wire: tests/e2e/test_owner.py.
"""
import os
import subprocess

import mpybuild
from simrun import ROOT, micropython_bin

SCRIPT = os.path.join(ROOT, "host_tests", "mpy", "scripts", "control_owner.py")
CUTS = os.path.join(ROOT, "host_tests", "mpy", "scripts", "control_cuts_first.py")


def run(script):
    """The script under MicroPython on the .mpy build; its output, which starts with "OK "."""
    out = mpybuild.build(os.path.join(ROOT, "build", "host"), "HOST")
    env = dict(os.environ, MICROPYPATH=out + ":.frozen", PBCTL_TTY="/dev/null")
    r = subprocess.run([micropython_bin(), "-X", "heapsize=128k", script], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and out.startswith("OK "), out
    return out


def test_a_write_pass_never_mixes_two_decisions():
    out = run(SCRIPT)
    passes, writes = map(int, out.split()[1:3])
    assert passes >= 13 and writes >= 12, out


def test_a_write_pass_cuts_first_and_raises_nothing_while_a_cut_failed():
    """host_tests/mpy/scripts/control_cuts_first.py: the boxes' limits never
    add up to more than the fuse, whatever write fails (the fault storm of
    tools/soak.py saw that for 0.2-0.3 s when the writes went in slot order)."""
    run(CUTS)
