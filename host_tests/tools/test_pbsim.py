"""CPython tests of tools/pbsim/: the simulated Power Brain RS-485 bus.

The simulator runs as a subprocess; this file is its Modbus master (raw
os.read/os.write on the published tty, own CRC) and its control client.
"""
import json
import os
import re
import select
import signal
import subprocess
import termios
import time
import tty

import pytest

from pbsim import client as pbclient
from pbsim.registers import regs_int

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = os.path.join(ROOT, "tools", "scenarios")

# The source document's example answers, literally.
DOC_METER1_8002_10 = [1, 257, 256, 0, 256, 0, 26211, 26165, 11619, 13366]
DOC_METER2_ALL = json.loads(
    '{"8000d":-821755904,"8002":1,"8003":257,"8004":16777216,"8006":256,"8007":0,'
    '"8008s":"fcf5-c46d-310c","8016s":"cFos Power Brain","8040":41,"8041":1,'
    '"8042d":1000,"8044":1,"8045":230,"8046":230,"8047":230,"8050q":0,"8054d":0,'
    '"8056":0,"8057":0,"8058q":0,"8062d":-1,"8064d":0,"8066d":0,"8068d":0,'
    '"8070":0,"8071":0,"8120d":0}')
METER_KEYS = list(DOC_METER2_ALL)
EVSE_KEYS = METER_KEYS + ["8086", "8087", "8092", "8093", "8094", "8096s", "8112", "8113"]
STR_LEN = {"8008s": 8, "8016s": 16, "8096s": 15}


# ---------------------------------------------------------------------------
# A small Modbus RTU master
# ---------------------------------------------------------------------------


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(*body):
    c = crc16(bytes(body))
    return bytes(body) + bytes((c & 0xFF, c >> 8))


def regs_bytes(regs):
    out = b""
    for r in regs:
        out += bytes((r >> 8, r & 0xFF))
    return out


def read_reply(slave, regs):
    return frame(slave, 3, 2 * len(regs), *regs_bytes(regs))


def exc_reply(slave, fn, code):
    return frame(slave, fn | 0x80, code)


class ModbusError(Exception):
    def __init__(self, code):
        Exception.__init__(self, "modbus exception %d" % code)
        self.code = code


class Master:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def close(self):
        os.close(self.fd)

    def flush(self):
        termios.tcflush(self.fd, termios.TCIOFLUSH)

    def xfer(self, req, timeout=0.5, silence=False):
        """Send req; return the reply (complete by its own length) or what came before timeout."""
        os.write(self.fd, req)
        buf = b""
        end = time.monotonic() + timeout
        while True:
            need = None
            if len(buf) >= 2:
                if buf[1] & 0x80:
                    need = 5
                elif buf[1] == 3 and len(buf) >= 3:
                    need = 5 + buf[2]
                elif buf[1] in (6, 16):
                    need = 8
            if need is not None and len(buf) >= need and not silence:
                return buf
            left = end - time.monotonic()
            if left <= 0:
                return buf
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                buf += os.read(self.fd, 512)

    def request(self, req):
        rep = self.xfer(req)
        assert len(rep) >= 5, "no reply to %s: %r" % (req.hex(), rep)
        assert crc16(rep[:-2]) == rep[-2] | (rep[-1] << 8), "bad crc %s" % rep.hex()
        assert rep[0] == req[0]
        if rep[1] & 0x80:
            raise ModbusError(rep[2])
        return rep

    def read(self, slave, addr, count=1):
        rep = self.request(frame(slave, 3, addr >> 8, addr & 0xFF, 0, count))
        assert rep[2] == 2 * count
        return [(rep[3 + 2 * i] << 8) | rep[4 + 2 * i] for i in range(count)]

    def write1(self, slave, addr, value):
        req = frame(slave, 6, addr >> 8, addr & 0xFF, value >> 8, value & 0xFF)
        rep = self.request(req)
        assert rep == req  # fn 6 echoes the request
        return rep

    def write(self, slave, addr, values):
        req = frame(slave, 16, addr >> 8, addr & 0xFF, 0, len(values), 2 * len(values),
                    *regs_bytes(values))
        rep = self.request(req)
        assert rep == frame(slave, 16, addr >> 8, addr & 0xFF, 0, len(values))
        return rep

    def read_key(self, slave, key):
        addr = int(key.rstrip("dqs"))
        if key.endswith("s"):
            regs = self.read(slave, addr, STR_LEN[key])
            raw = regs_bytes(regs)
            return raw.split(b"\0", 1)[0].decode("ascii")
        n = {"d": 2, "q": 4}.get(key[-1], 1)
        if key == "8004":
            n = 2  # 32-bit value printed without suffix (as in the source)
        regs = self.read(slave, addr, n)
        if n == 1:
            return regs[0]
        return regs_int(regs)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simproc():
    proc, info = pbclient.launch(["--baud", "9600"], stderr=subprocess.PIPE)
    client = pbclient.Client(info["control"])
    master = Master(info["tty"])
    try:
        yield info, client, master
    finally:
        master.close()
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def sim(simproc):
    info, client, master = simproc
    client.cmd("reset")
    master.flush()
    return client, master


def log_since(client, since, **kw):
    return client.cmd("requests", since=since, **kw)["items"]


def wait_for(fn, timeout=3.0):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("condition not met in %.1fs" % timeout)
        time.sleep(0.02)


# ---------------------------------------------------------------------------
# Register contents: the document's examples
# ---------------------------------------------------------------------------


def test_meter1_read_8002_count_10_bytes(sim):
    client, m = sim
    rep = m.xfer(frame(2, 3, 0x1F, 0x42, 0, 10))
    assert rep == read_reply(2, DOC_METER1_8002_10)
    assert m.read_key(2, "8002") == 1
    assert m.read_key(2, "8062d") == -1
    assert m.read_key(2, "8016s") == "cFos Power Brain"


def test_meter2_read_all_is_the_document(sim):
    client, m = sim
    got = dict((k, m.read_key(3, k)) for k in METER_KEYS)
    assert json.dumps(got, separators=(",", ":")) == json.dumps(DOC_METER2_ALL, separators=(",", ":"))
    meter1 = dict((k, m.read_key(2, k)) for k in METER_KEYS)
    assert meter1 == dict(DOC_METER2_ALL, **{"8040": 2})


def test_evse_map(sim):
    client, m = sim
    got = dict((k, m.read_key(1, k)) for k in EVSE_KEYS)
    assert got["8008s"] == "6d31-0c2a-77e1"
    assert got["8040"] == 1 and got["8057"] == 1
    assert got["8112"] == 1 and got["8113"] == 0x100
    assert got["8092"] == 0 and got["8093"] == 0 and got["8094"] == 0
    assert got["8096s"] == ""
    for k in ("8000d", "8002", "8003", "8004", "8016s", "8042d", "8045", "8062d"):
        assert got[k] == DOC_METER2_ALL[k]
    # the document's EVSE writes
    m.write1(1, 8044, 7)
    assert m.read(1, 8044) == [7]
    m.write(1, 8050, [0, 0, 0, 1])                 # write=8050q&value=1
    assert m.read_key(1, "8050q") == 1
    m.write(1, 8044, [7, 230, 230, 230])           # write=8044&values=[7,230,230,230 ]
    assert m.read(1, 8044, 4) == [7, 230, 230, 230]
    # reset_pulses: any write clears 8050q, 8070 reads 0
    m.write1(1, 8070, 1)
    assert m.read_key(1, "8050q") == 0
    assert m.read(1, 8070) == [0]
    # volatile EVSE registers accept writes
    m.write1(1, 8093, 160)
    m.write(1, 8094, [1])
    assert m.read(1, 8093, 2) == [160, 1]


def test_reset_restores_factory(sim):
    client, m = sim
    m.write1(2, 8044, 7)
    client.cmd("set_regs", slave=3, addr=8062, values=[0, 5])
    assert client.cmd("get_regs", slave=3, addr=8062, count=2)["values"] == [0, 5]
    client.cmd("reset")
    assert m.read(2, 8044) == [1]
    assert m.read_key(3, "8062d") == -1


# ---------------------------------------------------------------------------
# Bus behaviour
# ---------------------------------------------------------------------------


def test_unknown_slave_is_silent(sim):
    client, m = sim
    for sid in (0, 4, 9, 247):
        assert m.xfer(frame(sid, 3, 0x1F, 0x40, 0, 1), timeout=0.15, silence=True) == b""
    assert m.read(2, 8002) == [1]
    st = client.cmd("stats")
    assert st["unknown_slave"] == 4


@pytest.mark.parametrize("slave,addr,count", [
    (2, 7999, 1), (2, 8032, 1), (2, 8039, 1), (2, 8048, 2), (2, 8072, 1),
    (2, 8086, 1), (2, 8119, 1), (2, 8122, 1), (2, 8030, 4), (2, 0, 1),
    (1, 8095, 1), (1, 8111, 1), (1, 8114, 1), (1, 8092, 4),
])
def test_unmapped_read_is_exception_2(sim, slave, addr, count):
    client, m = sim
    rep = m.xfer(frame(slave, 3, addr >> 8, addr & 0xFF, 0, count))
    assert rep == exc_reply(slave, 3, 2)


def test_bad_writes(sim):
    client, m = sim
    assert m.xfer(frame(2, 6, 0x1F, 0x60, 0, 1)) == exc_reply(2, 6, 2)       # unmapped
    assert m.xfer(frame(1, 6, 0x1F, 0xAC, 0, 1)) == exc_reply(1, 6, 2)       # cp_state is r
    assert m.xfer(frame(1, 16, 0x1F, 0x40, 0, 2, 4, 0, 1, 0, 2)) == exc_reply(1, 16, 2)  # 8041 r
    assert m.read(1, 8040, 2) == [1, 1]
    assert m.xfer(frame(2, 4, 0x1F, 0x40, 0, 1)) == exc_reply(2, 4, 1)       # fn 4: illegal function
    # a request with a broken CRC gets no answer and is logged
    bad = bytearray(frame(2, 3, 0x1F, 0x40, 0, 1))
    bad[-1] ^= 0x55
    assert m.xfer(bytes(bad), timeout=0.15, silence=True) == b""
    items = log_since(client, 0)
    assert items[-1]["error"] == "crc" and items[-1]["answered"] is False


def test_wire_time_9600(sim):
    client, m = sim
    t = time.monotonic()
    rep = m.xfer(frame(2, 3, 0x1F, 0x42, 0, 10))
    dt = time.monotonic() - t
    assert len(rep) == 25
    wire = (8 + 25) * 10 / 9600.0
    assert dt >= wire, dt
    assert dt < wire + 0.5, dt  # loose: only the lower bound is the point


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------

READ = frame(2, 3, 0x1F, 0x42, 0, 10)
GOOD = read_reply(2, DOC_METER1_8002_10)


@pytest.mark.parametrize("kind,expect", [
    ("timeout", b""),
    ("crc", GOOD[:-2] + bytes((GOOD[-2] ^ 0xFF, GOOD[-1] ^ 0xFF))),
    ("exception", exc_reply(2, 3, 2)),
    ("wrong_slave", frame(3, *GOOD[1:-2])),
    ("truncated", GOOD[:-3]),
])
def test_fault_kinds(sim, kind, expect):
    client, m = sim
    nxt = client.cmd("requests", since=0)["next"]
    client.cmd("fault", slave=2, kind=kind, count=1, code=2)
    rep = m.xfer(READ, timeout=0.2, silence=True)
    assert rep == expect
    assert m.xfer(READ) == GOOD
    items = log_since(client, nxt)
    assert [i["fault"] for i in items] == [kind, None]
    assert items[0]["answered"] is (kind != "timeout")
    assert client.cmd("stats")["slaves"]["2"]["faults"][kind] == 1


def test_fault_count_and_clear(sim):
    client, m = sim
    client.cmd("fault", slave=2, kind="exception", count=2, code=4)
    assert m.xfer(READ) == exc_reply(2, 3, 4)
    assert m.read(3, 8002) == [1]  # other slaves unaffected
    assert m.xfer(READ) == exc_reply(2, 3, 4)
    assert m.xfer(READ) == GOOD
    client.cmd("fault", slave=2, kind="timeout", count=-1)
    for _ in range(3):
        assert m.xfer(READ, timeout=0.12, silence=True) == b""
    client.cmd("clear_faults")
    assert m.xfer(READ) == GOOD


def test_fault_on_write_semantics(sim):
    client, m = sim
    # crc: the device executed the write, only the answer is damaged
    client.cmd("fault", slave=1, kind="crc")
    m.xfer(frame(1, 6, 8093 >> 8, 8093 & 0xFF, 0, 100), timeout=0.15, silence=True)
    assert m.read(1, 8093) == [100]
    # timeout and exception: not executed
    client.cmd("fault", slave=1, kind="timeout")
    m.xfer(frame(1, 6, 8093 >> 8, 8093 & 0xFF, 0, 50), timeout=0.15, silence=True)
    client.cmd("fault", slave=1, kind="exception")
    assert m.xfer(frame(1, 6, 8093 >> 8, 8093 & 0xFF, 0, 60)) == exc_reply(1, 6, 4)
    assert m.read(1, 8093) == [100]
    items = [i for i in log_since(client, 0) if i["fn"] == 6]
    assert [(i["fault"], i["values"]) for i in items] == [
        ("crc", [100]), ("timeout", [50]), ("exception", [60])]


def test_fault_rate(sim):
    client, m = sim
    client.cmd("fault_rate", rate=1.0, kinds=["timeout"], seed=3)
    assert m.xfer(READ, timeout=0.12, silence=True) == b""
    client.cmd("fault_rate", rate=0)
    assert m.xfer(READ) == GOOD
    client.cmd("fault_rate", rate=0.5, kinds=["exception"], seed=7, code=6)
    n = client.cmd("requests", since=0)["next"]
    reps = [m.xfer(READ) for _ in range(16)]
    faults = [i["fault"] for i in log_since(client, n)]
    assert len(faults) == 16 and any(faults) and not all(faults)
    assert reps == [exc_reply(2, 3, 6) if f else GOOD for f in faults]
    client.cmd("clear_faults")
    m.flush()
    assert m.xfer(READ) == GOOD


def test_offline(sim):
    client, m = sim
    client.cmd("offline", slave=1, on=True)
    assert m.xfer(frame(1, 3, 0x1F, 0x40, 0, 1), timeout=0.15, silence=True) == b""
    assert m.read(2, 8002) == [1]
    client.cmd("offline", slave=1, on=False)
    assert m.read(1, 8040) == [1]


# ---------------------------------------------------------------------------
# Request log, control channel
# ---------------------------------------------------------------------------


def test_request_log_records_writes(sim):
    client, m = sim
    n = client.cmd("requests", since=0)["next"]
    m.write(1, 8093, [123])
    m.write1(1, 8094, 1)
    m.read(1, 8092, 3)
    items = log_since(client, n)
    assert [(i["slave"], i["fn"], i["addr"], i["count"], i.get("values")) for i in items] == [
        (1, 16, 8093, 1, [123]), (1, 6, 8094, 1, [1]), (1, 3, 8092, 3, None)]
    assert all(i["answered"] and i["fault"] is None and i["exc"] is None for i in items)
    assert [i["seq"] for i in items] == [n, n + 1, n + 2]
    assert items[0]["t_ms"] <= items[1]["t_ms"] <= items[2]["t_ms"]
    assert client.cmd("requests", since=n + 3)["items"] == []
    assert len(log_since(client, n, slave=1, limit=2)) == 2


def test_control_errors(sim):
    client, m = sim
    assert client.raw({"cmd": "nope"}, check=False)["ok"] is False
    assert client.raw({"cmd": "get_regs", "slave": 2, "addr": 8032}, check=False)["ok"] is False
    assert client.raw({"cmd": "fault", "slave": 9, "kind": "crc"}, check=False)["ok"] is False
    assert client.raw({"cmd": "fault", "slave": 1, "kind": "zap"}, check=False)["ok"] is False
    assert client.raw({"cmd": "plug", "slave": 2}, check=False)["ok"] is False
    client.f.write(b"{not json\n")
    client.f.flush()
    res = json.loads(client.f.readline())
    assert res["ok"] is False and "json" in res["error"]
    assert client.cmd("ping")["ok"] is True


# ---------------------------------------------------------------------------
# Physics
# ---------------------------------------------------------------------------


def test_physics_charging(sim):
    client, m = sim
    client.cmd("physics", speed=10)
    client.cmd("house", ma=[1000, 2000, 3000])
    client.cmd("plug", slave=1, car={"phases": 7, "max_ma": 16000, "need_wh": 20000})
    assert m.read(1, 8092) == [1]
    m.write1(1, 8093, 100)  # 10.0 A
    m.write1(1, 8094, 1)
    wait_for(lambda: m.read_key(1, "8064d") == 100)
    assert m.read(1, 8092) == [2]
    assert [m.read_key(1, k) for k in ("8064d", "8066d", "8068d")] == [100, 100, 100]
    assert m.read_key(1, "8062d") == 3 * 10 * 230
    assert [m.read_key(2, k) for k in ("8064d", "8066d", "8068d")] == [110, 120, 130]  # grid
    assert [m.read_key(3, k) for k in ("8064d", "8066d", "8068d")] == [10, 20, 30]     # house
    wait_for(lambda: m.read_key(1, "8058q") > 0)
    # one phase via relay_select
    m.write1(1, 8087, 1)
    wait_for(lambda: m.read_key(1, "8066d") == 0)
    assert m.read_key(1, "8064d") == 100
    m.write1(1, 8087, 0)
    # stop drawing: still state C, no current
    client.cmd("car_stop_drawing", slave=1, on=True)
    assert m.read(1, 8092) == [2] and m.read_key(1, "8064d") == 0
    client.cmd("car_stop_drawing", slave=1, on=False)
    wait_for(lambda: m.read_key(1, "8064d") == 100)
    # disable: current 0, state B
    m.write1(1, 8094, 0)
    wait_for(lambda: m.read(1, 8092) == [1])
    assert m.read_key(1, "8064d") == 0
    client.cmd("unplug", slave=1)
    assert m.read(1, 8092) == [0]
    st = client.cmd("state")
    assert st["physics"] is True and st["evses"]["1"]["car"] is None


def test_pv_export_is_negative(sim):
    client, m = sim
    client.cmd("pv", ma=5000)
    client.cmd("house", ma=1000)
    assert [m.read_key(2, k) for k in ("8064d", "8066d", "8068d")] == [-40, -40, -40]
    assert m.read_key(2, "8062d") == -3 * 4 * 230


def test_scenarios(sim):
    client, m = sim
    for name in sorted(os.listdir(SCENARIOS)):
        client.cmd("scenario", file=os.path.join(SCENARIOS, name))
        assert client.cmd("state")["physics"] is True
    client.cmd("scenario", data={"speed": 10, "house": [1000, 1000, 1000],
                                 "events": [[1.0, {"cmd": "house", "ma": [7000, 0, 0]}]]})
    wait_for(lambda: client.cmd("state")["house_ma"] == [7000, 0, 0])
    assert m.read_key(3, "8064d") == 70
    assert client.raw({"cmd": "scenario", "data": {"bogus": 1}}, check=False)["ok"] is False


# ---------------------------------------------------------------------------
# Phase switching: features (8113) bit 8, relay_select (8087), the relay record
# ---------------------------------------------------------------------------

PHASE_CURRENTS = ("8064d", "8066d", "8068d")


def currents(m, slave=1):
    """The EVSE's phase currents [0.1 A] as the firmware reads them."""
    return [m.read_key(slave, k) for k in PHASE_CURRENTS]


def charging(client, m, car=None, limit_da=100):
    """Physics at speed 10, a car plugged at slave 1 and drawing limit_da on its phases."""
    client.cmd("physics", speed=10)
    client.cmd("plug", slave=1, car=car or {"phases": 7, "max_ma": 16000})
    m.write1(1, 8093, limit_da)
    m.write1(1, 8094, 1)
    phases = (car or {}).get("phases", 7)
    amps = min(limit_da, (car or {}).get("max_ma", 16000) // 100)
    want = [amps if phases >> i & 1 else 0 for i in range(3)]
    wait_for(lambda: currents(m) == want)


def relay(client, slave=1):
    return client.cmd("evse", slave=slave)


def test_features_register_and_evse_command(sim):
    client, m = sim
    assert m.read(1, 8113) == [0x100]
    st = relay(client)
    assert st["slave"] == 1 and st["features"] == 0x100 and st["relay"] == 0
    assert st["relay_select"] == 0 and st["relay_switches"] == []
    assert st["relay_switch_count"] == 0 and st["relay_under_load"] == 0
    assert client.cmd("evse", slave=1, features=0)["features"] == 0
    assert m.read(1, 8113) == [0]
    assert client.cmd("state")["evses"]["1"]["features"] == 0
    assert m.xfer(frame(1, 6, 8113 >> 8, 8113 & 0xFF, 1, 0)) == exc_reply(1, 6, 2)  # still read-only
    for bad in ({"slave": 2, "features": 0}, {"slave": 9}, {"slave": 1, "features": 65536},
                {"slave": 1, "features": -1}, {"slave": 1, "features": "256"}, {}):
        res = client.raw(dict(bad, cmd="evse"), check=False)
        assert res["ok"] is False and res["error"], bad
    assert m.read(1, 8113) == [0]  # refused commands changed nothing
    client.cmd("reset")
    assert m.read(1, 8113) == [0x100]


def test_phase_switch_sequence_without_load(sim):
    """charging_enable 0, wait until < 1 A, relay_select, charging_enable 1 (INTEGRATIONS.md §5)."""
    client, m = sim
    charging(client, m)
    since = client.cmd("requests", since=0)["next"]
    m.write1(1, 8094, 0)
    wait_for(lambda: currents(m) == [0, 0, 0])
    m.write1(1, 8087, 1)
    assert m.read(1, 8087) == [1]
    st = relay(client)
    assert st["relay"] == 1 and st["relay_select"] == 1
    assert st["relay_switch_count"] == 1 and st["relay_under_load"] == 0
    [sw] = st["relay_switches"]
    assert (sw["from"], sw["to"], sw["current_ma"], sw["under_load"]) == (0, 1, [0, 0, 0], False)
    [wr] = [i for i in log_since(client, since) if i["fn"] == 6 and i["addr"] == 8087]
    assert wr["values"] == [1] and sw["t_ms"] == wr["t_ms"]  # the moment the device executed it
    m.write1(1, 8094, 1)
    wait_for(lambda: currents(m) == [100, 0, 0])  # a 3-phase car on one phase: EVSE L1 only
    assert m.read_key(1, "8062d") == 10 * 230
    # and back to three phases, the same way
    m.write1(1, 8094, 0)
    wait_for(lambda: currents(m) == [0, 0, 0])
    m.write(1, 8087, [0])                         # fn 16 moves the relay too
    m.write1(1, 8094, 1)
    wait_for(lambda: currents(m) == [100, 100, 100])
    st = relay(client)
    assert st["relay"] == 0 and st["relay_switch_count"] == 2 and st["relay_under_load"] == 0
    assert [(s["from"], s["to"], s["under_load"]) for s in st["relay_switches"]] == [
        (0, 1, False), (1, 0, False)]
    writes = [(i["addr"], i["values"]) for i in log_since(client, since) if i["fn"] in (6, 16)]
    assert writes == [(8094, [0]), (8087, [1]), (8094, [1]), (8094, [0]), (8087, [0]), (8094, [1])]
    t = [s["t_ms"] for s in st["relay_switches"]]
    assert t[0] < t[1] and all(s["physics_ms"] > 0 for s in st["relay_switches"])


def test_phase_switch_under_load_is_a_violation(sim):
    client, m = sim
    charging(client, m)
    m.write1(1, 8087, 1)  # while 10 A flow on each phase
    assert currents(m) == [100, 0, 0]  # L2 and L3 cut by the relay at once
    st = relay(client)
    assert st["relay"] == 1 and st["relay_under_load"] == 1
    assert st["relay_switches"][-1]["current_ma"] == [10000, 10000, 10000]
    assert st["relay_switches"][-1]["under_load"] is True
    m.write1(1, 8087, 0)  # back, again under load (L1)
    wait_for(lambda: currents(m) == [100, 100, 100])  # L2, L3 ramp up again
    st = relay(client)
    assert st["relay_under_load"] == 2 and st["relay_switches"][-1]["current_ma"] == [10000, 0, 0]
    m.write1(1, 8087, 0)  # same position: no switch
    assert relay(client)["relay_switch_count"] == 2
    assert client.cmd("state")["evses"]["1"]["relay_under_load"] == 2
    client.cmd("reset")
    st = relay(client)
    assert (st["relay"], st["relay_switch_count"], st["relay_under_load"], st["relay_switches"]) == (0, 0, 0, [])


def test_under_load_means_1_a_or_more(sim):
    client, m = sim
    charging(client, m, car={"phases": 7, "max_ma": 900})  # the car takes less than offered
    m.write1(1, 8087, 1)
    sw = relay(client)["relay_switches"][-1]
    assert (sw["current_ma"], sw["under_load"]) == ([900, 900, 900], False)
    client.cmd("unplug", slave=1)
    charging(client, m, car={"phases": 1, "max_ma": 999})
    m.write1(1, 8087, 0)
    sw = relay(client)["relay_switches"][-1]
    assert (sw["current_ma"], sw["under_load"]) == ([999, 0, 0], False)
    client.cmd("unplug", slave=1)
    charging(client, m, car={"phases": 7, "max_ma": 1000})
    m.write1(1, 8087, 1)
    sw = relay(client)["relay_switches"][-1]
    assert (sw["current_ma"], sw["under_load"]) == ([1000, 1000, 1000], True)
    assert relay(client)["relay_under_load"] == 1


def test_relay_select_without_feature_bit_has_no_effect(sim):
    client, m = sim
    client.cmd("evse", slave=1, features=0)
    charging(client, m)
    assert m.write1(1, 8087, 1)                   # accepted, stored
    assert m.read(1, 8087) == [1]
    time.sleep(0.3)
    assert currents(m) == [100, 100, 100]         # but the relay did not move
    st = relay(client)
    assert st["relay"] == 0 and st["relay_select"] == 1
    assert st["relay_switch_count"] == 0 and st["relay_switches"] == []
    # the feature appears: the relay follows 8087 now (still under load here)
    client.cmd("evse", slave=1, features=0x100)
    assert currents(m) == [100, 0, 0]
    st = relay(client)
    assert st["relay"] == 1 and st["relay_under_load"] == 1


def test_one_phase_car_stays_one_phase(sim):
    client, m = sim
    charging(client, m, car={"phases": 1, "max_ma": 16000})
    for position in (1, 0, 1):
        m.write1(1, 8094, 0)
        wait_for(lambda: currents(m) == [0, 0, 0])
        m.write1(1, 8087, position)
        m.write1(1, 8094, 1)
        wait_for(lambda: currents(m) == [100, 0, 0])
    assert relay(client)["relay_under_load"] == 0


def test_slow_car_keeps_drawing_for_stop_ms(sim):
    client, m = sim
    charging(client, m, car={"phases": 7, "max_ma": 16000, "stop_ms": 2000})  # 0.2 s at speed 10
    m.write1(1, 8094, 0)
    assert m.read(1, 8092) == [2] and currents(m) == [100, 100, 100]
    m.write1(1, 8087, 1)  # too early: the car still draws
    assert relay(client)["relay_under_load"] == 1
    wait_for(lambda: currents(m) == [0, 0, 0])
    assert m.read(1, 8092) == [1]
    st = client.cmd("state")
    assert st["evses"]["1"]["car"]["stop_ms"] == 2000
    assert client.raw({"cmd": "plug", "slave": 1, "car": {"stop_ms": -1}}, check=False)["ok"] is False


def test_set_regs_moves_the_relay(sim):
    client, m = sim
    client.cmd("set_regs", slave=1, addr=8087, values=[1])
    st = relay(client)
    assert st["relay"] == 1 and st["relay_switch_count"] == 1
    client.cmd("set_regs", slave=1, addr=8113, values=[0])
    client.cmd("set_regs", slave=1, addr=8087, values=[0])
    assert relay(client)["relay"] == 1  # no feature: the relay stays


def test_scenario_features(sim):
    client, m = sim
    client.cmd("scenario", data={"evses": {"1": {"features": 0}}})
    assert m.read(1, 8113) == [0]
    client.cmd("scenario", data={"evses": {"1": {"grid_phases": [0, 1, 2]}}})
    assert m.read(1, 8113) == [0]  # without "features" 8113 keeps its value
    for bad in ({"evses": {"1": {"features": 70000}}}, {"evses": {"1": {"features": True}}},
                {"evses": {"1": {"features": 256}}, "house": [1, 2]}):
        assert client.raw({"cmd": "scenario", "data": bad}, check=False)["ok"] is False
    assert m.read(1, 8113) == [0]  # a refused scenario changed nothing


def test_features_per_evse_from_the_scenario_file(tmp_path):
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"evse_ids": [1, 4], "evses": {"4": {"features": 0}}}))
    proc, info = pbclient.launch(["--scenario", str(path)], stderr=subprocess.PIPE)
    try:
        m = Master(info["tty"])
        with pbclient.Client(info["control"]) as client:
            assert m.read(1, 8113) == [0x100] and m.read(4, 8113) == [0]
            m.write1(1, 8087, 1)
            m.write1(4, 8087, 1)
            assert relay(client, 1)["relay"] == 1 and relay(client, 4)["relay"] == 0
            st = client.cmd("state")["evses"]
            assert (st["1"]["relay"], st["4"]["relay"]) == (1, 0)
        m.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)
    assert proc.returncode == 0


# ---------------------------------------------------------------------------
# Process behaviour: READY line, link, quiet stderr, clean exit
# ---------------------------------------------------------------------------


def test_ready_link_and_clean_exit(tmp_path):
    link = str(tmp_path / "pbtty")
    proc = subprocess.Popen(pbclient.command(["--link", link, "--baud", "115200", "--evse-ids", "1,4"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert re.match(r'^READY \{"tty": "[^"]+", "control": \d+, "baud": 115200\}\n$', line), line
        info = json.loads(line[6:])
        assert info["tty"] == link and os.path.islink(link)
        m = Master(link)
        try:
            assert m.read(4, 8040) == [4]
            assert m.xfer(frame(9, 3, 0x1F, 0x40, 0, 1), timeout=0.1, silence=True) == b""
            assert m.xfer(frame(4, 3, 0, 0, 0, 1)) == exc_reply(4, 3, 2)
        finally:
            m.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert out == b"" and err == b""  # no pymodbus log noise, no traceback
    assert not os.path.lexists(link)
