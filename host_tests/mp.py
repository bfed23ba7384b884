"""How the host tests start the real MicroPython unix port, and where the
MicroPython programs they run (mpy/scripts/) and the fake modules those need
(mpy/fakes/) are (host_tests/README.md)."""
import os
import socket
import subprocess

from simrun import ROOT, free_base, heap_bytes, read_all, micropython_bin, micropython_env  # noqa: F401

HEAP = "96k"  # the unit suites run on an ESP32-sized heap
SCRIPTS = os.path.join(ROOT, "host_tests", "mpy", "scripts")
FAKES = os.path.join(ROOT, "host_tests", "mpy", "fakes")


def script(name):
    """The path of a MicroPython program in mpy/scripts/."""
    return os.path.join(SCRIPTS, name)


def fakes(name):
    """A directory of fake modules in mpy/fakes/ (put first on MICROPYPATH)."""
    return os.path.join(FAKES, name)


def build():
    """The firmware's .mpy build for the HOST board (build/host): what the board runs."""
    import mpybuild

    return mpybuild.build(os.path.join(ROOT, "build", "host"), "HOST")


def run(args, extra_dirs=(), timeout=120, heap=HEAP, env=None, built=False):
    """MicroPython with MICROPYPATH = extra_dirs, then the sources (the HOST
    board, firmware/, lib/) or, built, the .mpy build; env: more environment
    variables."""
    if built:
        e = dict(os.environ, MICROPYPATH=":".join(list(extra_dirs) + [build(), ".frozen"]))
    else:
        e = micropython_env(*extra_dirs)
    e.update(env or {})
    cmd = [micropython_bin(), "-X", "heapsize=" + heap] + list(args)
    return subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)


def free_ports(n=1):
    """n free loopback TCP ports (bound together, so they differ)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def free_port():
    return free_ports()[0]
