"""The firmware's HTTP API under MicroPython (-X heapsize=96k) against the simulator.

    python tools/bench/fw_bench.py [--n 1000] [--evses 8]

1. `/cnf?cmd=modbus&device=meter1&read=8002` (a bus transaction per request):
   requests/s and p50/p99 latency, one client and 4 concurrent clients.
2. `get_dev_info` with --evses Power Brain wallboxes configured (the poller
   and balancer running): requests/s, p50/p99, 1 and 4 clients (--n in all).
3. Heap (`cmd=sys_info`, free after a collection): after boot, after the
   first 100 get_dev_info and after all requests — steady state must be
   flat — and the lowest seen.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from simrun import ADMIN, Sim  # noqa: E402


REFUSALS = {}


def one(port, query):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    t = time.perf_counter()
    try:
        c.request("GET", "/cnf?" + query)
        r = c.getresponse()
        body = r.read()
    except ConnectionResetError:  # dropped at accept: no heap for the connection (httpd `dropped`)
        REFUSALS["reset"] = REFUSALS.get("reset", 0) + 1
        return None
    except http.client.IncompleteRead:  # a streamed reply that ran out of heap part-way: the
        REFUSALS["cut"] = REFUSALS.get("cut", 0) + 1  # server ends the connection (never a short 200)
        return None
    finally:
        c.close()
    if r.status == 503:
        REFUSALS[body] = REFUSALS.get(body, 0) + 1
        return None  # refused: over the connection cap, or no heap for the connection (counted)
    if r.status != 200:
        raise RuntimeError("%s -> %d" % (query, r.status))
    return time.perf_counter() - t


def load(port, query, n, clients):
    lat = []
    lock = threading.Lock()
    per = n // clients

    refused = [0]

    def run():
        mine = [one(port, query) for _ in range(per)]
        with lock:
            lat.extend(x for x in mine if x is not None)
            refused[0] += mine.count(None)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=run) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {"req_s": round(len(lat) / wall, 1), "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
            "p99_ms": round(lat[len(lat) * 99 // 100] * 1000, 2), "refused_503": refused[0]}


def mem(sim):
    for _ in range(20):  # a connection dropped or refused for lack of heap: ask again
        try:
            st, d = sim.get("cmd=sys_info")
            if st == 200:
                return d["mem_free"]
        except (ConnectionError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    raise RuntimeError("sys_info not answered")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-modbus", type=int, default=200, help="bus reads (about 10 a second at 9600 baud)")
    ap.add_argument("--evses", type=int, default=8)
    ap.add_argument("--heap", default=None, help="firmware heap (default: simrun.HEAP)")
    a = ap.parse_args(argv)
    if a.heap:
        import simrun

        simrun.HEAP = a.heap
    ids = [1] + list(range(4, 4 + a.evses - 1))
    sim = Sim(sim_args=["--evse-ids", ",".join(map(str, ids))])
    out = {}
    try:
        sim.start()
        time.sleep(1)
        out["heap_free_boot"] = mem(sim)
        for i in ids[1:]:
            body = json.dumps({"devices": [{"dev_type": "evse_powerbrain", "address": "rtu:%d" % i,
                                            "name": "box %d" % i}]}).encode()
            st = sim.request("cmd=set_params", ADMIN, body, "POST", {"Content-Type": "application/json"})[0]
            assert st == 200, st
        for i in ids:
            sim.control(cmd="plug", slave=i, car={"phases": 7 if i % 2 else 1, "max_ma": 16000})
        time.sleep(3)
        low = mem(sim)
        out["modbus_1"] = load(sim.http_port, "cmd=modbus&device=meter1&read=8002", a.n_modbus, 1)
        out["modbus_4"] = load(sim.http_port, "cmd=modbus&device=meter1&read=8002", a.n_modbus, 4)
        load(sim.http_port, "cmd=get_dev_info", 100, 1)
        out["heap_free_after_100"] = mem(sim)
        out["dev_info_1"] = load(sim.http_port, "cmd=get_dev_info", a.n // 2, 1)
        out["dev_info_4"] = load(sim.http_port, "cmd=get_dev_info", a.n // 2, 4)
        out["requests_total"] = sim.get("cmd=sys_info")[1]["requests"]
        out["heap_free_right_after"] = mem(sim)
        time.sleep(1.5)  # let the last connections close
        out["heap_free_end"] = mem(sim)
        out["heap_free_low"] = min(low, out["heap_free_after_100"], out["heap_free_right_after"], out["heap_free_end"])
        _, info = sim.get("cmd=get_dev_info")
        out["evses"] = len([d for d in info["devices"] if d["is_evse"]])
        out["cycles"] = sim.get("cmd=sys_info")[1]["cycles"]
    finally:
        sim.stop()
        errs = [x for x in sim.fw_lines if "Error" in x]
        if errs:
            print("firmware errors:", "".join(sim.fw_lines[-12:]))
    out["refusals"] = REFUSALS
    for k, v in out.items():
        print("%-22s %s" % (k, v))
    return out


if __name__ == "__main__":
    main()
