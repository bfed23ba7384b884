"""The charging manager end to end (API.md §2–7): device model, polling,
configuration, HTTP-input devices, users, overrides — firmware under
MicroPython against the simulator with its EV physics."""
import json
import os
import shutil
import subprocess
import time

import pytest

from simrun import ADMIN, wait_for

JSON = {"Content-Type": "application/json"}

PARAM_TYPES = {
    "title": str, "desc": str, "max_total_current": int, "reserve_current": int, "overdraft_cur": int,
    "max_total_evse_current": int, "cons_evse_power": int, "avail_evse_power": int, "lb_enabled": bool,
    "disable_policy": int, "cycle_time": int, "max_evses": int, "shareware_mode": bool, "version": str,
    "time": int, "vsn": dict, "ocpp_gateway_license_cnt": int, "ocpp_gateway_licenses_used": int,
}
COMMON = {
    "dev_type": str, "device_enabled": int, "name": str, "address": str, "id": int, "dev_id": str, "number": int,
    "desc": str, "com_err": bool, "com_err_secs": int, "com_errors": int, "last_error": str, "is_evse": bool,
    "used_phases": int, "model": str,
}
EVSE = dict(COMMON, label=str, min_charging_cur=int, max_charging_cur=int, prio=int, charging_enabled=bool,
            cur_charging_power=int, total_energy=int, phases=int, state=int, paused=bool, pause_time=int,
            pause_min_time=int)
METER = dict(COMMON, is_va=bool, invert=bool, power_w=int, current_l1=int, current_l2=int, current_l3=int,
             voltage_l1=int, voltage_l2=int, voltage_l3=int, role=int)
METER["import"] = int
METER["export"] = int


def post(sim, query, body, auth=ADMIN):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    st, obj, raw, _ = sim.request(query, auth, data, "POST", JSON)
    return st, obj


def info(sim):
    st, obj = sim.get("cmd=get_dev_info")
    assert st == 200
    return obj


def dev(sim, dev_id):
    return {d["dev_id"]: d for d in info(sim)["devices"]}[dev_id]


def test_factory_configuration_shape(sim):
    obj = info(sim)
    assert set(obj) == {"params", "devices"}
    p = obj["params"]
    for k, t in PARAM_TYPES.items():
        assert type(p[k]) is t, (k, p[k])
    # INTEGRATIONS.md §1: the serial number clients build their entity ids from
    assert p["vsn"]["vendorid"] == 52997 and len(p["vsn"]["serialno"]) == 14 and p["vsn"]["serialno"][4] == "-"
    assert [(d["dev_id"], d["dev_type"], d["address"], d["id"]) for d in obj["devices"]] == [
        ("E1", "evse_powerbrain", "evse", 1), ("M1", "meter_powerbrain", "meter1", 2),
        ("M2", "meter_powerbrain", "meter2", 3)]
    for d in obj["devices"]:
        want = EVSE if d["is_evse"] else METER
        for k, t in want.items():
            assert type(d[k]) is t, (d["dev_id"], k, d[k])
    m1 = obj["devices"][1]
    assert m1["is_evse"] is False
    wait_for(lambda: dev(sim, "M1")["model"])
    assert dev(sim, "M1")["model"] == "cFos Power Brain,1.1,1.0.0,fcf5-c46d-310c"


def test_get_params_for_a_third_party_client(sim):
    """A client that maps devices by dev_id and labels them via dev_meta[dev_type]."""
    st, params = sim.get("cmd=get_params")
    assert st == 200
    labels = {d["dev_id"]: params["dev_meta"][d["dev_type"]] for d in params["devices"]}
    assert labels == {"E1": "cFos Power Brain", "M1": "cFos Power Brain S0 meter",
                      "M2": "cFos Power Brain S0 meter"}
    live = {d["dev_id"]: d for d in info(sim)["devices"]}
    assert set(live) == set(labels)
    assert isinstance(params["max_total_evse_power"], int) and isinstance(params["version"], str)
    assert "admin" not in json.dumps(params)


def test_car_session_on_the_wire(sim):
    since = sim.control(cmd="requests", since=0)["next"]
    sim.control(cmd="plug", slave=1, car={"phases": 7, "max_ma": 16000})
    wait_for(lambda: dev(sim, "E1")["state"] == 3)
    e1 = wait_for(lambda: (lambda d: d if d["cur_charging_power"] > 0 else None)(dev(sim, "E1")))
    assert e1["charging_enabled"] is True and e1["phases"] == 7
    writes = [(i["addr"], i["values"]) for i in sim.control(cmd="requests", since=since, slave=1)["items"]
              if i["fn"] == 6]
    assert (8093, [160]) in writes and (8094, [1]) in writes
    # written once, not every cycle
    assert writes.count((8093, [160])) == 1
    sim.control(cmd="unplug", slave=1)
    wait_for(lambda: dev(sim, "E1")["state"] == 1)


def test_offline_evse_reports_com_err(sim):
    sim.control(cmd="offline", slave=1, on=True)
    try:
        e1 = wait_for(lambda: (lambda d: d if d["state"] == 6 else None)(dev(sim, "E1")))
        assert e1["com_err"] is True and e1["last_error"] == "modbus timeout" and e1["com_errors"] >= 2
    finally:
        sim.control(cmd="offline", slave=1, on=False)
    wait_for(lambda: dev(sim, "E1")["state"] != 6)
    assert dev(sim, "E1")["com_err"] is False


def flash_config(sim):
    """The stored configuration's head (params, admin, license): a list file, head first."""
    with open(os.path.join(sim.flash, "pbctl.json")) as f:
        return json.load(f)[0]


def test_set_params_round_trip_and_atomic_rejects(sim):
    st, _ = post(sim, "cmd=set_params", {"max_total_current": 25000, "reserve_current": 1000})
    assert st == 200
    st, p = sim.get("cmd=get_params")
    assert (p["max_total_current"], p["reserve_current"]) == (25000, 1000)
    disk = flash_config(sim)
    assert disk["params"]["max_total_current"] == 25000
    for body, msg in [
        ({"max_total_current": "32000"}, "bad value: max_total_current"),
        ({"max_total_current": 30000, "lb_enabled": 1}, "bad value: lb_enabled"),
        ({"reserve_current": -5}, "bad value: reserve_current"),
        ({"devices": [{"dev_id": "E9", "name": "x"}]}, "unknown device"),
        ({"devices": [{"dev_type": "evse_tesla"}]}, "bad value: dev_type"),
        ({"devices": [{"dev_id": "E1", "min_charging_cur": 20000}]}, "bad value: min_charging_cur"),
        ({"max_total_current": 1, "devices": [{"dev_id": "E1", "prio": "high"}]}, "bad value: prio"),
        ({"devices": [{}, {}]}, "bad value: devices"),
        (b"{not json", "bad json"),
        (b"[1,2]", "bad json"),
    ]:
        st, obj = post(sim, "cmd=set_params", body)
        assert (st, obj) == ((404 if msg == "unknown device" else 400), msg), body
    st, p = sim.get("cmd=get_params")
    assert (p["max_total_current"], p["reserve_current"]) == (25000, 1000)
    assert [d["dev_id"] for d in p["devices"]] == ["E1", "M1", "M2"]
    assert flash_config(sim) == disk
    st, obj = post(sim, "cmd=set_params", b"x" * 9000)
    assert (st, obj) == (413, "request body too large")
    assert flash_config(sim) == disk
    post(sim, "cmd=set_params", {"max_total_current": 32000, "reserve_current": 0})


def test_http_meter_document_curl_example(sim):
    st, _ = post(sim, "cmd=set_params", {"devices": [{"dev_type": "meter_http", "dev_id": "M3", "name": "smart"}]})
    assert st == 200
    url = sim.url("cmd=set_ajax_meter&dev_id=M3")
    body = ('{ "model": "TestModell", "import_wh": 12345, "export_wh": 23456, "voltage": [231, 232, 233], '
            '"current": [10001, 10002, 10003] }')
    if shutil.which("curl"):
        out = subprocess.run(["curl", "-s", "-i", "-X", "POST", "-H", "Content-Type: application/json", "-d", body,
                              "--user", "admin:1234abcd", url], capture_output=True, text=True, timeout=10).stdout
        assert out.startswith("HTTP/1.1 200") and out.endswith('"ok"'), out
    else:
        assert post(sim, "cmd=set_ajax_meter&dev_id=M3", body.encode()) == (200, "ok")
    m3 = dev(sim, "M3")
    assert (m3["import"], m3["export"], m3["model"]) == (12345, 23456, "TestModell")
    assert [m3["voltage_l%d" % i] for i in (1, 2, 3)] == [231, 232, 233]
    assert [m3["current_l%d" % i] for i in (1, 2, 3)] == [10001, 10002, 10003]
    assert m3["power_w"] == 231 * 10001 // 1000 + 232 * 10002 // 1000 + 233 * 10003 // 1000
    assert m3["com_err"] is False
    st, obj = sim.get("cmd=set_ajax_meter&dev_id=M3&model=TestModell&import_wh=22345&export_wh=23456"
                      "&voltage=231,232,233&current=10001,10002,10003", ADMIN)
    assert (st, obj) == (200, "ok")
    assert dev(sim, "M3")["import"] == 22345
    assert sim.get("cmd=set_ajax_meter&dev_id=M3&import_wh=1")[0] == 401
    assert sim.get("cmd=set_ajax_meter&dev_id=M3&voltage=1,2", ADMIN) == (400, "bad value: voltage")
    assert sim.get("cmd=set_ajax_meter&dev_id=M1&import_wh=1", ADMIN) == (400, "not an HTTP input device")
    assert sim.get("cmd=set_ajax_meter&dev_id=M9&import_wh=1", ADMIN) == (404, "unknown device")
    assert sim.get("cmd=del_device&dev_id=M3", ADMIN) == (200, "ok")


def test_http_evse_decision(sim):
    st, _ = post(sim, "cmd=set_params", {"devices": [{"dev_type": "evse_http", "dev_id": "E2", "name": "ext"}]})
    assert st == 200
    st, d = sim.get("cmd=set_ajax_evse&dev_id=E2&state=3&max_charging_current=16000&current=8000,8000,8000"
                    "&total_energy=100&model=X", ADMIN)
    assert st == 200
    assert set(d) == {"device_enabled", "charging_enabled", "paused", "charging_current"}
    assert d["device_enabled"] is True and d["charging_enabled"] is True and d["paused"] is False
    assert 6000 <= d["charging_current"] <= 16000
    st, d = post(sim, "cmd=set_ajax_evse&dev_id=E2", {"state": 1})
    assert st == 200 and set(d) == {"device_enabled", "charging_enabled", "paused", "charging_current"}
    assert sim.get("cmd=set_ajax_evse&dev_id=E2&state=9", ADMIN) == (400, "bad value: state")
    assert sim.get("cmd=del_device&dev_id=E2", ADMIN) == (200, "ok")


ADMIN_COMMANDS = [
    "cmd=set_params", "cmd=del_device&dev_id=M2", "cmd=reset_device&dev_id=M2", "cmd=get_users",
    "cmd=get_new_user_id", "cmd=accept_license&acc=1", "cmd=set_diag_logging&enable=1", "cmd=get_diag_log",
    "cmd=modbus&device=evse&write=8044&value=1", "cmd=soft_meter&dev_id=E1&val=5",
    "cmd=override_device&dev_id=E1&flags=E",
]


@pytest.mark.parametrize("n,query", list(enumerate(ADMIN_COMMANDS)))
def test_admin_commands_refuse(sim, n, query):
    st, obj = sim.get(query)
    assert (st, obj) == (401, "authentication required")
    # a client of its own each: failed logins slow a client down
    st, obj = sim.get(query, ("admin", "nope-nope"), source="127.0.1.%d" % (n + 1))
    assert (st, obj) == (401, "wrong user or password")


def test_brute_force_is_slowed(sim):
    ip = "127.0.2.1"
    for _ in range(5):
        assert sim.get("cmd=get_users", ("admin", "guess"), source=ip)[0] == 401
    assert sim.get("cmd=get_users", ("admin", "guess"), source=ip) == (429, "too many failed logins")
    assert sim.get("cmd=get_users", ADMIN, source=ip) == (429, "too many failed logins")
    assert sim.get("cmd=get_users", ADMIN)[0] == 200  # other clients are not affected


def test_users_and_overrides(sim):
    st, uid = sim.get("cmd=get_new_user_id", ADMIN)
    assert st == 200 and uid.isdigit()
    user = {"id": uid, "name": "wusel", "display": True, "dev_ids": ["E1"],
            "rfids": [{"id": "4711", "name": "TeSt", "ac_auth": True, "ac_ovch": True, "used_phases": 7}],
            "charging_rules": []}
    assert post(sim, "cmd=set_user", user, auth=None) == (401, "authentication required")
    assert post(sim, "cmd=set_user", user) == (200, "ok")
    st, users = sim.get("cmd=get_users", ADMIN)
    assert users == [user]
    # the user edits itself by one of its PINs without admin, but cannot grant itself devices;
    # a user id alone authorises nothing, another user's PIN nothing for this one (API.md §6)
    assert post(sim, "cmd=set_user", {"id": uid, "name": "Wusel"}, auth=None) == (401, "authentication required")
    assert post(sim, "cmd=set_user&rfid=9999", {"id": uid, "name": "Wusel"}, auth=None) == (403, "unknown rfid")
    assert post(sim, "cmd=set_user&rfid=4711", {"id": uid, "name": "Wusel"}, auth=None) == (200, "ok")
    assert post(sim, "cmd=set_user&rfid=4711", {"id": uid, "dev_ids": ["E1", "E2"]},
                auth=None) == (403, "admin required: dev_ids")
    # a PIN/RFID belongs to one user only
    other = {"id": "u2", "name": "other", "rfids": [{"id": "4711"}]}
    assert post(sim, "cmd=set_user", other) == (400, "rfid in use")
    assert post(sim, "cmd=set_user&rfid=4711", {"id": "u2", "name": "x"}, auth=None) == (403, "unknown rfid")
    st, u = sim.get("cmd=get_user&id=%s&rfid=4711" % uid)
    assert st == 200 and u["name"] == "Wusel" and u["rfids"][0]["id"] == "**11"
    assert sim.get("cmd=get_user&id=%s&rfid=9999" % uid) == (403, "unknown rfid")
    assert sim.get("cmd=enter_rfid&rfid=9999&dev_id=E1") == (403, "unknown rfid")
    # a session: plug in, authorise, override, unplug clears
    sim.control(cmd="plug", slave=1, car={"phases": 7, "max_ma": 16000})
    wait_for(lambda: dev(sim, "E1")["state"] in (2, 3))
    assert sim.get("cmd=enter_rfid&rfid=4711") == (200, "ok")
    assert dev(sim, "E1")["user"] == uid
    assert sim.get("cmd=override_device&dev_id=E1&flags=C&rfid=4711") == (200, "ok")
    wait_for(lambda: dev(sim, "E1")["charging_enabled"] is False)
    assert sim.get("cmd=override_device&dev_id=E1&flags=E&rfid=4711") == (401, "authentication required")
    assert sim.get("cmd=override_device&dev_id=E1&flags=X", ADMIN) == (400, "bad value: flags")
    assert sim.get("cmd=override_device&dev_id=E1&flags=c&mamps=10000", ADMIN) == (200, "ok")
    wait_for(lambda: dev(sim, "E1")["charging_cur"] == 10000)
    sim.control(cmd="unplug", slave=1)
    wait_for(lambda: dev(sim, "E1")["state"] == 1)
    e1 = dev(sim, "E1")
    assert e1["user"] == "" and e1["limit_reason"] != "override: mamps"
    sim.control(cmd="plug", slave=1, car={"phases": 7, "max_ma": 16000})
    wait_for(lambda: dev(sim, "E1")["charging_cur"] == 16000)
    sim.control(cmd="unplug", slave=1)


def test_change_admin_password(sim):
    assert sim.get("cmd=change_admin_pwd&old_pwd=wrong&new_pwd=abcdefgh") == (403, "wrong password")
    assert sim.get("cmd=change_admin_pwd&old_pwd=1234abcd&new_pwd=short") == (400, "bad value: new_pwd")
    assert sim.get("cmd=change_admin_pwd&old_pwd=1234abcd&new_pwd=another-pwd") == (200, "ok")
    assert sim.get("cmd=get_users", ADMIN)[0] == 401
    assert sim.get("cmd=get_users", ("admin", "another-pwd"))[0] == 200
    assert "another-pwd" not in open(os.path.join(sim.flash, "pbctl.json")).read()
    assert sim.get("cmd=change_admin_pwd&old_pwd=another-pwd&new_pwd=1234abcd") == (200, "ok")


def test_soft_meter_of_an_evse_without_meter(sim):
    st, _ = post(sim, "cmd=set_params", {"devices": [{"dev_type": "evse_http", "dev_id": "E3", "name": "nometer"}]})
    assert st == 200
    assert sim.get("cmd=soft_meter&dev_id=E3&val=1000", ADMIN) == (200, 0)
    # 8 A on 3 phases at 230 V = 5520 W: about 1.5 Wh a second
    st, _ = sim.get("cmd=set_ajax_evse&dev_id=E3&state=3&current=8000,8000,8000", ADMIN)
    assert st == 200
    wh = wait_for(lambda: (lambda v: v if v >= 1003 else None)(sim.get("cmd=soft_meter&dev_id=E3")[1]))
    assert wh < 1100
    assert dev(sim, "E3")["total_energy"] >= 1003
    assert sim.get("cmd=soft_meter&dev_id=E3&val=x", ADMIN) == (400, "bad value: val")
    # at most the field table's bound of soft_meter (what a backup of it restores)
    assert sim.get("cmd=soft_meter&dev_id=E3&val=100000001", ADMIN) == (400, "bad value: val")
    assert sim.get("cmd=soft_meter&dev_id=M1") == (404, "unknown device")
    assert sim.get("cmd=del_device&dev_id=E3", ADMIN) == (200, "ok")


def test_diag_log_and_soft_meter(sim):
    assert sim.get("cmd=set_diag_logging&enable=1", ADMIN) == (200, "ok")
    time.sleep(1.5)
    st, lines = sim.get("cmd=get_diag_log", ADMIN)
    assert st == 200 and any(" 2 tx 02031f7a000c" in l for l in lines), lines[:5]
    assert sim.get("cmd=set_diag_logging&enable=0", ADMIN) == (200, "ok")
    assert sim.get("cmd=set_diag_logging&enable=2", ADMIN) == (400, "bad value: enable")
    st, old = sim.get("cmd=soft_meter&dev_id=E1")
    assert st == 200 and isinstance(old, int)
