"""Robustness campaign end to end (issue 7): the firmware under MicroPython
(simrun.HEAP, PBCTL_HEAP) against the simulator, attacked over HTTP.

1. A stream of random and malformed requests (tools/fuzz.py; FUZZ_COUNT
   requests here, `make fuzz` runs 10 000+): every reply well-formed, no
   task dies, the control loop keeps cycling, the heap stays flat.
2. Resource attacks: slowloris, more connections than the cap, oversize
   heads and bodies, half-closed sockets — a normal client is still served
   within a bound, connections over the cap are refused at once.
Plus the regression tests of what the campaign found. Auth attacks are in
test_auth_attacks.py (a firmware of their own: its failed-login table fresh).
"""
import base64
import json
import os
import socket
import threading
import time

from conftest import assert_clean_log

import fuzz
from simrun import ADMIN

FUZZ_COUNT = int(os.environ.get("FUZZ_COUNT", "1500"))
SERVE_BOUND_S = 0.5  # a normal client's request while the server is under attack
FIGURES = {}


def raw(sim, data, timeout=10.0, source="127.0.0.1"):
    return fuzz.exchange(sim.http_port, data, source, timeout)


def auth(user, pwd):
    return b"Authorization: Basic " + base64.b64encode(("%s:%s" % (user, pwd)).encode()) + b"\r\n"


def served(sim):
    """Seconds one normal get_params request took (asserting it succeeded)."""
    t = time.monotonic()
    st, obj = sim.get("cmd=get_params")
    assert st == 200 and obj["version"], (st, obj)
    return time.monotonic() - t


def sys_info(sim):
    st, obj = sim.get("cmd=sys_info")
    assert st == 200
    return obj


# ---- 1. the request stream -------------------------------------------------------
def test_random_and_malformed_request_stream(sim):
    fig = fuzz.run(sim, FUZZ_COUNT, seed=int(os.environ.get("FUZZ_SEED", "1")))
    print("\nfuzz figures: %s" % json.dumps(fig))
    FIGURES["fuzz"] = fig
    assert fig["oom_small"] == 0, fig
    assert fig["statuses"].get(500, 0) == 0
    assert fig["cycles_after"] > fig["cycles_before"], fig
    # flat heap: within 1 KB of where it started (fragmentation noise)
    assert fig["mem_free_after"] >= fig["mem_free_before"] - 1024, fig
    log = assert_clean_log(sim)
    assert "control cycle:" not in log, log


# ---- regressions ---------------------------------------------------------------------
def test_many_small_headers_are_413_not_out_of_memory(sim):
    """Found by the fuzz stream: a head of hundreds of tiny headers (within the
    2 KB head buffer) needed a header dict larger than the heap had in one
    piece: 503 "out of memory". Now more than 32 header lines are 413."""
    head = b"GET /cnf?cmd=get_params HTTP/1.1\r\n" + b"".join(b"H%d: %d\r\n" % (i, i) for i in range(200)) + b"\r\n"
    assert len(head) < 2048
    assert raw(sim, head) == (b'HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n'
                              b'Content-Length: 26\r\nConnection: close\r\n\r\n"request header too large"')
    ok = b"GET /cnf?cmd=sys_info HTTP/1.1\r\n" + b"".join(b"H%d: %d\r\n" % (i, i) for i in range(32)) + b"\r\n"
    assert raw(sim, ok).startswith(b"HTTP/1.1 200 OK\r\n")


def test_get_diag_log_of_a_full_ring_is_streamed(sim):
    """Found by the fuzz stream: get_diag_log sent the 4 KB ring as one JSON
    text, a block the heap often did not have: MemoryError -> 500. Now it is
    streamed a line at a time (no Content-Length)."""
    assert sim.get("cmd=set_diag_logging&enable=1", ADMIN) == (200, "ok")
    try:
        t = time.time()
        lines = []
        while time.time() - t < 20 and sum(len(x) + 1 for x in lines) < 3500:
            for _ in range(5):
                sim.get("cmd=modbus&device=meter1&read=8000&count=60")
            st, lines, body, hdrs = sim.request("cmd=get_diag_log", ADMIN)
            assert st == 200 and "Content-Length" not in hdrs
        assert sum(len(x) + 1 for x in lines) >= 3500, len(lines)
        assert json.loads(body) == lines
        assert sum(" tx " in x or " rx " in x for x in lines) > len(lines) // 2, lines[:5]
    finally:
        assert sim.get("cmd=set_diag_logging&enable=0", ADMIN) == (200, "ok")


def test_non_ascii_name_register_does_not_stop_the_control_loop(sim):
    """Found by the CPython dispatcher fuzz: a Power Brain whose name register
    (8016s) holds bytes >= 128 made every poll of it fail with UnicodeError —
    the whole control cycle with it — and `read=8016s` answer 500."""
    try:
        sim.control(cmd="set_regs", slave=1, addr=8016, values=[0x50E9, 0xFF42, 0x0000])
        assert sim.get("cmd=reset_device&dev_id=E1", ADMIN) == (200, "ok")  # the model is read again
        assert sim.get("cmd=modbus&device=evse&read=8016s") == (200, "P??B")
        before = sys_info(sim)["cycles"]
        end = time.time() + 10
        while time.time() < end:
            e1 = [d for d in sim.get("cmd=get_dev_info")[1]["devices"] if d["dev_id"] == "E1"][0]
            if e1["model"] and sys_info(sim)["cycles"] >= before + 2:
                break
            time.sleep(0.3)
        assert e1["model"].startswith("P??B,") and e1["state"] != 6 and not e1["com_err"], e1
        assert "control cycle:" not in "".join(sim.fw_lines)
    finally:
        sim.control(cmd="reset")
        sim.get("cmd=reset_device&dev_id=E1", ADMIN)


# ---- 2. resource attacks -----------------------------------------------------------
def slow_client(sim, stop, dropped, byte_every=0.5):
    """Slowloris: a byte of a never-ending head every byte_every s, until the
    server drops the connection (recorded: seconds it held on) or stop is set."""
    s = socket.create_connection(("127.0.0.1", sim.http_port))
    t0 = time.monotonic()
    msg = b"GET /cnf?cmd=get_params HTTP/1.1\r\nX-Slow: " + b"a" * 1000
    try:
        for i in range(len(msg)):
            if stop.is_set():
                return
            try:
                s.sendall(msg[i:i + 1])
                s.settimeout(byte_every)
                if s.recv(100) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        dropped.append(time.monotonic() - t0)
    finally:
        s.close()


def test_slowloris_others_still_served(sim):
    stop = threading.Event()
    dropped = []
    ts = [threading.Thread(target=slow_client, args=(sim, stop, dropped)) for _ in range(3)]
    for t in ts:
        t.start()
    try:
        time.sleep(0.5)
        lat = [served(sim) for _ in range(30)]  # the 4th slot serves everyone else
        p99 = sorted(lat)[-1]
        FIGURES["slowloris_max_ms"] = round(p99 * 1000, 1)
        assert p99 < SERVE_BOUND_S, lat
        for t in ts:
            t.join(10)
        # each slow client was dropped after the read timeout (3 s from accept)
        assert len(dropped) == 3 and all(2.5 < d < 5.0 for d in dropped), dropped
    finally:
        stop.set()
    assert served(sim) < SERVE_BOUND_S


def test_all_slots_held_by_slow_heads_a_new_client_takes_the_slowest(sim):
    """Issue 13 #6: four connections trickling their heads hold every slot; a
    new client waits 10 ms, then the slowest head is dropped for it (no reply)
    and it is served at once."""
    stop = threading.Event()
    dropped = []
    ts = [threading.Thread(target=slow_client, args=(sim, stop, dropped)) for _ in range(4)]
    for t in ts:
        t.start()
    try:
        time.sleep(0.5)
        before = sim.get("cmd=sys_info")  # (its own connection takes a slot: one head dropped)
        t = time.monotonic()
        st, obj = sim.get("cmd=get_params")
        took = time.monotonic() - t
        assert st == 200 and obj["version"], (st, obj)
        assert took < 0.3, took
        FIGURES["slow_head_evicted_ms"] = round(took * 1000, 1)
        for th in ts:
            th.join(10)
        assert len(dropped) == 4 and min(dropped) < 2.0, dropped  # dropped for others before the read timeout
        st, info = sim.get("cmd=sys_info")
        assert info["http"]["evicted"] >= 1, (before, info)
        assert served(sim) < SERVE_BOUND_S
    finally:
        stop.set()


def test_trickling_heads_never_keep_a_normal_client_out(sim):
    """Issue 13 #6: six sockets sending a header line every 0.5 s (each one
    coming back when dropped) denied a normal client 33 times out of 38. Now
    every normal request is served, and quickly."""
    stop = threading.Event()

    def trickler():
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", sim.http_port), timeout=5)
            except OSError:
                time.sleep(0.1)
                continue
            try:
                s.sendall(b"GET /cnf?cmd=get_params HTTP/1.1\r\n")
                while not stop.is_set():
                    time.sleep(0.5)
                    s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                pass
            finally:
                s.close()

    ts = [threading.Thread(target=trickler) for _ in range(6)]
    for t in ts:
        t.start()
    try:
        time.sleep(1.0)
        lat = []
        for _ in range(38):
            lat.append(served(sim))
            time.sleep(0.1)
        FIGURES["trickling_heads_max_ms"] = round(max(lat) * 1000, 1)
        assert max(lat) < 0.5, lat
    finally:
        stop.set()
        for t in ts:
            t.join(10)
    assert served(sim) < SERVE_BOUND_S


def test_connection_flood_over_the_cap(sim):
    """30 connections at once, none sending: while the slots are full the
    others get 503 "too many connections"; the silent ones in the slots are
    dropped without a reply (for a later connection, or at the read timeout);
    none is left hanging; then a normal client is served again."""
    import select

    socks = []
    since = {}  # connected at (connect() blocks while the listen backlog is full)
    for _ in range(30):
        socks.append(socket.create_connection(("127.0.0.1", sim.http_port)))
        since[socks[-1]] = time.monotonic()
    t0 = time.monotonic()
    got = dict((s, b"") for s in socks)
    when = {}
    open_ = list(socks)
    try:
        while open_ and time.monotonic() - t0 < 8.0:
            r, _, _ = select.select(open_, [], [], 0.1)
            for s in r:
                try:
                    d = s.recv(4096)
                except ConnectionResetError:
                    d = b""
                got[s] += d
                if not d:
                    open_.remove(s)
                    when[s] = time.monotonic() - since[s]
        refused = [s for s in socks if got[s].startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
                   and got[s].endswith(b'"too many connections"')]
        held = [s for s in socks if s not in refused]
        assert len(held) >= 4 and len(refused) >= 10 and not open_, [got[s][-30:] for s in socks]
        assert [got[s] for s in held] == [b""] * len(held)
        assert all(0.2 < when[s] < 5.0 for s in held), [when[s] for s in held]
        ms = sorted(round(when[s] * 1000) for s in refused)
        FIGURES["flood_refused_ms"] = {"p50": ms[len(ms) // 2], "max": ms[-1]}
        # those the server accepts at once get it at once (+ the 50 ms the server
        # reads on); a burst beyond the listen backlog (5) waits for the kernel's
        # retransmission (~1 s, 3 s)
        assert ms[-1] < 5000, ms
    finally:
        for s in socks:
            s.close()
    time.sleep(0.2)
    assert served(sim) < SERVE_BOUND_S


def test_oversize_head_and_body_refused_while_others_served(sim):
    results = {}

    def big_head():
        results["head"] = raw(sim, b"GET /cnf?cmd=get_params HTTP/1.1\r\nX: " + b"a" * 100000 + b"\r\n\r\n")

    def big_body():
        results["body"] = raw(sim, b"POST /cnf?cmd=set_params HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n"
                              + b"{" * 200000)

    ts = [threading.Thread(target=big_head), threading.Thread(target=big_body)]
    for t in ts:
        t.start()
    lat = [served(sim) for _ in range(10)]
    for t in ts:
        t.join(10)
    assert max(lat) < SERVE_BOUND_S, lat
    assert results["head"].endswith(b'\r\n\r\n"request header too large"')
    assert results["head"].startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert results["body"].startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert results["body"].endswith(b'\r\n\r\n"request body too large"')


def test_half_closed_sockets(sim):
    # a complete request, then the client's write side closed: answered
    assert raw(sim, b"GET /cnf?cmd=sys_info HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 OK\r\n")
    # half a head, then closed: 400
    assert raw(sim, b"GET /cnf?cmd=sys_info HTTP/1.1\r\nHost:").endswith(b'\r\n\r\n"bad request"')
    # half a body, then closed: 400 truncated body (nothing changed)
    r = raw(sim, b"POST /cnf?cmd=set_params HTTP/1.1\r\n" + auth(*ADMIN) + b"Content-Length: 50\r\n\r\n{\"title\":")
    assert r.startswith(b"HTTP/1.1 400 Bad Request\r\n") and r.endswith(b'"truncated body"')
    # connected and gone without a byte: nothing to answer
    assert raw(sim, b"") == b""
    # two clients doing nothing else, a normal one beside them (3 of the 4 slots)
    res = []

    def half_closer():
        for _ in range(20):
            res.append(raw(sim, b"GET /cnf?cmd=sys_info HTTP/1.1\r\nX"))

    ts = [threading.Thread(target=half_closer) for _ in range(2)]
    for t in ts:
        t.start()
    lat = [served(sim) for _ in range(20)]
    for t in ts:
        t.join(10)
    assert max(lat) < SERVE_BOUND_S, lat
    assert len(res) == 40 and all(r.endswith(b'\r\n\r\n"bad request"') for r in res)
    assert_clean_log(sim)


def test_report_figures():
    """Prints what this module measured (for BENCHMARKS.md)."""
    print("\nrobustness figures: %s" % json.dumps(FIGURES))
