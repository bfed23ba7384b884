"""The heap at the board's budget, measured with the board's word size (issue 18 §1).

    .venv/bin/python tools/bench/heap_bench.py [--seconds 20] [--mp32 PATH]

The venv's MicroPython unix port is 64-bit; the ESP32 is 32-bit, and the
firmware's objects take about 1.5 times the bytes on the 64-bit port. PATH
(or PBCTL_MICROPYTHON32) names a 32-bit build of the same unix port (any
MicroPython >= 1.25 unix build with `gcc -m32`, vfs.VfsRom and hashlib.sha1):
with it the firmware runs on the board's word size at the board's 96 KB.

For each row (interpreter, mode, heap) the firmware runs as the e2e tests run
it (tools/simrun.Sim; romfs: the code in a ROMFS image outside the budget,
mpy: the .mpy files on the heap): 8 Power Brain EVSEs configured (set_params,
one a request), 8 cars charging, the diag log on; then for SECONDS four
clients ask in a loop (get_dev_info; get_params as admin; the web UI's
app.js; get_diag_log), and a fifth asks sys_info every 0.5 s (its mem_free is
measured after a collection). Printed: heap free after boot (the firmware's
own figure, 3 devices), after the 8 EVSEs, the lowest sys_info figure under
the load, the replies (200 / 503 "out of memory" / other), control_oom, and
the lowest figure against the 32-bit ROMFS row's (the baseline, same run).
"""
import argparse
import json
import os
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import simrun  # noqa: E402

EVSES = (1, 4, 5, 6, 7, 8, 9, 10)
JSON = {"Content-Type": "application/json"}
LOAD = (("cmd=get_dev_info", None), ("cmd=get_params", simrun.ADMIN), (None, None),
        ("cmd=get_diag_log", simrun.ADMIN))


def ask(sim, query, auth):
    """A status, asked as the e2e tests ask; app.js when query is None."""
    if query is None:
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", sim.http_port, timeout=10)
        try:
            c.request("GET", "/app.js")
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()
    return sim.request(query, auth)[0]


def row(binary, mode, heap, seconds):
    if binary:
        os.environ["PBCTL_MICROPYTHON"] = binary
    else:
        os.environ.pop("PBCTL_MICROPYTHON", None)
    out = {"bits": simrun.word_bits(), "mode": mode, "heap": heap}
    sim = simrun.Sim(sim_args=["--evse-ids", ",".join(map(str, EVSES))], heap=heap, mode=mode)
    try:
        sim.start()
    except RuntimeError as e:
        sim.stop()
        out["error"] = " ".join(str(e).split())[:200]
        return out
    try:
        time.sleep(1)
        m = re.search(r"heap free (\d+)", "".join(sim.fw_lines))
        out["boot"] = int(m.group(1)) if m else None
        for k in EVSES[1:]:
            d = {"dev_type": "evse_powerbrain", "address": "rtu:%d" % k, "name": "wb%d" % k}
            for _ in range(10):  # asked again after a 503, as the web UI does
                st = sim.request("cmd=set_params", simrun.ADMIN, json.dumps({"devices": [d]}).encode(),
                                 "POST", JSON)[:2]
                if st[0] != 503:
                    break
                time.sleep(0.3)
            if st != (200, "ok"):
                out["error"] = "adding EVSE %d: %r" % (k, st)
                return out
        for k in EVSES:
            sim.control(cmd="plug", slave=k, car={"phases": 7, "max_ma": 16000})
        sim.request("cmd=set_diag_logging&enable=1", simrun.ADMIN)
        time.sleep(3)
        info = sim.get("cmd=sys_info", simrun.ADMIN)
        out["eight"] = info[1]["mem_free"] if info[0] == 200 else None
        counts = {}
        low = [out["eight"] or 1 << 30]
        end = time.time() + seconds
        lock = threading.Lock()

        def client(k):
            q, auth = LOAD[k]
            while time.time() < end:
                try:
                    st = ask(sim, q, auth)
                except OSError:
                    st = "no answer"
                with lock:
                    counts[st] = counts.get(st, 0) + 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(len(LOAD))]
        for t in threads:
            t.start()
        while time.time() < end:
            st, d = sim.get("cmd=sys_info", simrun.ADMIN)
            if st == 200:
                low.append(d["mem_free"])
                out["control_oom"] = d["control_oom"]
            else:
                counts["sys_info " + str(st)] = counts.get("sys_info " + str(st), 0) + 1
            time.sleep(0.5)
        for t in threads:
            t.join()
        out["lowest"] = min(low)
        out["replies"] = counts
        out["memory_errors"] = "".join(sim.fw_lines).count("MemoryError")
    finally:
        sim.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--mp32", default=os.environ.get("PBCTL_MICROPYTHON32", ""))
    a = ap.parse_args()
    rows = []
    if a.mp32:
        rows += [(a.mp32, "romfs", "96k"), (a.mp32, "mpy", "96k")]
    else:
        print("no 32-bit build named (--mp32 or PBCTL_MICROPYTHON32): the 64-bit rows only")
    rows += [(None, "romfs", "96k"), (None, "romfs", "128k"), (None, "romfs", "144k"),
             (None, "mpy", "144k")]
    results = [row(b, m, h, a.seconds) for b, m, h in rows]
    base = next((r.get("lowest") for r in results if r["bits"] == 32 and r["mode"] == "romfs"), None)
    print("\n| interpreter | mode | heap | free after boot (3 devices) | free with 8 EVSEs | lowest under load |"
          " vs 32-bit ROMFS 96k | replies | control_oom | MemoryError in the log |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print("| %d-bit | %s | %s | %s |" % (r["bits"], r["mode"], r["heap"], r["error"]))
            continue
        ratio = "%.2f" % (r["lowest"] / base) if base else ""
        print("| %d-bit | %s | %s | %s | %s | %d | %s | %s | %s | %d |" % (
            r["bits"], r["mode"], r["heap"], r["boot"], r["eight"], r["lowest"], ratio,
            json.dumps(r["replies"], sort_keys=True, default=str), r.get("control_oom"), r["memory_errors"]))
    os.environ.pop("PBCTL_MICROPYTHON", None)


if __name__ == "__main__":
    main()
