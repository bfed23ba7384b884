"""The Modbus TCP gateway (issue 14, INTEGRATIONS.md §2) end to end: the
firmware under MicroPython against the simulator, pymodbus as an independent
Modbus TCP client.

Site: E1 (slave 1) and E2 (rtu:4) Power Brain wallboxes, M1 (slave 2) the grid
meter, M2 (slave 3); max_total_current 32 A; modbus_tcp 2 on three free
consecutive ports. The simulator's request log shows what reached the bus.
"""
import json
import random
import socket
import struct
import threading
import time

import pytest
from pymodbus.client import ModbusTcpClient

from conftest import assert_clean_log
from mp import free_base
from simrun import ADMIN, Sim, wait_for

JSON = {"Content-Type": "application/json"}
MAX = 32000
CYCLE_MS = 1000
# what the control loop reads every cycle, once the devices are known
POLLED = {(3, 8058, 12), (3, 8092, 3), (3, 8087, 1)}  # (8087: the relay, read back on a box with feature bit 8)


def set_params(s, body):
    st, obj = s.request("cmd=set_params", ADMIN, json.dumps(body).encode(), "POST", JSON)[:2]
    assert (st, obj) == (200, "ok"), (body, obj)


@pytest.fixture(scope="module")
def site():
    s = Sim(sim_args=["--evse-ids", "1,4"])
    s.start()
    try:
        s.base = free_base()
        set_params(s, {"devices": [{"dev_id": "M1", "role": 3}]})
        set_params(s, {"devices": [{"dev_type": "evse_powerbrain", "address": "rtu:4", "name": "b"}]})
        for e in ("E1", "E2"):
            set_params(s, {"devices": [{"dev_id": e, "pause_min_time": 0}]})
        set_params(s, {"max_total_current": MAX, "cycle_time": CYCLE_MS,
                       "modbus_tcp": 2, "modbus_tcp_port": s.base})
        wait_for(lambda: all(d.get("state", 6) != 6 for d in s.get("cmd=get_dev_info")[1]["devices"]
                             if d["dev_id"] in ("E1", "E2")), 10, "both wallboxes read")
        yield s
    finally:
        s.stop()
        log = assert_clean_log(s)
        assert "control cycle:" not in log, log
        assert "mbtcp:" not in log, log


def client(s, k=0):
    c = ModbusTcpClient("127.0.0.1", port=s.base + k, timeout=5, retries=0)
    assert c.connect()
    return c


def mark(s):
    """The request log's next sequence number."""
    return s.control(cmd="requests", since=0, slave=255)["next"]


def log_since(s, since):
    return s.control(cmd="requests", since=since)["items"]


def regs(s, slave, addr, n):
    return s.control(cmd="get_regs", slave=slave, addr=addr, count=n)["values"]


def read(c, addr, n, unit=0):
    r = c.read_holding_registers(addr, count=n, device_id=unit)
    return ("exc", r.exception_code) if r.isError() else r.registers


def write(c, addr, v, unit=0):
    r = c.write_register(addr, v, device_id=unit)
    return ("exc", r.exception_code) if r.isError() else "ok"


def writes(items, slave, addr):
    return [i["values"] for i in items if i["fn"] in (6, 16) and i["slave"] == slave and i["addr"] == addr
            and i["answered"]]


def fresh_read(s, addr, n, unit=0):
    """A read on a new connection; None when the gateway is not (yet) there."""
    try:
        c = ModbusTcpClient("127.0.0.1", port=s.base, timeout=2, retries=0)
        try:
            return read(c, addr, n, unit) if c.connect() else None
        finally:
            c.close()
    except Exception:
        return None


def u32(hi, lo):
    return (hi << 16 | lo) - (1 << 32 if hi & 0x8000 else 0)


def test_evcc_sequence_is_answered_from_the_cache(site):
    """evcc's cfos charger (startup: 8112, 8057, 8113; then status, enabled,
    power, energy, currents) and cfos meter (4702 unit 2: power, energy) with
    the values the devices hold, and not one bus transaction for them."""
    site.control(cmd="plug", slave=1, car={"phases": 7, "max_ma": 16000})
    wait_for(lambda: site.control(cmd="state")["evses"]["1"]["current_ma"] == [16000] * 3, 20, "car charging")
    site.control(cmd="physics", on=False)  # registers frozen: the cache must equal them
    time.sleep(2.5 * CYCLE_MS / 1000)
    since = mark(site)
    c, m = client(site), client(site, 1)
    try:
        got = {
            "meter_type": read(c, 8112, 1, 1), "flags": read(c, 8057, 1, 1), "features": read(c, 8113, 1, 1),
            "status": read(c, 8092, 1, 1), "enabled": read(c, 8094, 1, 1), "power": read(c, 8062, 2, 1),
            "energy": read(c, 8058, 4, 1), "currents": read(c, 8064, 6, 1), "limit": read(c, 8093, 1, 1),
            "m_power": read(m, 8062, 2, 2), "m_energy": read(m, 8058, 4, 2),
            # unit 0 (the port's own device) and 255 mean the same
            "status0": read(c, 8092, 1, 0), "m_energy255": read(m, 8058, 4, 255),
            "common": read(c, 8000, 32), "voltages": read(m, 8045, 3),
            # evcc's writes: Enable(true), MaxCurrent(16) in 0.1 A, phases1p3p(3)
            "enable": write(c, 8094, 1, 1), "max_current": write(c, 8093, 160, 1), "phases": write(c, 8087, 0, 1),
        }
        items = log_since(site, since)
    finally:
        c.close()
        m.close()
    want = {
        "meter_type": [1], "flags": [1], "features": [0x100], "status": [2], "enabled": [1],
        "power": regs(site, 1, 8062, 2), "energy": regs(site, 1, 8058, 4), "currents": [0, 160] * 3,
        "limit": [160], "m_power": regs(site, 2, 8062, 2), "m_energy": regs(site, 2, 8058, 4),
        "status0": [2], "m_energy255": regs(site, 2, 8058, 4),
        "common": regs(site, 1, 8000, 32), "voltages": [230, 230, 230],
        "enable": "ok", "max_current": "ok", "phases": "ok",
    }
    if u32(*want["power"]) == -1:  # unknown power: currents x voltages
        want["power"] = [0, 3 * 16 * 230]
    site.control(cmd="physics", on=True)  # (before any assert: the other tests need it)
    assert got == want
    assert u32(*got["m_power"]) >= 3 * 16 * 230  # the grid meter sees the car
    reads = {(i["fn"], i["addr"], i["count"]) for i in items if i["fn"] == 3}
    assert reads <= POLLED, reads  # the control loop's own reads only
    assert [i for i in items if i["fn"] != 3] == []  # what evcc wrote was in force already
    site.control(cmd="physics", on=True)
    gw = site.get("cmd=sys_info")[1]["links"]["mbtcp"]
    assert gw["mode"] == 2 and gw["port"] == site.base and gw["error"] == ""


def test_other_reads_go_to_the_bus(site):
    since = mark(site)
    c = client(site)
    try:
        assert read(c, 8096, 15) == regs(site, 1, 8096, 15)  # last_rfid (evcc's Identify)
        assert read(c, 8044, 1, 4) == regs(site, 4, 8044, 1)
        assert read(c, 9000, 1) == ("exc", 2)  # the device's exception, passed on
        assert read(c, 8092, 1, 9) == ("exc", 10)  # no such device: no bus traffic
    finally:
        c.close()
    got = [(i["slave"], i["addr"], i["count"]) for i in log_since(site, since)
           if i["fn"] == 3 and (i["fn"], i["addr"], i["count"]) not in POLLED]
    assert got == [(1, 8096, 15), (4, 8044, 1), (1, 9000, 1)]


def test_a_cap_below_the_share_is_on_the_wire_when_the_reply_comes(site):
    c = client(site)
    try:
        since = mark(site)
        assert write(c, 8093, 100) == "ok"  # 10 A
        assert writes(log_since(site, since), 1, 8093) == [[100]]  # written before the reply
        assert read(c, 8093, 1) == [100]  # in force on the box
        since = mark(site)
        assert write(c, 8093, 0) == "ok"  # below the minimum: stops the wallbox
        assert writes(log_since(site, since), 1, 8093) == [[0]]
        assert read(c, 8093, 1) == [0]
        assert write(c, 8093, 160) == "ok"
        wait_for(lambda: read(c, 8093, 1) == [160], 5, "16 A again")
    finally:
        c.close()


def test_enable_phases_and_disconnect_become_requests(site):
    c = client(site)
    try:
        m2 = client(site, 2)  # meter 2's port, unit 1: E1
        since = mark(site)
        assert write(m2, 8094, 0, 1) == "ok"
        assert writes(log_since(site, since), 1, 8094) == [[0]]
        assert read(c, 8094, 1) == [0]
        assert write(m2, 8094, 1, 1) == "ok"
        m2.close()
        wait_for(lambda: read(c, 8094, 1) == [1], 5, "enabled again")
        since = mark(site)
        # one phase wished, then three (phase switching decides; on E2, which has no
        # car: E1's car would really be switched, test_phase_switching.py)
        assert write(c, 8087, 1, 4) == "ok"
        assert write(c, 8087, 0, 4) == "ok"
        assert write(c, 8086, 3, 4) == "ok"
        items = log_since(site, since)
        assert writes(items, 4, 8086) == [[3]]
        assert writes(items, 4, 8087) == []  # never passed on by the gateway
    finally:
        c.close()


def test_refused_writes(site):
    c, m = client(site), client(site, 1)
    try:
        since = mark(site)
        assert write(c, 8044, 7) == ("exc", 2)  # not a control register
        assert write(m, 8093, 60) == ("exc", 2)  # a meter
        assert write(c, 8094, 2) == ("exc", 3)
        assert write(c, 8087, 3) == ("exc", 3)
        r = c.write_registers(8093, [60, 0, 0], device_id=0)  # 8095: all or nothing
        assert r.isError() and r.exception_code == 2
        r = c.write_registers(8093, [60, 1], device_id=0)
        assert not r.isError()
        assert write(c, 8093, 60, 9) == ("exc", 10)
        r = c.read_input_registers(8092, count=1, device_id=0)  # function 4
        assert r.isError() and r.exception_code == 1
        w = writes(log_since(site, since), 1, 8093)
        assert w == [[60]], w  # only the fn 16 that was whole
        set_params(site, {"modbus_tcp": 1})
        c.close()
        wait_for(lambda: fresh_read(site, 8092, 1) == [2], 5, "the gateway back in mode 1")
        c = client(site)
        assert write(c, 8093, 100) == ("exc", 1)
        assert read(c, 8092, 1) == [2]
        assert site.get("cmd=get_params")[1]["modbus_tcp"] == 1
        st, obj = site.request("cmd=set_params", ADMIN, b'{"modbus_tcp": 3}', "POST", JSON)[:2]
        assert (st, obj) == (400, "bad value: modbus_tcp")
    finally:
        set_params(site, {"modbus_tcp": 2})
        c.close()
        m.close()


def test_stopping_withdraws_the_cap(site):
    wait_for(lambda: fresh_read(site, 8093, 1) == [160], 10, "16 A (mode 2 again)")
    c = client(site)
    assert write(c, 8093, 80) == "ok"
    assert read(c, 8093, 1) == [80]
    c.close()
    since = mark(site)
    set_params(site, {"modbus_tcp": 0})
    wait_for(lambda: writes(log_since(site, since), 1, 8093)[-1:] == [[160]], 5, "cap withdrawn")
    assert "mbtcp" not in site.get("cmd=sys_info")[1]["links"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", site.base), 1).close()
    set_params(site, {"modbus_tcp": 2})
    wait_for(lambda: fresh_read(site, 8093, 1) == [160], 5, "listening again")


def test_a_device_that_does_not_answer(site):
    c = client(site)
    try:
        site.control(cmd="offline", slave=4, on=True)
        wait_for(lambda: read(c, 8092, 1, 4) == ("exc", 11), 5, "E2 missed its poll")
        assert read(c, 8058, 4, 4) == ("exc", 11)
        assert read(c, 8000, 2, 4) == [0xCF05, 0]  # read once: still answered
        assert read(c, 8096, 1, 4) == ("exc", 11)  # through the bus: no answer
    finally:
        site.control(cmd="offline", slave=4, on=False)
        c.close()
    c = client(site)
    wait_for(lambda: read(c, 8092, 1, 4) == [0], 5, "E2 back")
    c.close()


def test_at_most_four_clients(site):
    cs = [client(site, k % 3) for k in range(4)]
    try:
        for c in cs:
            assert read(c, 8092, 1, 1) == [2]
        s5 = socket.create_connection(("127.0.0.1", site.base + 2), 2)
        s5.settimeout(2)
        s5.sendall(struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 8092, 1))
        try:
            got = s5.recv(100)
        except ConnectionResetError:  # (closed with our request unread)
            got = b""
        assert got == b""  # closed at once, no reply
        s5.close()
        cs.pop().close()
        time.sleep(0.2)
        cs.append(client(site, 2))
        assert read(cs[-1], 8092, 1, 1) == [2]
    finally:
        for c in cs:
            c.close()
    assert site.get("cmd=sys_info")[1]["links"]["mbtcp"]["refused"] >= 1


def test_fuzz_and_flood_keep_the_control_cycle(site):
    """Malformed MBAP headers, lengths, unit ids and function codes, and a
    client that floods: no crash, the heap flat, the other client served,
    the control cycle on time."""
    before = site.get("cmd=sys_info")[1]
    good = client(site)
    rnd = random.Random(14)
    stop = []
    frames = [
        b"\x00\x01\x00\x01\x00\x06\x01\x03\x1f\x9c\x00\x01",  # protocol id 1
        b"\x00\x01\x00\x00\x00\x01\x01",  # length 1
        b"\x00\x01\x00\x00\x01\x00\x01\x03",  # length 256
        b"\x00\x01\x00\x00\x00\x07\x01\x03\x1f\x9c\x00\x01\x00",  # length does not fit fn 3
        b"\x00\x01\x00\x00\x00\x06\xf8\x03\x1f\x9c\x00\x01",  # unit 248: exc 10
        b"\x00\x01\x00\x00\x00\x06\x01\x2b\x1f\x9c\x00\x01",  # fn 43: exc 1
        b"\x00\x01\x00\x00\x00\x06\x01\x03\x1f\x9c\x00\x00",  # count 0: exc 3
        b"\x00\x01\x00\x00\x00\x06",  # truncated
    ]

    def fuzz():
        while not stop:
            try:
                s = socket.create_connection(("127.0.0.1", site.base + rnd.randrange(3)), 2)
                s.settimeout(1)
                f = rnd.choice(frames) if rnd.random() < 0.7 else bytes(rnd.randrange(256) for _ in range(
                    rnd.randrange(1, 40)))
                s.sendall(f * rnd.randrange(1, 4))
                try:
                    s.recv(300)
                except OSError:
                    pass
                s.close()
            except OSError:
                time.sleep(0.01)

    def flood():
        while not stop:
            try:
                s = socket.create_connection(("127.0.0.1", site.base), 2)
                s.settimeout(3)
                s.sendall(struct.pack(">HHHBBHH", 1, 0, 6, 0, 3, 8062, 2) * 100)  # pipelined
                t = time.time()
                while not stop and time.time() - t < 3:
                    if not s.recv(4096):
                        break
                s.close()
            except OSError:
                time.sleep(0.01)

    ts = [threading.Thread(target=fuzz), threading.Thread(target=flood)]
    for t in ts:
        t.start()
    served = 0
    try:
        end = time.time() + 8
        while time.time() < end:
            try:
                if read(good, 8092, 1, 1) == [2]:
                    served += 1
            except Exception:
                pass
            time.sleep(0.1)
    finally:
        stop.append(1)
        for t in ts:
            t.join()
        good.close()
    time.sleep(1)
    after = site.get("cmd=sys_info")[1]
    gw = after["links"]["mbtcp"]
    assert served >= 40, (served, gw)  # the client that follows the rules is served
    assert gw["malformed"] > 0 and gw["throttled"] > 0, gw
    assert after["cycles"] - before["cycles"] >= 8, (before, after)  # ~1 a second
    assert after["cycle_ms"] < CYCLE_MS // 2, after
    assert after["control_oom"] == before["control_oom"]
    assert abs(after["mem_free"] - before["mem_free"]) < 4096, (before["mem_free"], after["mem_free"])


def test_a_cap_above_the_share_does_not_pass_the_fuse(site):
    site.control(cmd="house", ma=[20000, 20000, 20000])
    c = client(site)
    try:
        wait_for(lambda: read(c, 8093, 1)[0] * 100 <= MAX - 20000, 10, "limit cut to the share")
        since = mark(site)
        assert write(c, 8093, 320) == "ok"  # 32 A asked: more than the fuse leaves
        time.sleep(3 * CYCLE_MS / 1000)
        w = writes(log_since(site, since), 1, 8093)
        assert all(v[0] * 100 <= MAX - 20000 + 1000 for v in w), w
        assert read(c, 8093, 1)[0] * 100 <= MAX - 20000 + 1000
        grid = site.control(cmd="state")["meters"]["2"]["current_ma"]
        assert max(grid) <= MAX, grid
    finally:
        site.control(cmd="house", ma=[0, 0, 0])
        c.close()
