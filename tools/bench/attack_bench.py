"""Attacks on the LAN (issue 13: BENCHMARKS.md, Reliability): the firmware
under MicroPython (ROMFS mode, simrun's heap, `--heap` for another) against
the simulator, each part on a fresh controller (its failure table empty).

1. PIN guessing: `get_user&id=U&rfid=NNNN` as fast as one client can, from
   one address and from a new address for every guess: guesses *checked*
   (answered 403 "unknown rfid"; a 429 checked nothing) per 10 s.
2. The admin under a rotating-address flood: an attacker with a new address
   and one wrong password every 0.25 s (the report's attack) for 40 s,
   while the admin, who logged in before from its address, logs in every
   0.5 s: the admin's successes, and the attacker's guesses checked per 10 s.
   Goals: >= 95 % and <= 40.
3. The control loop under HTTP load: two wallboxes charging behind the grid
   meter (cycle_time 1000 ms), the house load stepped over the fuse while
   (a) nothing, (b) 20 clients poll get_dev_info as fast as they can, (c) 6
   slow heads send a header line every 0.5 s and 2 clients poll: from the
   simulator's request log, the interval between the grid meter's reads
   (p50/p99/max) and the overload reaction (grid read that showed it -> the
   first limit write after it). Goal: p99 as without load, reaction within
   one cycle.

    .venv/bin/python tools/bench/attack_bench.py [--heap 128k] [--part 1|2|3]
"""
import argparse
import json
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from simrun import ADMIN, Sim  # noqa: E402

JSON = {"Content-Type": "application/json"}
UID = "bench-user"
PIN = "4711"
CYCLE_MS = 1000
GRID = 2
SLAVES = (1, 4)


def post(s, query, body, auth=ADMIN):
    return s.request(query, auth, json.dumps(body).encode(), "POST", JSON)[:2]


def windows(events, secs):
    """checked guesses per 10 s window: [count, ...] over the run"""
    n = max(1, int(secs // 10))
    out = [0] * n
    for t in events:
        k = int(t // 10)
        if k < n:
            out[k] += 1
    return out


def pin_guessing(heap, secs=30):
    res = {}
    for mode in ("one address", "a new address every guess"):
        with Sim(heap=heap) as s:
            assert post(s, "cmd=set_user", {"id": UID, "name": "b", "rfids": [{"id": PIN}]}) == (200, "ok")
            t0 = time.time()
            checked, codes, k = [], {}, 0
            while time.time() - t0 < secs:
                k += 1
                src = "127.0.3.1" if mode == "one address" else "127.0.%d.%d" % (3 + k // 250, 1 + k % 250)
                guess = "%04d" % (k % 10000 if k % 10000 != int(PIN) else 0)
                st = s.get("cmd=get_user&id=%s&rfid=%s" % (UID, guess), source=src)[0]
                codes[st] = codes.get(st, 0) + 1
                if st == 403:
                    checked.append(time.time() - t0)
            w = windows(checked, secs)
            res[mode] = {"tries": k, "replies": codes, "checked_per_10s": w, "checked_per_10s_max": max(w)}
    return res


def admin_under_flood(heap, secs=40):
    with Sim(heap=heap) as s:
        assert s.get("cmd=get_users", ADMIN)[0] == 200  # the admin logged in before, from its address
        stop = threading.Event()
        checked = []
        att = {}
        t0 = time.time()

        def attacker():
            k = 0
            while not stop.is_set():
                k += 1
                src = "127.0.%d.%d" % (5 + k // 250, 1 + k % 250)
                try:
                    st = s.get("cmd=get_users", ("admin", "guess%d" % k), source=src)[0]
                except OSError as e:
                    st = type(e).__name__
                att[st] = att.get(st, 0) + 1
                if st == 401:
                    checked.append(time.time() - t0)
                time.sleep(0.25)

        th = threading.Thread(target=attacker, daemon=True)
        th.start()
        ok = n = 0
        adm = {}
        while time.time() - t0 < secs:
            try:
                st = s.get("cmd=get_users", ADMIN)[0]
            except OSError as e:
                st = type(e).__name__
            adm[st] = adm.get(st, 0) + 1
            ok += st == 200
            n += 1
            time.sleep(0.5)
        stop.set()
        th.join(5)
        w = windows(checked, secs)
        return {"admin_ok": ok, "admin_tries": n, "admin_ok_pct": round(100.0 * ok / n, 1), "admin_replies": adm,
                "attacker_replies": att, "attacker_checked_per_10s": w, "attacker_checked_per_10s_max": max(w)}


def _flood(s, n, stop, counts):
    def one(k):
        while not stop.is_set():
            try:
                st = s.request("cmd=get_dev_info", timeout=5, source="127.0.1.%d" % (k + 1))[0]
            except Exception:
                st = "error"
            counts[st] = counts.get(st, 0) + 1
            if st != 200:
                time.sleep(0.02)

    return [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]


def _slow_heads(s, n, stop):
    def one(k):
        while not stop.is_set():
            try:
                c = socket.create_connection(("127.0.0.1", s.http_port), timeout=5,
                                             source_address=("127.0.2.%d" % (k + 1), 0))
                c.sendall(b"GET /cnf?cmd=get_dev_info HTTP/1.1\r\n")
                while not stop.is_set():
                    time.sleep(0.5)
                    c.sendall(b"X-Slow: 1\r\n")
            except OSError:
                time.sleep(0.1)  # dropped for another client: again
            finally:
                try:
                    c.close()
                except Exception:
                    pass

    return [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]


def control_under_load(heap):
    s = Sim(heap=heap, sim_args=["--evse-ids", ",".join(str(x) for x in SLAVES)])
    s.start()
    out = {}
    try:
        for body in ({"devices": [{"dev_id": "M1", "role": 3}]},
                     {"devices": [{"dev_type": "evse_powerbrain", "address": "rtu:4", "name": "b"}]},
                     {"max_total_current": 32000, "cycle_time": CYCLE_MS}):
            assert post(s, "cmd=set_params", body) == (200, "ok")
        for slave in SLAVES:
            s.control(cmd="plug", slave=slave, car={"phases": 7, "max_ma": 16000})
        time.sleep(6)
        for name in ("no load", "20 clients", "6 slow heads + 2 clients"):
            st0 = s.get("cmd=sys_info")[1]
            stop = threading.Event()
            counts = {}
            ts = (_flood(s, 20, stop, counts) if name == "20 clients" else
                  _slow_heads(s, 6, stop) + _flood(s, 2, stop, counts) if name.startswith("6") else [])
            since = s.control(cmd="requests", since=0, slave=255)["next"]
            for t in ts:
                t.start()
            try:
                time.sleep(6)
                step = s.control(cmd="requests", since=0, slave=255)["next"]
                s.control(cmd="house", ma=[10000, 0, 0])  # 32 + 10 > 32 A on L1
                time.sleep(5)
            finally:
                stop.set()
                for t in ts:
                    t.join(10)
                s.control(cmd="house", ma=0)
            log = s.control(cmd="requests", since=since)["items"]
            reads = [i["t_ms"] for i in log if i["slave"] == GRID and i["fn"] == 3]
            gaps = sorted(b - a for a, b in zip(reads, reads[1:]))
            after = [i for i in log if i["seq"] >= step]
            first = next((i for i in after if i["slave"] == GRID and i["fn"] == 3), None)
            cut = [i for i in after if i["fn"] == 6 and i["addr"] == 8093 and first and i["seq"] > first["seq"]]
            st1 = s.get("cmd=sys_info")[1]
            out[name] = {"cycle_gap_ms": {"p50": gaps[len(gaps) // 2], "p99": gaps[max(0, int(len(gaps) * 0.99) - 1)],
                                          "max": gaps[-1]},
                         "reaction_ms": cut[0]["t_ms"] - first["t_ms"] if cut and first else None,
                         "control_oom": st1["control_oom"] - st0["control_oom"], "requests": counts}
            time.sleep(4)  # back at the share before the next part
    finally:
        s.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heap", default=None)
    ap.add_argument("--part", type=int, default=0)
    a = ap.parse_args()
    if a.part in (0, 1):
        print("PIN guessing: %s" % json.dumps(pin_guessing(a.heap)), flush=True)
    if a.part in (0, 2):
        print("admin under a rotating-address flood: %s" % json.dumps(admin_under_flood(a.heap)), flush=True)
    if a.part in (0, 3):
        r = control_under_load(a.heap)
        base = r["no load"]["cycle_gap_ms"]["p99"]
        for k, v in r.items():
            v["p99_vs_no_load"] = round(v["cycle_gap_ms"]["p99"] / base, 3)
        print("control loop under HTTP load: %s" % json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
