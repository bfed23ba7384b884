"""Boot time and heap after boot of the firmware under MicroPython (issue 6).

    .venv/bin/python tools/bench/boot_bench.py [--n 10]

For each of N runs: the Power Brain simulator is started first (not timed),
then the firmware as every e2e test runs it (tools/simrun.Sim: PBCTL_MODE romfs (default) or
mpy, heap budget PBCTL_HEAP, the HOST board); timed from
launching the `micropython` process to the first 200 reply to
`/cnf?cmd=get_dev_info` (a client polls every 2 ms from the launch on).
Also from each run: heap free after boot (the firmware's own figure at
start-up, after a collection) and `cmd=sys_info`'s mem_free right after the
first reply (with that command's module loaded), and how many control cycles
had run by then.

Baselines in the same run, same interpreter and heap: the bare interpreter
(`micropython -c pass`, launch to exit), and tools/bench/hello_httpd.py
(lib/pblib/httpd.py alone as .mpy: launch to its first served request), so the
ratios show what the controller adds to the start of an HTTP server.
Prints medians (and min/max) in a table.
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mpybuild  # noqa: E402
import simrun  # noqa: E402

_POPEN = subprocess.Popen


def get(port, query=b"cmd=get_dev_info"):
    """One request: (status, body); status 0 when nothing listens yet."""
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return 0, b""
    try:
        # HTTP/1.0: a streamed reply comes unchunked (sys_info is streamed)
        c.sendall(b"GET /cnf?" + query + b" HTTP/1.0\r\nHost: bench\r\n\r\n")
        chunks = []
        while True:
            b = c.recv(65536)
            if not b:
                break
            chunks.append(b)
    except OSError:
        return 0, b""
    finally:
        c.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return (int(head.split(b" ", 2)[1]) if head else 0), body


def first_reply(port, t0, limit_s=30):
    """Seconds from t0 to the first 200 reply on port."""
    while time.perf_counter() - t0 < limit_s:
        st, _ = get(port)
        if st == 200:
            return time.perf_counter() - t0
        time.sleep(0.002)
    raise SystemExit("no reply within %d s" % limit_s)


class TimedPopen(_POPEN):
    """subprocess.Popen that remembers when the micropython process was launched
    and starts the polling client at that moment."""
    launches = []

    def __init__(self, args, *a, **kw):
        t0 = time.perf_counter()
        super().__init__(args, *a, **kw)
        if os.path.basename(str(args[0])) == "micropython":
            env = kw.get("env") or {}
            port = int(env["PBCTL_HTTP_PORT"])
            res = {"t0": t0}
            TimedPopen.launches.append(res)

            def poll():
                res["boot_s"] = first_reply(port, t0)
                res["sys_info"] = json.loads(get(port, b"cmd=sys_info")[1])
                while time.perf_counter() - t0 < 30:  # then until the first control cycle is done
                    if json.loads(get(port, b"cmd=sys_info")[1])["cycles"]:
                        res["cycle_s"] = time.perf_counter() - t0
                        break
                    time.sleep(0.01)
            res["thread"] = threading.Thread(target=poll, daemon=True)
            res["thread"].start()


def firmware_run():
    subprocess.Popen = TimedPopen  # what simrun.Sim launches its processes with
    try:
        s = simrun.Sim()
        s.start()
    finally:
        subprocess.Popen = _POPEN
    try:
        res = TimedPopen.launches[-1]
        res["thread"].join(30)
        m = None
        for _ in range(100):
            m = re.search(r"\(heap free (\d+)\)", "".join(s.fw_lines))
            if m:
                break
            time.sleep(0.02)
        return {"boot_ms": res["boot_s"] * 1000, "cycle_ms": res["cycle_s"] * 1000,
                "heap_boot": int(m.group(1)) if m else None, "heap_first": res["sys_info"]["mem_free"], "cycles": res["sys_info"]["cycles"]}
    finally:
        s.stop()


def bare_run():
    t0 = time.perf_counter()
    subprocess.run([simrun.micropython_bin(), "-X", "heapsize=" + simrun.HEAP, "-c", "pass"], check=True)
    return (time.perf_counter() - t0) * 1000


def hello_run(libdir):
    port = simrun.free_port()
    env = dict(os.environ, MICROPYPATH=libdir + ":.frozen")
    t0 = time.perf_counter()
    p = subprocess.Popen([simrun.micropython_bin(), "-X", "heapsize=" + simrun.HEAP,
                          os.path.join(HERE, "hello_httpd.py"), str(port)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=simrun.ROOT)
    try:
        while time.perf_counter() - t0 < 30:
            st, _ = get(port, b"cmd=echo")
            if st == 200:
                return (time.perf_counter() - t0) * 1000
            time.sleep(0.002)
        raise SystemExit("hello_httpd did not answer")
    finally:
        p.terminate()
        p.wait(5)


def stats(xs):
    return statistics.median(xs), min(xs), max(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    a = ap.parse_args()
    mpybuild.build(os.path.join(mpybuild.ROOT, "build", "host"), "HOST")
    with tempfile.TemporaryDirectory() as tmp:
        os.mkdir(os.path.join(tmp, "pblib"))
        subprocess.run([mpybuild.mpy_cross(), "-O3", "-o", os.path.join(tmp, "pblib", "httpd.mpy"),
                        os.path.join(mpybuild.ROOT, "lib", "pblib", "httpd.py")], check=True)
        runs, bare, hello = [], [], []
        for _ in range(a.n):  # interleaved: the machine's load hits all three alike
            bare.append(bare_run())
            hello.append(hello_run(tmp))
            runs.append(firmware_run())
    fw = [r["boot_ms"] for r in runs]
    print("boot to the first served /cnf request, %d runs, heap budget %s, mode %s" % (a.n, simrun.HEAP, simrun.MODE))
    print("| | median ms | min | max | firmware / this |")
    print("|---|---|---|---|---|")
    for name, xs in (("bare interpreter (`-c pass`)", bare), ("lib/httpd.py hello world", hello),
                     ("firmware (3 devices, simulated bus)", fw)):
        med, lo, hi = stats(xs)
        print("| %s | %.1f | %.1f | %.1f | %.2f |" % (name, med, lo, hi, statistics.median(fw) / med))
    med, lo, hi = stats([r["cycle_ms"] for r in runs])
    print("| first control cycle done (3 devices polled at 9600 baud) | %.1f | %.1f | %.1f | |" % (med, lo, hi))
    hb = [r["heap_boot"] for r in runs if r["heap_boot"] is not None]
    hf = [r["heap_first"] for r in runs]
    print("heap free after boot (firmware's figure): median %d B (min %d, max %d)" % stats(hb))
    print("heap free at the first reply (cmd=sys_info): median %d B (min %d, max %d)" % stats(hf))
    print("control cycles run by the first reply: %s" % sorted(r["cycles"] for r in runs))


if __name__ == "__main__":
    main()
