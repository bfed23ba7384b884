"""How the host tests start the real MicroPython unix port."""
import subprocess

from simrun import ROOT, micropython_bin, micropython_env  # noqa: F401

HEAP = "96k"  # the unit suites run on an ESP32-sized heap


def run(args, extra_dirs=(), timeout=120, heap=HEAP):
    cmd = [micropython_bin(), "-X", "heapsize=" + heap] + list(args)
    return subprocess.run(cmd, cwd=ROOT, env=micropython_env(*extra_dirs),
                          capture_output=True, text=True, timeout=timeout)
