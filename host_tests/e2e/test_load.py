"""HTTP load never starves the control loop (issue 13 #4), and the admin gets
through while readers flood.

The firmware under MicroPython with two wallboxes behind a grid meter, cars
charging. 20 clients poll get_dev_info as fast as they can; meanwhile the
house load steps over the fuse. On the wire (the simulator's request log):
the grid meter is still read every cycle_time (the control loop keeps its
cycle), the overload is cut within one cycle of the grid read that showed it,
and no control pass ran short of heap (the HTTP server sheds requests first:
app.admit). Then 4 readers flood and the admin changes a parameter 20 times:
every change gets through (the last of the 4 slots is the admin's).
BENCHMARKS.md, Reliability, has the figures.
"""
import json
import threading
import time

import pytest

from conftest import assert_clean_log
from simrun import ADMIN, Sim, asked_again

JSON = {"Content-Type": "application/json"}
CYCLE_MS = 1000
MAX = 32000
GRID = 2
SLAVES = (1, 4)
FIGURES = {}


@pytest.fixture(scope="module")
def site():
    s = Sim(sim_args=["--evse-ids", "1,4"])
    s.start()
    try:
        for body in ({"devices": [{"dev_id": "M1", "role": 3}]},
                     {"devices": [{"dev_type": "evse_powerbrain", "address": "rtu:4", "name": "b"}]},
                     {"max_total_current": MAX, "cycle_time": CYCLE_MS}):
            st, obj = s.request("cmd=set_params", ADMIN, json.dumps(body).encode(), "POST", JSON)[:2]
            assert (st, obj) == (200, "ok"), obj
        for slave in SLAVES:
            s.control(cmd="plug", slave=slave, car={"phases": 7, "max_ma": 16000})
        yield s
    finally:
        s.stop()
        log = assert_clean_log(s)
        assert "control cycle:" not in log, log
        print("\nload figures: %s" % json.dumps(FIGURES))


def flood(site, n, stop, counts, query="cmd=get_dev_info"):
    """n clients in a loop, each from an address of its own (127.0.1.k): not
    the admin's (127.0.0.1, where it logged in from)."""
    def one(k):
        while not stop.is_set():
            try:
                st = site.request(query, timeout=5, source="127.0.1.%d" % (k + 1))[0]
            except Exception:
                st = "error"
            counts[st] = counts.get(st, 0) + 1
            if st != 200:
                time.sleep(0.02)  # (a refused client asks again at once, but not in a busy loop)

    ts = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]
    for t in ts:
        t.start()
    return ts


def items(site, since):
    return site.control(cmd="requests", since=since)["items"]


def test_twenty_clients_do_not_starve_the_control_loop(site):
    end = time.time() + 20
    while True:  # both cars at their share
        st = site.control(cmd="state")["evses"]
        if all(st[str(s)]["current_ma"] == [16000] * 3 for s in SLAVES):
            break
        assert time.time() < end, st
        time.sleep(0.2)
    st0 = site.get("cmd=sys_info")[1]
    stop = threading.Event()
    counts = {}
    since = site.control(cmd="requests", since=0, slave=255)["next"]
    ts = flood(site, 20, stop, counts)
    try:
        time.sleep(4)
        step = site.control(cmd="requests", since=0, slave=255)["next"]
        site.control(cmd="house", ma=[10000, 0, 0])  # 32 + 10 > 32 A on L1
        time.sleep(4)
    finally:
        stop.set()
        for t in ts:
            t.join(10)
        site.control(cmd="house", ma=0)
    log = items(site, since)
    reads = [i["t_ms"] for i in log if i["slave"] == GRID and i["fn"] == 3]
    gaps = sorted(b - a for a, b in zip(reads, reads[1:]))
    p99 = gaps[int(len(gaps) * 0.99) - 1] if len(gaps) > 1 else None
    # the cut: the first grid read after the step that shows the overload, and the writes after it
    after = [i for i in log if i["seq"] >= step]
    overload_read = None
    for i in after:
        if i["slave"] == GRID and i["fn"] == 3:
            overload_read = i
            break
    cut = [i for i in after if i["fn"] == 6 and i["addr"] == 8093 and overload_read and i["seq"] > overload_read["seq"]]
    st1 = site.get("cmd=sys_info")[1]
    FIGURES["20_clients"] = {"requests": sum(v for v in counts.values()), "statuses": counts,
                             "cycle_gap_ms": {"p50": gaps[len(gaps) // 2], "p99": p99, "max": gaps[-1]},
                             "reaction_ms": cut[0]["t_ms"] - overload_read["t_ms"] if cut and overload_read else None,
                             "control_oom": st1["control_oom"] - st0["control_oom"], "http": st1["http"]}
    assert counts.get(200, 0) > 100, counts
    # served, or shed: 503 (slots full, heap reserve) or the connection dropped at accept
    assert set(counts) <= {200, 503, "error"}, counts
    assert st1["control_oom"] == st0["control_oom"], (st0, st1)  # no pass ran short of heap
    assert gaps[-1] < CYCLE_MS + 600, gaps  # the loop kept its cycle (the bus reads of one round aside)
    assert cut and cut[0]["t_ms"] - overload_read["t_ms"] < CYCLE_MS, (overload_read, cut[:2])


def change(site, body):
    """The admin's set_params: (status, reply), or the client's OSError."""
    try:
        return site.request("cmd=set_params", ADMIN, body, "POST", JSON, timeout=10)[:2]
    except OSError as e:
        return repr(e)


def test_the_admin_gets_through_while_readers_flood(site):
    """20 set_params while 6 readers flood, each as the web UI sends it: asked
    again after a 503 "out of memory" (0.3, 0.6, 1.2 s later; README "Never
    an empty answer"). On this 64-bit host at 128k about 1 set_params in 260
    still meets a heap with no block for it while the flood's connections
    churn it (first tries: FIGURES). The readers are still served, if far
    less (~65 or ~1 000 in the 20 s, depending on how the changes fall in the
    control cycle): while a change runs, up to its install by the control
    task, they are turned away at accept (httpd: the admin's heap)."""
    stop = threading.Event()
    counts = {}
    ts = flood(site, 6, stop, counts)
    ok = first = 0
    try:
        time.sleep(0.5)
        for k in range(20):
            body = json.dumps({"title": "t%d" % k}).encode()
            st, n = asked_again(lambda: change(site, body))
            ok += st == (200, "ok")
            first += st == (200, "ok") and n == 1
            if st != (200, "ok"):
                print("admin:", st)
            time.sleep(0.1)
    finally:
        stop.set()
        for t in ts:
            t.join(10)
    FIGURES["admin_under_flood"] = {"admin_ok": ok, "first_try": first, "of": 20, "readers": counts}
    assert ok == 20, (ok, counts)
    assert counts.get(200, 0) > 20, counts  # at least about one a second
