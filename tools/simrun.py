"""Start the Power Brain simulator and the firmware (under MicroPython) together.

Used by `make sim` (tools/sim.py), the e2e tests and the benchmarks, so that
all three run the product the same way: the simulator (tools/pbsim/) on a
pty pair, the firmware under the MicroPython unix port with boards/HOST as
its board, the pty as its UART, on the board's heap budget (HEAP).

Modes (PBCTL_MODE):
- romfs (default): like a board with a ROMFS partition. The firmware is built
  (tools/mpybuild.py, root /rom/) into a ROMFS image; boards/HOST/romfs_main.py
  reads it into one block, mounts it at /rom and runs main.py: the code runs
  from the image in place. The heap is HEAP + the image's size, the image read
  first, so what the firmware has is HEAP — as on the board, whose code stays
  in flash.
- mpy: the .mpy files on MICROPYPATH, loaded onto the heap (the heap HEAP
  holds code and data; a board without ROMFS partition, where the modules are
  copied to its file system).

The heap a budget means depends on the interpreter's word size: the venv's
unix port is 64-bit, the ESP32 32-bit, and the firmware's data takes 1.46 to
1.51 times the bytes on the 64-bit port (measured with a 32-bit build of the
same port, PBCTL_MICROPYTHON: BENCHMARKS.md, RAM). board_heap() is the heap
that holds on the interpreter in use what the board's 96 KB hold.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import base64
import http.client

from pbsim import client as pbclient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The firmware's data budget: an ESP32-WROOM-32 without PSRAM has ~100 KB of
# MicroPython heap; 96 KB of it for the firmware's data (README "Memory").
HEAP = os.environ.get("PBCTL_HEAP", "128k")
# 64-bit heap bytes per 32-bit one for the firmware's data, rounded up from
# the measured 1.46 (3 devices) .. 1.51 (8 EVSEs charging): BENCHMARKS.md, RAM.
WORD_RATIO = (3, 2)
MODE = os.environ.get("PBCTL_MODE", "romfs")
ADMIN = ("admin", "1234abcd")  # the document's example credentials (simulation only)


def micropython_bin():
    """The venv's unix port; PBCTL_MICROPYTHON names another build (a 32-bit
    one measures the heap with the board's word size: BENCHMARKS.md, RAM)."""
    if os.environ.get("PBCTL_MICROPYTHON"):
        return os.environ["PBCTL_MICROPYTHON"]
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    return exe if os.path.exists(exe) else "micropython"


_BITS = {}


def word_bits():
    """32 or 64: the word size of the interpreter the firmware runs on."""
    exe = micropython_bin()
    if exe not in _BITS:
        out = subprocess.run([exe, "-c", "import sys; print(64 if sys.maxsize > 1 << 32 else 32)"],
                             capture_output=True, text=True, timeout=30).stdout
        _BITS[exe] = int(out)
    return _BITS[exe]


def board_heap(kb=96):
    """The heap ("144k") that holds on this interpreter what kb KB of the
    32-bit board's heap hold: kb itself on a 32-bit build."""
    return "%dk" % (kb if word_bits() == 32 else kb * WORD_RATIO[0] // WORD_RATIO[1])


def heap_bytes(heap):
    """"96k" -> 98304."""
    return int(heap[:-1]) * 1024 if heap[-1] in "kK" else int(heap)


def micropython_env(*extra_dirs, board="HOST"):
    """MICROPYPATH: the flat module space the board has (/ and /lib)."""
    dirs = list(extra_dirs) + [os.path.join(ROOT, d) for d in ("boards/" + board, "firmware", "lib")]
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(dirs + [".frozen"])
    return env


def config_size(heap):
    """The HOST board's CONFIG_SIZE (pbctl/cfgsize.py) for a data budget of
    heap bytes: what stays free after boot with the configuration at its
    size, ~2.4 heap bytes a unit, should be ~28 KB, and the firmware itself
    takes ~80 KB of the budget (the 64-bit host, ROMFS: BENCHMARKS.md, RAM;
    a 32-bit interpreter's heap counts WORD_RATIO times). At least the factory
    configuration's size (and a little more)."""
    if word_bits() == 32:
        heap = heap * WORD_RATIO[0] // WORD_RATIO[1]
    return max(2600, (heap - 105472) // 3)


def free_base(n=3):
    """A port p with p .. p+n-1 all free on the loopback (the Modbus TCP
    gateway listens on base, base+1, base+2)."""
    import random

    rnd = random.Random()
    for _ in range(100):
        base = rnd.randrange(20000, 60000)
        socks = []
        try:
            for k in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no %d consecutive free ports" % n)




def read_all(c):
    """Everything a peer sends until it closes (or resets) the connection."""
    chunks = []
    while True:
        try:
            b = c.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def asked_again(fn):
    """(fn()'s (status, body), tries): fn() asked again after a 503 "out of
    memory", 0.3, 0.6 and 1.2 s later, as the web UI does (README, "Never an
    empty answer"); a fourth 503 is returned."""
    for n, wait in enumerate((0.3, 0.6, 1.2, None)):
        r = fn()
        if r != (503, "out of memory") or wait is None:
            return r, n + 1
        time.sleep(wait)


def wait_for(fn, timeout=20, what="condition", step=0.2):
    """fn()'s first true value, looked at every step seconds; AssertionError
    naming what after timeout seconds (the tests' and tools' one wait)."""
    end = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > end:
            raise AssertionError("%s: not within %ss" % (what, timeout))
        time.sleep(step)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Sim:
    def __init__(self, http_port=0, baud=9600, flash=None, admin_pwd=ADMIN[1], sim_args=(), fw_env=None,
                 echo=False, main=None, module_dirs=(), heap=None, mode=None):
        self.http_port = http_port or free_port()
        self._free_port = not http_port
        self.baud = baud
        self._tmp = tempfile.mkdtemp(prefix="pbctl-")
        self.flash = flash or os.path.join(self._tmp, "flash")
        os.makedirs(self.flash, exist_ok=True)
        self.admin_pwd = admin_pwd
        self.sim_args = list(sim_args)
        self.fw_env = dict(fw_env or {})
        self.echo = echo or os.environ.get("PBCTL_SIM_ECHO") == "1"  # a failing suite's firmware log
        self.main = main  # None: build/host/main.py, the firmware precompiled
        self.module_dirs = list(module_dirs)
        self.heap = heap or HEAP  # the firmware's data budget
        self.mode = mode or MODE  # romfs or mpy (the module docstring)
        self.image_size = 0
        self.sim = self.fw = None
        self.control_port = None
        self.tty = None
        self.fw_lines = []
        self.sim_lines = []

    # ---- lifecycle ----------------------------------------------------
    def start(self, timeout=30):
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # leave no simulator behind when the firmware fails to come up
            raise

    def _start(self, timeout):
        link = os.path.join(self._tmp, "bus")
        self.sim = subprocess.Popen(
            pbclient.command(["--link", link, "--control-port", "0", "--baud", str(self.baud)] + self.sim_args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        deadline = time.time() + timeout
        while True:
            line = self.sim.stdout.readline()
            if not line:
                raise RuntimeError("simulator exited: " + "".join(self.sim_lines))
            self.sim_lines.append(line)
            if line.startswith("READY "):
                info = json.loads(line[6:])
                self.tty = info["tty"]
                self.control_port = info["control"]
                if self.control_port == self.http_port and self._free_port:
                    # the simulator was given the free port picked for the firmware
                    # (both chose while it was free): the firmware could not listen,
                    # and its requests would reach the simulator's control channel
                    while self.http_port == self.control_port:
                        self.http_port = free_port()
                break
            if time.time() > deadline:
                raise RuntimeError("simulator did not start")
        self._pump(self.sim, self.sim_lines, "[pbsim] ")
        heap = heap_bytes(self.heap)
        args = []
        if self.main is None and self.mode == "romfs":
            import mpybuild
            out = mpybuild.build(os.path.join(ROOT, "build", "rom"), "HOST", root="/rom/")
            image = os.path.join(self._tmp, "pbctl.romfs")
            self.image_size = mpybuild.romfs(out, image)
            image = self.boot_image(image)
            heap += (os.path.getsize(image) + 1023) // 1024 * 1024
            args = [os.path.join(ROOT, "boards", "HOST", "romfs_main.py"), os.path.join(out, "main.py")]
            env = dict(os.environ, PBCTL_ROMFS=image, MICROPYPATH=".frozen")
        elif self.main is None:
            import mpybuild
            out = mpybuild.build(os.path.join(ROOT, "build", "host"), "HOST")
            args = [os.path.join(out, "main.py")]
            env = dict(os.environ)
            env["MICROPYPATH"] = ":".join(list(self.module_dirs) + [out, ".frozen"])
        else:
            args = [self.main]
            env = micropython_env(*self.module_dirs)
        env.update({
            "PBCTL_TTY": self.tty,
            "PBCTL_BAUD": str(self.baud),
            "PBCTL_HTTP_PORT": str(self.http_port),
            "PBCTL_HTTP_HOST": "127.0.0.1",
            "PBCTL_FLASH": self.flash,
            "PBCTL_ADMIN_PWD": self.admin_pwd or "",
            "PBCTL_CONFIG_SIZE": str(config_size(heap_bytes(self.heap))),
        })
        env.update(self.fw_env)
        self.fw = subprocess.Popen([micropython_bin(), "-X", "heapsize=%d" % heap] + args,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
        self._pump(self.fw, self.fw_lines, "")
        while time.time() < deadline:
            if self.fw.poll() is not None:
                time.sleep(0.1)
                raise RuntimeError("firmware exited:\n" + "".join(self.fw_lines))
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("firmware did not listen:\n" + "".join(self.fw_lines))

    def boot_image(self, image):
        """The host's boot loader (updates over HTTP, README): what the board's boot.py
        does before anything of the firmware is imported — firmware/pbslot.py picks
        the version on this flash and counts its start — run here, so that it costs
        the firmware's heap nothing. An installed version is the image
        fw/<slot>/pbctl.romfs; else the build's (the cable's) image."""
        import importlib.util

        spec = importlib.util.spec_from_file_location("pbslot", os.path.join(ROOT, "firmware", "pbslot.py"))
        pbslot = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pbslot)
        d = pbslot.select(self.flash)
        self.slot = d and os.path.basename(d)
        if d and os.path.exists(os.path.join(d, "pbctl.romfs")):
            return os.path.join(d, "pbctl.romfs")
        return image

    def _pump(self, proc, sink, prefix):
        def run():
            for line in proc.stdout:
                sink.append(line)
                if len(sink) > 5000:
                    del sink[:1000]
                if self.echo:
                    sys.stdout.write(prefix + line)
                    sys.stdout.flush()
        threading.Thread(target=run, daemon=True).start()

    def stop(self):
        for p in (self.fw, self.sim):
            if p and p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in (self.fw, self.sim):
            if p:
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    # ---- talking to the simulator and the firmware ----------------------
    def control(self, **cmd):
        """One simulator command (tools/pbsim/control.py), on its own connection: callable from
        several threads. A refused command raises pbsim.client.PbsimError (a RuntimeError)."""
        return pbclient.control(self.control_port, cmd)

    def url(self, query):
        return "http://127.0.0.1:%d/cnf?%s" % (self.http_port, query)

    def request(self, query, auth=None, body=None, method=None, headers=None, timeout=10, source=None):
        """(status, parsed JSON body, raw body bytes, headers) of /cnf?query.

        source: the client's address (any 127.x.y.z), e.g. to be another client."""
        h = {}
        if auth:
            h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout,
                                       source_address=(source, 0) if source else None)
        try:
            c.request(method or ("POST" if body is not None else "GET"), "/cnf?" + query, body=body, headers=h)
            r = c.getresponse()
            raw, status, hdrs = r.read(), r.status, r.headers
        finally:
            c.close()
        return status, json.loads(raw) if raw else None, raw, hdrs

    def get(self, query, auth=None, source=None):
        s, obj, _, _ = self.request(query, auth, source=source)
        return s, obj
