"""OCPP 1.6J charge point (INTEGRATIONS.md §4, issue 16) against a real central
system: the PyPI `ocpp` library on `websockets` (tools/ocpp_cs.py, which
validates every message against the OCPP 1.6 JSON schemas), the firmware
under MicroPython (ROMFS, 128k) and the Power Brain simulator.

One firmware run for the module (tests in order, each leaving the car
unplugged and no transaction open); the offline test reboots it.
"""
import base64
import json
import os
import socket
import threading
import time

import pytest
from ocpp.exceptions import OCPPError
from ocpp.v16 import call

from conftest import assert_clean_log
from ocpp_cs import CentralSystem
from simrun import ADMIN, Sim, asked_again, board_heap, free_port

JSON = {"Content-Type": "application/json"}


def set_params(sim, obj, tries=1):
    """tries: at 8 EVSEs with OCPP on at 128k a request may be shed (503 out of memory): again."""
    for _ in range(tries):
        st, body, raw, _ = sim.request("cmd=set_params", ADMIN, json.dumps(obj).encode(), "POST", JSON)
        if st != 503:
            break
        time.sleep(0.3)
    assert st == 200, (raw, "".join(sim.fw_lines)[-2000:])
    return body


def regs(sim):
    """(charging_cur_limit 0.1 A, charging_enable) on the wire (the simulator's registers)."""
    return tuple(sim.control(cmd="get_regs", slave=1, addr=8093, count=2)["values"])


def energy(sim):
    return sim.control(cmd="state")["evses"]["1"]["energy_wh"]


def journal(sim):
    """The OCPP journal on the controller's flash (ocpp.json: an entry a line), for assert messages."""
    try:
        with open(os.path.join(sim.flash, "ocpp.json")) as f:
            return f.read()
    except OSError as e:
        return repr(e)


def until(pred, timeout=10, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met within %ss" % timeout)


@pytest.fixture(scope="module")
def cs():
    c = CentralSystem(interval=2, accept=("4711",)).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def sim(cs):
    s = Sim()
    s.start()
    try:
        set_params(s, {"ocpp_url": cs.url("pb1"), "ocpp_password": "s3cret-pw"})
        yield s
    finally:
        s.stop()
        assert_clean_log(s)


def test_boot_heartbeat_status_and_settings(sim, cs):
    b = cs.wait("BootNotification")
    assert b == {"chargePointVendor": "pbctl", "chargePointModel": "pbctl Power Brain",
                 "chargePointSerialNumber": b["chargePointSerialNumber"], "firmwareVersion": "0.2.0"}
    # security profile 1: HTTP Basic, user = the identity
    assert cs.headers["authorization"] == "Basic " + base64.b64encode(b"pb1:s3cret-pw").decode()
    assert cs.headers["sec-websocket-protocol"] == "ocpp1.6"
    for c in (0, 1):
        assert cs.wait("StatusNotification", lambda p: p["connectorId"] == c)["status"] == "Available"
    # the interval of the BootNotification's answer (2 s)
    m = cs.mark()
    cs.wait("Heartbeat", since=m, timeout=5)
    t0 = time.time()
    cs.wait("Heartbeat", since=cs.mark(), timeout=5)
    assert 1.0 < time.time() - t0 < 3.5
    # settings: the URL shown, the password never
    _, p = sim.get("cmd=get_params", ADMIN)
    assert p["ocpp_url"] == cs.url("pb1") and p["ocpp_password_set"] is True
    raw = sim.request("cmd=get_params", ADMIN)[2] + sim.request("cmd=get_dev_info", ADMIN)[2]
    raw += sim.request("cmd=sys_info", ADMIN)[2]
    assert b"s3cret-pw" not in raw
    st = sim.get("cmd=sys_info", ADMIN)[1]["links"]["ocpp"]
    assert st["state"] == "connected" and st["last_error"] == "" and st["connects"] == 1
    # a bad URL changes nothing
    st, body, _, _ = sim.request("cmd=set_params", ADMIN, b'{"ocpp_url": "http://x/y"}', "POST", JSON)
    assert (st, body) == (400, "bad value: ocpp_url")


def test_transaction_meter_values_and_statuses(sim, cs):
    r = cs.call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="2"))
    assert r.status == "Accepted"
    m = cs.mark()
    e0 = energy(sim)
    sim.control(cmd="plug", slave=1, car={"phases": 7, "max_ma": 16000})
    s = cs.wait("StartTransaction", since=m)
    assert s["connectorId"] == 1 and s["idTag"] == "pbctl" and s["meterStart"] == e0
    cs.wait("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Charging", since=m)
    mv = cs.wait("MeterValues", lambda p: p.get("transactionId") == cs.next_tx, since=m, timeout=8)
    sv = mv["meterValue"][0]["sampledValue"]
    assert [(v["measurand"], v.get("phase"), v.get("unit")) for v in sv] == [
        ("Energy.Active.Import.Register", None, "Wh"), ("Power.Active.Import", None, "W"),
        ("Current.Import", "L1", "A"), ("Current.Import", "L2", "A"), ("Current.Import", "L3", "A"),
        ("Current.Offered", None, "A")]
    assert sv[5]["value"] == "16.0"
    # the next one an interval later
    t0 = time.time()
    cs.wait("MeterValues", since=cs.mark(), timeout=5)
    assert time.time() - t0 < 3.5
    time.sleep(2)
    sim.control(cmd="unplug", slave=1)
    stop = cs.wait("StopTransaction", since=m)
    assert stop["transactionId"] == cs.next_tx and stop["reason"] == "EVDisconnected"
    assert stop["meterStop"] == energy(sim) and stop["meterStop"] > s["meterStart"]
    cs.wait("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Available",
            since=cs.mark() - 1)
    r = cs.call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="60"))
    assert r.status == "Accepted"


def test_authorize_and_remote_start_stop(sim, cs):
    set_params(sim, {"devices": [{"dev_id": "E1", "users": ["u1"]}]})  # the EVSE needs an RFID/PIN
    m = cs.mark()
    sim.control(cmd="plug", slave=1, car={})
    cs.wait("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Preparing", since=m)
    time.sleep(1.5)
    assert not cs.messages("StartTransaction", m)
    # unknown locally, refused by the central system
    st, body = sim.get("cmd=enter_rfid&rfid=1234&dev_id=E1")
    assert (st, body) == (403, "unknown rfid")
    assert cs.wait("Authorize", since=m) == {"idTag": "1234"}
    # accepted by the central system: the transaction starts with it
    st, body = sim.get("cmd=enter_rfid&rfid=4711&dev_id=E1")
    assert (st, body) == (200, "ok")
    s = cs.wait("StartTransaction", since=m)
    assert s["idTag"] == "4711"
    cs.wait("StatusNotification", lambda p: p["status"] == "Charging", since=m)
    tx = cs.next_tx
    # a wrong transaction id is refused, the right one stops: no charging until unplugged
    assert cs.call(call.RemoteStopTransaction(transaction_id=tx + 50)).status == "Rejected"
    assert cs.call(call.RemoteStopTransaction(transaction_id=tx)).status == "Accepted"
    assert regs(sim)[1] == 0 or regs(sim)[0] == 0
    stop = cs.wait("StopTransaction", since=m)
    assert stop["transactionId"] == tx and stop["reason"] == "Remote" and stop["idTag"] == "4711"
    cs.wait("StatusNotification", lambda p: p["status"] == "Finishing", since=m)
    # a remote start on the plugged connector: a new transaction with its idTag
    m = cs.mark()
    assert cs.call(call.RemoteStartTransaction(id_tag="remote1", connector_id=1)).status == "Accepted"
    s = cs.wait("StartTransaction", since=m)
    assert s["idTag"] == "remote1" and s["connectorId"] == 1
    until(lambda: regs(sim) == (160, 1))
    assert cs.call(call.RemoteStartTransaction(id_tag="remote2", connector_id=1)).status == "Rejected"
    sim.control(cmd="unplug", slave=1)
    assert cs.wait("StopTransaction", since=m)["reason"] == "EVDisconnected"
    set_params(sim, {"devices": [{"dev_id": "E1", "users": []}]})


def test_charging_profiles_on_the_wire(sim, cs):
    m = cs.mark()
    sim.control(cmd="plug", slave=1, car={})
    cs.wait("StartTransaction", since=m)
    until(lambda: regs(sim) == (160, 1))
    site = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "ChargePointMaxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}}
    r = cs.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=site))
    assert r.status == "Accepted"
    # on the wire when the answer came (the control task's pass wrote it before)
    assert regs(sim) == (100, 1)
    txd = {"chargingProfileId": 2, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
           "chargingProfileKind": "Relative",
           "chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5520}]}}
    assert cs.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=txd)).status == "Accepted"
    assert regs(sim) == (80, 1)  # 5520 W / (230 V * 3) = 8 A, tighter than the site's 10 A
    # a ChargePointMaxProfile on a connector is refused
    assert cs.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=site)).status == "Rejected"
    g = cs.call(call.GetCompositeSchedule(connector_id=1, duration=600))
    assert g.status == "Accepted" and g.charging_schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 8.0}]
    # ClearChargingProfile: by id, then by purpose
    assert cs.call(call.ClearChargingProfile(id=2)).status == "Accepted"
    assert regs(sim) == (100, 1)
    assert cs.call(call.ClearChargingProfile(id=2)).status == "Unknown"
    assert cs.call(call.ClearChargingProfile(charging_profile_purpose="ChargePointMaxProfile")).status == "Accepted"
    assert regs(sim) == (160, 1)
    # a schedule followed with the controller's clock: 7 A for 3 s, then 12 A
    sched = dict(site, chargingSchedule={"chargingRateUnit": "A", "chargingSchedulePeriod": [
        {"startPeriod": 0, "limit": 7}, {"startPeriod": 3, "limit": 12}]})
    assert cs.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=sched)).status == "Accepted"
    assert regs(sim) == (70, 1)
    until(lambda: regs(sim) == (120, 1), timeout=6)
    assert cs.call(call.ClearChargingProfile()).status == "Accepted"
    assert regs(sim) == (160, 1)
    # malformed profiles: the right CALLERROR, nothing changes
    bad = dict(site, chargingSchedule={"chargingRateUnit": "A", "chargingSchedulePeriod": [
        {"startPeriod": 5, "limit": 7}]})
    r = cs.raw(json.dumps([2, "bp1", "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": bad}]), "bp1")
    assert r[:3] == [4, "bp1", "PropertyConstraintViolation"]
    assert regs(sim) == (160, 1)
    # a limit of 0: no charging (the EVSE then keeps its pause_min_time)
    zero = dict(site, chargingSchedule={"chargingRateUnit": "A", "chargingSchedulePeriod": [
        {"startPeriod": 0, "limit": 0}]})
    assert cs.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=zero)).status == "Accepted"
    assert regs(sim)[0] == 0
    assert cs.call(call.ClearChargingProfile()).status == "Accepted"
    sim.control(cmd="unplug", slave=1)
    cs.wait("StopTransaction", since=m)


def test_configuration_trigger_and_unknown_actions(sim, cs):
    r = cs.call(call.GetConfiguration(key=["HeartbeatInterval", "NumberOfConnectors", "Foo"]))
    assert r.configuration_key == [{"key": "HeartbeatInterval", "readonly": False, "value": "2"},
                                   {"key": "NumberOfConnectors", "readonly": True, "value": "1"}]
    assert r.unknown_key == ["Foo"]
    keys = [k["key"] for k in cs.call(call.GetConfiguration()).configuration_key]
    assert keys == ["HeartbeatInterval", "MeterValueSampleInterval", "MeterValuesSampledData",
                    "NumberOfConnectors", "SupportedFeatureProfiles", "AuthorizeRemoteTxRequests"]
    assert cs.call(call.ChangeConfiguration(key="Foo", value="1")).status == "NotSupported"
    assert cs.call(call.ChangeConfiguration(key="NumberOfConnectors", value="3")).status == "Rejected"
    assert cs.call(call.ChangeConfiguration(key="HeartbeatInterval", value="x")).status == "Rejected"
    m = cs.mark()
    assert cs.call(call.TriggerMessage(requested_message="StatusNotification", connector_id=1)).status == "Accepted"
    assert cs.wait("StatusNotification", since=m, timeout=5)["connectorId"] == 1
    assert cs.call(call.TriggerMessage(requested_message="Heartbeat")).status == "Accepted"
    cs.wait("Heartbeat", since=m, timeout=3)
    assert cs.call(call.TriggerMessage(requested_message="FirmwareStatusNotification")).status == "NotImplemented"
    # an action the charge point does not know; malformed frames
    assert cs.raw('[2,"u1","FooBar",{}]', "u1") == [4, "u1", "NotSupported", "FooBar", {}]
    assert cs.raw('[2,"u2","Reset",{"type":"Warm"}]', "u2")[:3] == [4, "u2", "PropertyConstraintViolation"]
    r = cs.raw('[2,"u3","Reset",{}]', "u3")[:3]
    assert r == [4, "u3", "OccurenceConstraintViolation"], (r, sim.get("cmd=sys_info", ADMIN)[1].get("links"))
    assert cs.raw('[2,"u4","Reset",{"type":', "u4")[:3] == [4, "u4", "FormationViolation"]
    with pytest.raises(OCPPError):
        cs.call(call.UnlockConnector(connector_id=1))
    # ChangeAvailability
    m = cs.mark()
    assert cs.call(call.ChangeAvailability(connector_id=1, type="Inoperative")).status == "Accepted"
    cs.wait("StatusNotification", lambda p: p["status"] == "Unavailable", since=m)
    assert cs.call(call.ChangeAvailability(connector_id=1, type="Operative")).status == "Accepted"
    cs.wait("StatusNotification", lambda p: p["status"] == "Available", since=m)
    assert sim.get("cmd=sys_info", ADMIN)[1]["links"]["ocpp"]["state"] == "connected"


def test_reset_stops_the_transaction_and_boots_again(sim, cs):
    m = cs.mark()
    sim.control(cmd="plug", slave=1, car={})
    cs.wait("StartTransaction", since=m)
    tx = cs.next_tx
    assert cs.call(call.Reset(type="Soft")).status == "Accepted"
    stop = cs.wait("StopTransaction", since=m)
    assert stop["transactionId"] == tx and stop["reason"] == "SoftReset"
    cs.wait("BootNotification", since=m, timeout=15)
    cs.wait("StartTransaction", since=cs.mark() - 3, timeout=10)  # the car is still there
    sim.control(cmd="unplug", slave=1)
    until(lambda: len(cs.messages("StopTransaction", m)) == 2)


def test_offline_journal_survives_a_killed_central_system_and_a_reboot(sim, cs):
    """Central system killed mid-transaction; the car leaves and comes back;
    the controller reboots with a transaction open: after the central system
    returns, every Start/Stop arrives once, in order."""
    m = cs.mark()
    sim.control(cmd="plug", slave=1, car={})
    cs.wait("StartTransaction", since=m)
    tx = cs.next_tx
    # The central system records a message before it answers: killed now, its
    # answer could be lost, and the charge point would rightly send the Start
    # again after reconnecting (one more journal entry: the flake "journal == 3").
    # One CALL outstanding at a time: the charge point's next CALL (its status)
    # says the Start's answer arrived.
    i = [k for k, x in enumerate(cs.log) if x[1] == "StartTransaction"][-1]
    cs.wait("StatusNotification", lambda p: p["connectorId"] == 1, since=i + 1)
    port = cs.port
    cs.stop()
    until(lambda: sim.get("cmd=sys_info", ADMIN)[1]["links"]["ocpp"]["state"] == "offline", timeout=30)
    time.sleep(1)
    sim.control(cmd="unplug", slave=1)
    time.sleep(1.5)
    e1 = energy(sim)
    sim.control(cmd="plug", slave=1, car={})
    time.sleep(3)  # charging goes on offline
    assert regs(sim) == (160, 1)
    n = sim.get("cmd=sys_info", ADMIN)[1]["links"]["ocpp"]["journal"]
    assert n == 2, (n, journal(sim), cs.log[m:])  # E(tx), S(new)
    # reboot (the same flash); the car is still plugged in
    flash = sim.flash
    sim.stop()
    assert_clean_log(sim)
    sim2 = Sim(flash=flash)
    sim2.start()
    try:
        sim2.control(cmd="plug", slave=1, car={})
        time.sleep(2)
        cs2 = CentralSystem(port=port, interval=2).start()
        cs2.next_tx = 2000
        try:
            cs2.wait("BootNotification", timeout=70)
            until(lambda: len(cs2.messages("StartTransaction")) == 2 and len(cs2.messages("StopTransaction")) == 2,
                  timeout=20)
            tx_msgs = [(a, p) for _, a, p in cs2.log if a in ("StartTransaction", "StopTransaction")]
            assert [a for a, _ in tx_msgs] == ["StopTransaction", "StartTransaction", "StopTransaction",
                                              "StartTransaction"]
            assert tx_msgs[0][1]["transactionId"] == tx and tx_msgs[0][1]["reason"] == "EVDisconnected"
            assert tx_msgs[0][1]["meterStop"] == e1
            assert tx_msgs[1][1]["meterStart"] == e1
            assert tx_msgs[2][1]["transactionId"] == 2001 and tx_msgs[2][1]["reason"] == "PowerLoss"
            assert tx_msgs[3][1]["connectorId"] == 1
            time.sleep(2.5)  # nothing sent twice
            assert len(cs2.messages("StartTransaction")) == 2 and len(cs2.messages("StopTransaction")) == 2
            assert sim2.get("cmd=sys_info", ADMIN)[1]["links"]["ocpp"]["journal"] == 1  # the open one
        finally:
            cs2.stop()
    finally:
        sim2.stop()
        assert_clean_log(sim2)


# ---- 8 connectors: the central system down at boot, then slow (one firmware run) ----------------
EIGHT = [1] + list(range(4, 11))  # the simulator's EVSE slave ids (meters: 2 grid, 3)
# 38400 baud: at 9600 a cycle that reads all 8 EVSEs takes up to ~1.7 s of bus time (~190 ms an
# EVSE), more than cycle_time 1000 with or without OCPP; at 38400 it fits, and what the cycle
# interval shows is the firmware, not the bus
BAUD8 = 38400


# 8 EVSEs with OCPP: the board's 96 KB (board_heap()) on a 32-bit build, where this module
# passes (BENCHMARKS.md, "The board's word size"); on the 64-bit port 192k. At 128k sys_info
# answered 503 for 10 s on end (README "OCPP 1.6J", Heap); at 144k these tests passed 6 of 6
# runs here once an incoming call's module load waited longer for a hole, but failed in a
# clean-clone CI run
SITE8_HEAP = board_heap() if board_heap() == "96k" else "192k"


@pytest.fixture(scope="module")
def site8():
    """8 Power Brain EVSEs, ocpp_url stored (a port nothing listens on), restarted
    with that configuration: the controller boots with the central system down.
    -> a dict: sim, port, cs (the central system once a test started it; stopped here)."""
    port = free_port()
    args = ["--evse-ids", ",".join(map(str, EIGHT))]
    s = Sim(sim_args=args, heap=SITE8_HEAP, baud=BAUD8)
    s.start()
    try:
        for i in EIGHT[1:]:
            set_params(s, {"devices": [{"dev_type": "evse_powerbrain", "address": "rtu:%d" % i}]})
        set_params(s, {"ocpp_url": "ws://127.0.0.1:%d/pb8" % port})
        assert ocpp_link(s)["max_msg"] == 2048
    finally:
        s.stop()
    assert_clean_log(s)
    s = Sim(sim_args=args, flash=s.flash, heap=SITE8_HEAP, baud=BAUD8)
    s.start()
    site = {"sim": s, "port": port, "cs": None}
    try:
        yield site
    finally:
        if site["cs"] is not None:
            site["cs"].stop()
        s.stop()
        assert_clean_log(s)


class _Listener:
    """A TCP port that takes connections and closes them at once, noting when."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(4)
        self.times = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.times.append(time.time())
            c.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


SHED = []  # sys_info answers other than 200 at 8 EVSEs (the heap below the control task's reserve)


def ocpp_link(sim):
    """sys_info's links.ocpp; at 8 EVSEs with OCPP the heap is tight and a request
    may be shed (503): asked again."""
    for _ in range(50):
        st, body = sim.get("cmd=sys_info", ADMIN)
        if st == 200:
            return body["links"]["ocpp"]
        SHED.append((st, body))
        time.sleep(0.2)
    raise AssertionError(SHED[-3:])


def test_central_system_down_at_boot(site8):
    """Booted with ocpp_url set and nothing listening: the cars charge, the
    controller keeps trying with back-off (2, 4, 8 ... 60 s), and once the
    central system is there: BootNotification, then the journal."""
    sim, port = site8["sim"], site8["port"]
    t_boot = time.time()
    for i in EIGHT:
        sim.control(cmd="plug", slave=i, car={"phases": 7, "max_ma": 16000})
    st = until(lambda: (lambda x: x if x["last_error"] else None)(ocpp_link(sim)), timeout=5)
    assert st["state"] in ("offline", "connecting") and st["connects"] == 0
    assert st["last_error"].startswith("ocpp: connect: "), st  # refused
    # still trying, with back-off: the next attempts on a port that takes and drops the connection
    ln = _Listener(port)
    try:
        # charging goes on: the first car charges on the wire (the balancer shares the fuse among the rest)
        until(lambda: regs(sim)[1] == 1 and regs(sim)[0] >= 60, timeout=15)
        until(lambda: sim.control(cmd="state")["evses"]["1"]["current_ma"][0] > 0)
        until(lambda: ocpp_link(sim)["journal"] == 8)  # a StartTransaction per connector, waiting
        until(lambda: len(ln.times) >= 2, timeout=20)
    finally:
        ln.close()
    gap = ln.times[1] - ln.times[0]
    assert 3.0 < gap < 9.5, (gap, ln.times[0] - t_boot)  # 4 or 8 s: doubled from 2 s
    assert ocpp_link(sim)["state"] == "offline"
    # the central system comes up: the next attempt (twice the gap later at most) connects
    cs = site8["cs"] = CentralSystem(port=port, interval=300).start()
    b = cs.wait("BootNotification", timeout=2 * gap + 5)
    assert b["chargePointVendor"] == "pbctl"
    until(lambda: len(cs.messages("StartTransaction")) == 8, timeout=15)
    acts = [a for _, a, _ in cs.log]
    assert acts[:9] == ["BootNotification"] + ["StartTransaction"] * 8, acts
    assert [p["connectorId"] for p in (x[2] for x in cs.log[1:9])] == list(range(1, 9))
    st = until(lambda: (lambda x: x if x["state"] == "connected" else None)(ocpp_link(sim)))
    assert st["connects"] == 1 and st["journal"] == 8  # 8 open transactions ("O")
    cs.wait("StatusNotification", lambda p: p["connectorId"] == 8)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, len(xs) * p // 100)]


def cycle_starts(items):
    """The times (ms) the control cycles began: a cycle reads the grid meter (slave 2)
    first; its reads more than 300 ms after the last one open a cycle."""
    t = [i["t_ms"] for i in items if i["slave"] == 2 and i["fn"] in (3, 4)]
    return [x for k, x in enumerate(t) if k == 0 or x - t[k - 1] > 300]


def test_a_slow_central_system_never_delays_the_control_loop(site8):
    """Every CALL answered 3 s late while 8 connectors send MeterValues every 2 s:
    the control cycle keeps its interval (cycle_time 1000 ms: p99 within +10 %),
    get_dev_info stays fast."""
    sim, cs = site8["sim"], site8["cs"]
    assert cs is not None, "needs test_central_system_down_at_boot"
    assert cs.call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="2")).status == "Accepted"
    windows = {}
    for delay in (0, 3):  # a fast central system (the baseline), then a slow one
        cs.delay = delay
        time.sleep(delay + 1)
        m = cs.mark()
        seq = sim.control(cmd="requests", since=0, slave=255)["next"]
        lat = []
        again = 0
        end = time.time() + (6 if delay == 0 else 16)
        while time.time() < end:
            t0 = time.time()
            # asked again after a 503 "out of memory", as the web UI does (8 EVSEs and OCPP at
            # the board's 96 KB: a clean-clone CI run met one 503 here at 144k)
            (st, body), tries = asked_again(lambda: sim.get("cmd=get_dev_info", ADMIN))
            lat.append(time.time() - t0)
            again += tries - 1
            assert st == 200, body
            time.sleep(0.2)
        r = sim.control(cmd="requests", since=seq)
        assert r["first"] <= seq, "request log overran"
        c = cycle_starts(r["items"])
        iv = [b - a for a, b in zip(c, c[1:])]
        windows[delay] = {"cycle_p50": pct(iv, 50), "cycle_p99": pct(iv, 99), "cycles": len(iv),
                          "dev_info_p50_ms": int(pct(lat, 50) * 1000), "dev_info_max_ms": int(max(lat) * 1000),
                          "meter_values": len(cs.messages("MeterValues", m)), "asked_again": again}
    print("slow central system:", windows)
    fast, slow = windows[0], windows[3]
    assert slow["cycles"] >= 12, windows
    assert 950 <= slow["cycle_p50"] <= 1050 and slow["cycle_p99"] <= 1100, windows
    assert slow["dev_info_p50_ms"] <= 300 and slow["dev_info_max_ms"] <= 1500, windows
    # the link was slow, not broken: MeterValues came (one every 3 s), none timed out
    assert 3 <= slow["meter_values"] <= 7 and fast["meter_values"] >= 8, windows
    st = ocpp_link(sim)
    assert st["state"] == "connected" and st["timeouts"] == 0 and st["connects"] == 1, st
    cs.delay = 0
