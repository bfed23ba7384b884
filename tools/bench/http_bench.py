"""lib/httpd.py against microdot, both on MicroPython with a 96 KB heap (CPython driver).

Starts tools/bench/hello_httpd.py and tools/bench/hello_microdot.py under
`micropython -X heapsize=96k` and measures with raw-socket clients (one
request per connection, reply read to EOF):
  - N sequential requests: requests/s, p50/p99 latency;
  - K concurrent clients (N requests in all): the same;
  - the server's gc.mem_free() (after gc.collect()) when idle, after the
    sequential and after the concurrent run;
  - the smallest heap on which the library module imports, from source and
    from .mpy;
  - what the library costs on the heap once imported from .mpy (as
    tools/bench/modmem.py measures it: imported, dropped, imported again
    after gc.collect(), so the names are interned already; MicroPython keeps
    .mpy code on the heap).
Prints a table with the ratio ours/microdot.

Module form: microdot's package source does not even compile on a 96 KB heap
(MemoryError), so by default both servers' libraries are precompiled with
mpy-cross into a temporary directory, as on a board. --source runs httpd from
lib/ as source too (microdot is then still loaded as .mpy).

Usage: .venv/bin/python tools/bench/http_bench.py [--n 1000] [--k 4] [--source]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "tools", "bench")
BINDIR = os.path.dirname(sys.executable)
HEAP = "96k"
REQ = b"GET /cnf?cmd=echo&device=meter1&read=8002&count=10 HTTP/1.1\r\nHost: bench\r\n\r\n"


def tool(name):
    p = os.path.join(BINDIR, name)
    return p if os.path.exists(p) else name


def microdot_dir():
    import microdot  # the package pip installed into this venv (CPython side)

    return os.path.dirname(os.path.abspath(microdot.__file__))


def build(tmp):
    """mpy-cross lib/httpd.py and the microdot package into tmp (as a board would hold them)."""
    mpy_cross = tool("mpy-cross")
    subprocess.run([mpy_cross, "-o", os.path.join(tmp, "httpd.mpy"), os.path.join(ROOT, "lib", "httpd.py")],
                   check=True)
    src = microdot_dir()
    dst = os.path.join(tmp, "microdot")
    os.makedirs(dst)
    for name in ("__init__.py", "microdot.py"):
        subprocess.run([mpy_cross, "-o", os.path.join(dst, name[:-3] + ".mpy"), os.path.join(src, name)],
                       check=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(script, path_dirs):
    port = free_port()
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(path_dirs + [".frozen"])
    p = subprocess.Popen([tool("micropython"), "-X", "heapsize=" + HEAP, os.path.join(BENCH, script), str(port)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    if not line.startswith("READY"):
        p.kill()
        raise SystemExit("%s did not start: %s%s" % (script, line, p.stdout.read()))
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    return p, port


def request(port, data=REQ):
    """One request; (status, body, seconds)."""
    t = time.perf_counter()
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        c.sendall(data)
        chunks = []
        while True:
            b = c.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        c.close()
    dt = time.perf_counter() - t
    r = b"".join(chunks)
    head, _, body = r.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, body, dt


def mem(port):
    st, body, _ = request(port, b"GET /cnf?cmd=mem HTTP/1.1\r\n\r\n")
    return json.loads(body) if st == 200 else None


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def run_seq(port, n):
    lat, bad = [], 0
    t = time.perf_counter()
    for _ in range(n):
        st, _, dt = request(port)
        lat.append(dt)
        bad += st != 200
    return n / (time.perf_counter() - t), lat, bad


def run_conc(port, n, k):
    lat, bad = [], [0]
    lock = threading.Lock()

    def worker(m):
        mine, nb = [], 0
        for _ in range(m):
            st, _, dt = request(port)
            mine.append(dt)
            nb += st != 200
        with lock:
            lat.extend(mine)
            bad[0] += nb

    ts = [threading.Thread(target=worker, args=(n // k,)) for _ in range(k)]
    t = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return len(lat) / (time.perf_counter() - t), lat, bad[0]


def min_heap_kb(module, path_dirs):
    """Smallest -X heapsize (KB) that imports `module`, by bisection."""
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(path_dirs + [".frozen"])
    lo, hi = 8, 512
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = subprocess.run([tool("micropython"), "-X", "heapsize=%dk" % mid, "-c", "import " + module],
                           cwd=ROOT, env=env, capture_output=True)
        if r.returncode == 0:
            hi = mid
        else:
            lo = mid
    return hi


COST_PROBE = """
import gc, sys
import asyncio, json, binascii, os
base = set(sys.modules)
__import__(%r)
for k in list(sys.modules):
    if k not in base:
        del sys.modules[k]
gc.collect()
a = gc.mem_free()
__import__(%r)
gc.collect()
print(a - gc.mem_free())
"""


def module_cost(module, path_dirs):
    """Bytes of heap that importing `module` (and what it imports) takes on a warm heap."""
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(path_dirs + [".frozen"])
    r = subprocess.run([tool("micropython"), "-X", "heapsize=400k", "-c", COST_PROBE % (module, module)],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    return int(r.stdout.strip()) if r.returncode == 0 else None


def bench(name, script, path_dirs, n, k):
    p, port = start(script, path_dirs)
    try:
        for _ in range(20):  # warm-up
            request(port)
        r = {"name": name, "mem_idle": mem(port)}
        r["seq_rps"], lat, r["seq_bad"] = run_seq(port, n)
        r["seq_p50"], r["seq_p99"] = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3
        r["mem_seq"] = mem(port)
        r["conc_rps"], lat, r["conc_bad"] = run_conc(port, n, k)
        r["conc_p50"], r["conc_p99"] = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3
        r["mem_conc"] = mem(port)
        r["alive"] = p.poll() is None
        return r
    finally:
        p.kill()
        p.wait(5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="requests per run")
    ap.add_argument("--k", type=int, default=4, help="concurrent clients")
    ap.add_argument("--source", action="store_true", help="run lib/httpd.py from source")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="http_bench-")
    try:
        build(tmp)
        ours_path = [os.path.join(ROOT, "lib")] if a.source else [tmp]
        ours = bench("httpd", "hello_httpd.py", ours_path, a.n, a.k)
        theirs = bench("microdot", "hello_microdot.py", [tmp], a.n, a.k)
        ours["heap_src"] = min_heap_kb("httpd", [os.path.join(ROOT, "lib")])
        ours["heap_mpy"] = min_heap_kb("httpd", [tmp])
        theirs["heap_src"] = min_heap_kb("microdot", [os.path.dirname(microdot_dir())])
        theirs["heap_mpy"] = min_heap_kb("microdot", [tmp])
        ours["cost_mpy"] = module_cost("httpd", [tmp])
        theirs["cost_mpy"] = module_cost("microdot", [tmp])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        ("sequential req/s", "seq_rps", "%.0f"),
        ("sequential p50 ms", "seq_p50", "%.2f"),
        ("sequential p99 ms", "seq_p99", "%.2f"),
        ("%d concurrent req/s" % a.k, "conc_rps", "%.0f"),
        ("%d concurrent p50 ms" % a.k, "conc_p50", "%.2f"),
        ("%d concurrent p99 ms" % a.k, "conc_p99", "%.2f"),
        ("mem_free idle (B)", "mem_idle", "%d"),
        ("mem_free after %d seq (B)" % a.n, "mem_seq", "%d"),
        ("mem_free after %d conc (B)" % a.n, "mem_conc", "%d"),
        ("min heap to import .py (KB)", "heap_src", "%d"),
        ("min heap to import .mpy (KB)", "heap_mpy", "%d"),
        ("module heap cost .mpy (B)", "cost_mpy", "%d"),
        ("non-200 replies seq", "seq_bad", "%d"),
        ("non-200 replies conc", "conc_bad", "%d"),
    ]
    print("MicroPython unix port, -X heapsize=%s, %s; %d requests per run, one per connection"
          % (HEAP, "httpd from source, microdot .mpy" if a.source else "both as .mpy", a.n))
    print("%-28s %12s %12s %14s" % ("", "httpd", "microdot", "ours/microdot"))
    for label, key, fmt in rows:
        x, y = ours[key], theirs[key]
        ratio = "%.2f" % (x / y) if isinstance(x, (int, float)) and y else "-"
        print("%-28s %12s %12s %14s" % (label, fmt % x if x is not None else "?",
                                         fmt % y if y is not None else "?", ratio))
    if not (ours["alive"] and theirs["alive"]):
        print("a server died during the run")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
