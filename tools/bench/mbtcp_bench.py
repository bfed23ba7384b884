"""pblib.mbtcp on MicroPython (96 KB heap) against pymodbus' own Modbus TCP server on CPython.

Starts host_tests/mpy/scripts/mbtcp_server.py under `micropython -X heapsize=96k` with
lib/pblib precompiled by `mpy-cross -O3` (as on a board; rate budget off), and
tools/bench/mbtcp_pymodbus_server.py (the baseline, same register bank), then sends
both the same requests from raw-socket clients, one request at a time per connection
and connection kept open, as evcc does: the reads evcc's cfos charger and meter make
every cycle (8062 x2, 8064 x6, 8092 x1, 8094 x1, 8058 x4 of units 1 and 2) in turn.
  - 1 client: N requests; req/s, p50/p99 latency;
  - K clients (separate processes, one connection each): N requests in all; the same;
  - our server's gc.mem_free() (after gc.collect()) idle, after the runs, and what one
    more open connection costs;
  - what pblib.mbtcp costs on the heap once imported from .mpy (warm heap, names
    interned: as tools/bench/modmem.py measures), the smallest heap it imports on, and
    what Server(handler, max_clients=4) allocates.
Prints a table with the ratio ours / pymodbus.

Usage: .venv/bin/python tools/bench/mbtcp_bench.py [--n 20000] [--k 4]
"""
import argparse
import multiprocessing
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINDIR = os.path.dirname(sys.executable)
HEAP = "96k"
SCRIPT = os.path.join(ROOT, "host_tests", "mpy", "scripts", "mbtcp_server.py")
BASELINE = os.path.join(ROOT, "tools", "bench", "mbtcp_pymodbus_server.py")
# (unit, address, count): evcc's reads of one cycle (charger: unit 1, meter: unit 2)
READS = [(1, 8062, 2), (1, 8064, 6), (1, 8092, 1), (1, 8094, 1), (1, 8058, 4), (2, 8062, 2), (2, 8058, 4)]


def tool(name):
    p = os.path.join(BINDIR, name)
    return p if os.path.exists(p) else name


def build(tmp):
    """lib/pblib as a board holds it: .mpy files built with -O3."""
    d = os.path.join(tmp, "pblib")
    os.makedirs(d)
    for name in ("__init__", "mbtcp"):
        subprocess.run([tool("mpy-cross"), "-O3", "-o", os.path.join(d, name + ".mpy"), "-s", "pblib/%s.py" % name,
                        os.path.join(ROOT, "lib", "pblib", name + ".py")], check=True)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start(cmd, env=None):
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    if not line.startswith("READY"):
        p.kill()
        raise SystemExit("%s did not start: %s%s" % (cmd, line, p.stdout.read()))
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    return p


def frames():
    return [(struct.pack(">HHHBBHH", 0, 0, 6, u, 3, a, c), 9 + 2 * c) for u, a, c in READS]


def client(port, n, q):
    """n requests on one connection, one at a time; puts (latencies, errors) on q."""
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fs = frames()
    lat = []
    bad = 0
    try:
        for i in range(n):
            f, want = fs[i % len(fs)]
            t = time.perf_counter()
            c.sendall(f)
            got = b""
            while len(got) < want:
                b = c.recv(want - len(got))
                if not b:
                    raise SystemExit("connection closed")
                got += b
            lat.append(time.perf_counter() - t)
            bad += got[7] != 3
    finally:
        c.close()
    q.put((lat, bad))


def run(port, n, k):
    """k client processes, n requests in all -> (req/s, latencies, errors)."""
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=client, args=(port, n // k, q)) for _ in range(k)]
    t = time.perf_counter()
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    dt = time.perf_counter() - t
    for p in ps:
        p.join()
    lat = [x for r in res for x in r[0]]
    return len(lat) / dt, lat, sum(r[1] for r in res)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def mem(port):
    """Our server's gc.mem_free() after gc.collect() (the script's unit 200, register 0)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(struct.pack(">HHHBBHH", 1, 0, 6, 200, 3, 0, 2))
        r = b""
        while len(r) < 13:
            r += c.recv(64)
    return struct.unpack(">I", r[9:13])[0]


def conn_cost(port):
    """Heap one more open (idle) connection holds: mem_free with 3 extra connections vs none."""
    a = mem(port)
    cs = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    time.sleep(0.1)
    b = mem(port)
    for c in cs:
        c.close()
    return (a - b) // 3


COST_PROBE = """
import gc, sys
import asyncio
base = set(sys.modules)
__import__("pblib.mbtcp")  # (bound to no name: nothing keeps this first copy alive)
for k in list(sys.modules):
    if k not in base:
        del sys.modules[k]
gc.collect()
a = gc.mem_free()
__import__("pblib.mbtcp")
gc.collect()
b = gc.mem_free()
mbtcp = sys.modules["pblib.mbtcp"]
async def h(unit, fn, addr, count, data, out):
    return 0
s = mbtcp.Server(h, max_clients=4)
gc.collect()
print(a - b, b - gc.mem_free())
"""


def module_cost(path):
    env = dict(os.environ, MICROPYPATH=path + ":.frozen")
    r = subprocess.run([tool("micropython"), "-X", "heapsize=400k", "-c", COST_PROBE], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()] if r.returncode == 0 else [None, None]


def min_heap_kb(path):
    """Smallest -X heapsize (KB) that imports pblib.mbtcp, by bisection."""
    env = dict(os.environ, MICROPYPATH=path + ":.frozen")
    lo, hi = 2, 256
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = subprocess.run([tool("micropython"), "-X", "heapsize=%dk" % mid, "-c", "from pblib import mbtcp"],
                           cwd=ROOT, env=env, capture_output=True)
        if r.returncode == 0:
            hi = mid
        else:
            lo = mid
    return hi


def bench(port, n, k, ours):
    run(port, 200, 1)  # warm-up
    r = {}
    if ours:
        r["mem_idle"] = mem(port)
    r["seq_rps"], lat, r["seq_bad"] = run(port, n, 1)
    r["seq_p50"], r["seq_p99"] = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3
    r["conc_rps"], lat, r["conc_bad"] = run(port, n, k)
    r["conc_p50"], r["conc_p99"] = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3
    if ours:
        r["mem_after"] = mem(port)
        r["conn_cost"] = conn_cost(port)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="requests per run")
    ap.add_argument("--k", type=int, default=4, help="concurrent clients (max 4: the server's connection cap)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mbtcp_bench-")
    procs = []
    try:
        build(tmp)
        ports = free_ports(4)
        env = dict(os.environ, MICROPYPATH=tmp + ":.frozen")
        procs.append(start([tool("micropython"), "-X", "heapsize=" + HEAP, SCRIPT,
                            "ports=%d,%d,%d" % tuple(ports[:3]), "rate=0"], env))
        procs.append(start([sys.executable, BASELINE, str(ports[3])]))
        ours = bench(ports[0], a.n, a.k, True)
        theirs = bench(ports[3], a.n, a.k, False)
        alive = all(p.poll() is None for p in procs)
        ours["cost"], ours["server"] = module_cost(tmp)
        ours["min_heap"] = min_heap_kb(tmp)
    finally:
        for p in procs:
            p.kill()
            p.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)
    print("Modbus TCP: pblib.mbtcp (.mpy -O3) on MicroPython unix -X heapsize=%s vs pymodbus %s on CPython %s;"
          % (HEAP, __import__("pymodbus").__version__, sys.version.split()[0]))
    print("evcc's cycle of reads in turn, one request at a time per connection; %d requests per run" % a.n)
    print("%-30s %12s %12s %16s" % ("", "pblib.mbtcp", "pymodbus", "ours/pymodbus"))
    rows = [("1 client req/s", "seq_rps", "%.0f"), ("1 client p50 ms", "seq_p50", "%.3f"),
            ("1 client p99 ms", "seq_p99", "%.3f"), ("%d clients req/s" % a.k, "conc_rps", "%.0f"),
            ("%d clients p50 ms" % a.k, "conc_p50", "%.3f"), ("%d clients p99 ms" % a.k, "conc_p99", "%.3f"),
            ("exception replies", "seq_bad", "%d"), ("exception replies (%d clients)" % a.k, "conc_bad", "%d")]
    for label, key, fmt in rows:
        x, y = ours[key], theirs[key]
        ratio = "%.2f" % (x / y) if y else "-"
        print("%-30s %12s %12s %16s" % (label, fmt % x, fmt % y, ratio))
    print("our heap: mem_free idle %d B, after both runs %d B; one open connection %d B"
          % (ours["mem_idle"], ours["mem_after"], ours["conn_cost"]))
    print("pblib.mbtcp .mpy: import cost %s B (warm heap), Server(max_clients=4) %s B, imports on a %d KB heap"
          % (ours["cost"], ours["server"], ours["min_heap"]))
    if not alive:
        print("a server died during the run")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
