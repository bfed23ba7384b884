"""Param tz and backup/restore (issue 18 §4, INTEGRATIONS.md §6) on the firmware.

- A charging rule's time window follows local time across both DST changes:
  the firmware's clock is set (boards/HOST PBCTL_CLOCK_OFFSET) to seconds
  before the change of 2025 in Europe; the rule is read off get_dev_info.
- get_config -> set_config onto a fresh flash restores everything exactly
  (secrets as README "Backup" says); a broken or partial set_config changes
  nothing.
"""
import calendar
import json
import time

from simrun import ADMIN, Sim, board_heap, wait_for

JSON = {"Content-Type": "application/json"}
EU = "CET-1CEST,M3.5.0,M10.5.0/3"


def set_params(s, body, auth=ADMIN):
    return s.request("cmd=set_params", auth, json.dumps(body).encode(), "POST", JSON)[:2]


def e1(s):
    st, obj = s.get("cmd=get_dev_info")
    assert st == 200
    return [d for d in obj["devices"] if d["dev_id"] == "E1"][0]


def local_time(s):
    st, obj = s.get("cmd=get_params")
    assert st == 200
    return obj["local_time"]


def at(utc_text, lead):
    """A Sim whose clock shows utc_text (UTC) lead seconds from now."""
    t = calendar.timegm(time.strptime(utc_text, "%Y-%m-%d %H:%M:%S"))
    return Sim(fw_env={"PBCTL_CLOCK_OFFSET": str(int(t - lead - time.time()))}, heap=board_heap())


def rule(start, dur):
    return {"days": 127, "mode": 0, "current": 8000, "enabled": True, "time": start, "dur": dur}


def test_a_rule_window_switches_at_local_time_across_the_spring_change():
    # 2025-03-30 01:00 UTC: 02:00 CET becomes 03:00 CEST. The rule: 03:00..04:00 local.
    with at("2025-03-30 01:00:00", 14) as s:
        assert set_params(s, {"tz": EU, "devices": [{"dev_id": "E1", "charging_rules": [rule(180, 60)]}]}) == (
            200, "ok")
        s.control(cmd="plug", slave=1, car={"phases": 7, "max_ma": 16000})
        lt = local_time(s)
        assert "2025-03-30 01:59:00" <= lt < "2025-03-30 02:00:00", lt  # (boot and setup took < 14 s)
        wait_for(lambda: e1(s)["charging_cur"] == 0 and e1(s)["limit_reason"] != "", 5, "no charging before 03:00")
        assert local_time(s) < "2025-03-30 02:00:00"
        wait_for(lambda: e1(s)["charging_cur"] == 8000, 20, "8 A from 03:00 CEST")
        lt = local_time(s)
        assert "2025-03-30 03:00:00" <= lt < "2025-03-30 03:00:20", lt  # 02:xx was skipped


def test_the_repeated_hour_in_autumn_stays_in_the_window():
    # 2025-10-26 01:00 UTC: 03:00 CEST becomes 02:00 CET. The rule: 02:00..03:00 local,
    # in force before the change (02:59 CEST) and again after it (02:00 CET).
    with at("2025-10-26 01:00:00", 14) as s:
        assert set_params(s, {"tz": EU, "devices": [{"dev_id": "E1", "charging_rules": [rule(120, 60)]}]}) == (
            200, "ok")
        s.control(cmd="plug", slave=1, car={"phases": 7, "max_ma": 16000})
        lt = local_time(s)
        assert "2025-10-26 02:59:00" <= lt < "2025-10-26 03:00:00", lt
        wait_for(lambda: e1(s)["charging_cur"] == 8000, 5, "8 A at 02:59 CEST")
        wait_for(lambda: local_time(s) < "2025-10-26 02:30:00", 20, "the clock back to 02:00 CET")
        assert e1(s)["charging_cur"] == 8000
        # and UTC (the default) puts 01:00 outside the window
        assert set_params(s, {"tz": "UTC0"}) == (200, "ok")
        wait_for(lambda: e1(s)["charging_cur"] == 0, 5, "no charging at 01:00 UTC")


NEW_PWD = "new-admin-pw"
ADMIN2 = ("admin", NEW_PWD)


def configure(s):
    r = [{"days": 31, "mode": 0, "current": 10000, "enabled": True, "time": 420, "dur": 600, "udur": 0,
          "expr": "e", "input": "i", "price_level": 0, "solar": 0}]
    assert set_params(s, {"title": "Garage", "desc": "backup test", "max_total_current": 40000, "tz": EU,
                          "ocpp_password": "s3cret", "phase_switch_min_time": 600, "cycle_time": 1500}) == (200, "ok")
    assert set_params(s, {"devices": [{"dev_type": "meter_powerbrain", "dev_id": "M3", "address": "rtu:9",
                                       "name": "Haus", "role": 1}]}) == (200, "ok")
    assert set_params(s, {"devices": [{"dev_type": "evse_http", "dev_id": "E2", "name": "Carport",
                                       "charging_rules": r, "fixed_rfid": "4711", "users": ["1000000001"],
                                       "attach": "M3", "soft_meter": 12345, "max_charging_cur": 20000}]}) == (
        200, "ok")
    for uid, rf in (("1000000001", "1234"), ("1000000002", "98765432")):
        u = {"id": uid, "name": "U" + uid[-1], "dev_ids": ["E2"], "charging_rules": r,
             "rfids": [{"id": rf, "name": "card", "ac_auth": True, "ac_ovch": False, "used_phases": 1}]}
        assert s.request("cmd=set_user", ADMIN, json.dumps(u).encode(), "POST", JSON)[:2] == (200, "ok")
    assert s.get("cmd=accept_license&acc=1&allow_usage_stats=1", ADMIN) == (200, "ok")
    assert s.get("cmd=change_admin_pwd&old_pwd=%s&new_pwd=%s" % (ADMIN[1], NEW_PWD)) == (200, "ok")


def get_config(s, auth):
    st, _, raw, hdrs = s.request("cmd=get_config", auth)
    assert st == 200, raw
    return raw


def parsed(raw):
    """A backup's items (one a line; a dict's member order is the interpreter's)."""
    lines = raw.decode().split("\n")
    assert lines[0] == "[" and lines[-2:] == ["]", ""]
    return [json.loads(x.rstrip(",")) for x in lines[1:-2]]


def set_config(s, auth, data, piece=4096):
    """The file in pieces as the settings page sends it; (status, reply) of the last."""
    off = 0
    while True:
        chunk = data[off: off + piece]
        last = off + len(chunk) >= len(data)
        q = "cmd=set_config&offset=%d" % off + ("" if last else "&more=1")
        r = s.request(q, auth, chunk, "POST", {"Content-Type": "application/octet-stream"})[:2]
        if last or r != (200, "ok"):
            return r
        off += len(chunk)


def test_backup_round_trip_onto_a_fresh_flash_and_broken_restores_change_nothing():
    with Sim(heap=board_heap()) as a:
        configure(a)
        assert a.get("cmd=get_config", ADMIN)[0] == 401  # the old password no longer
        raw = get_config(a, ADMIN2)
        users_a = a.get("cmd=get_users", ADMIN2)
        params_a = a.get("cmd=get_params", ADMIN2)[1]
    items = parsed(raw)
    head = items[0]
    assert head["pbctl_config"] == 1 and head["params"]["title"] == "Garage"
    assert head["params"]["ocpp_password"] == "***"  # never in clear
    assert b"s3cret" not in raw and NEW_PWD.encode() not in raw
    assert head["admin"].count("$") == 1 and len(head["admin"]) > 40  # the salted hash
    assert head["license"] == {"accepted": True, "allow_usage_stats": True}
    assert [list(x) for x in items[1:]] == [["device"]] * 5 + [["user"]] * 2
    assert [x["device"]["dev_id"] for x in items[1:6]] == ["E1", "M1", "M2", "M3", "E2"]
    e2 = items[5]["device"]
    assert (e2["fixed_rfid"], e2["soft_meter"], e2["attach"], e2["charging_rules"][0]["expr"]) == (
        "4711", 12345, "M3", "e")
    assert [x["user"]["rfids"][0]["id"] for x in items[6:]] == ["1234", "98765432"]

    with Sim(heap=board_heap()) as b:  # a fresh flash, its admin password the preset one
        assert set_config(b, ADMIN, raw, piece=1000) == (200, "ok")
        assert b.get("cmd=get_users", ADMIN)[0] == 401  # the backup's admin password now
        raw_b = get_config(b, ADMIN2)
        # exactly the same, but the OCPP password this controller never knew
        assert parsed(raw_b) == parsed(raw.replace(b'"ocpp_password":"***"', b'"ocpp_password":""'))
        assert b.get("cmd=get_users", ADMIN2) == users_a
        params_b = b.get("cmd=get_params", ADMIN2)[1]
        for k in ("time", "local_time", "cons_evse_power", "avail_evse_power", "ocpp_password_set", "vsn"):
            params_a.pop(k)
            params_b.pop(k)
        assert params_b == params_a
        # the same controller keeps the password "***" stands for
        assert set_params(b, {"ocpp_password": "other"}, ADMIN2) == (200, "ok")
        # and a device that is the same box keeps its runtime state (here E1's override)
        assert b.get("cmd=override_device&dev_id=E1&mamps=7000", ADMIN2) == (200, "ok")
        wait_for(lambda: e1(b).get("ov_cur") == 7000, 5, "the override in force")
        assert set_config(b, ADMIN2, raw) == (200, "ok")
        assert b.get("cmd=get_params", ADMIN2)[1]["ocpp_password_set"] is True
        assert e1(b).get("ov_cur") == 7000
        assert b.get("cmd=override_device&dev_id=E1&mamps=0", ADMIN2) == (200, "ok")

        good = get_config(b, ADMIN2)
        text = raw.decode()
        broken = (
            (raw[: len(raw) // 2], (400, "bad json")),  # cut short
            (raw[:-3] + b"]\n", (400, "bad json")),  # its last line cut
            (text.replace('"max_charging_cur":20000', '"max_charging_cur":"x"').encode(),
             (400, "bad value: max_charging_cur")),
            (text.replace('"tz":"%s"' % EU, '"tz":"CET-1CEST"x').encode(), (400, "bad json")),
            (text.replace('"tz":"%s"' % EU, '"tz":"CET+"').encode(), (400, "bad value: tz")),
            (text.replace('"98765432"', '"1234"').encode(), (400, "rfid in use")),
            (text.replace('"attach":"M3"', '"attach":"M9"').encode(), (400, "bad value: attach")),
            (text.replace('"pbctl_config":1', '"pbctl_config":2').encode(), (400, "bad value: pbctl_config")),
            (text.replace('"dev_id":"M3"', '"dev_id":"M2"').encode(), (400, "bad value: dev_id")),
            (b"[\n]\n", (400, "bad value: pbctl_config")),
        )
        for data, want in broken:
            assert set_config(b, ADMIN2, data) == want, (want, data[-300:])
            assert parsed(get_config(b, ADMIN2)) == parsed(good)
        # a piece out of order, and one without its predecessor
        assert b.request("cmd=set_config&offset=5&more=1", ADMIN2, b"xx", "POST")[:2] == (400, "bad value: offset")
        assert b.request("cmd=set_config", ADMIN2, None, "GET")[:2] == (405, "method not allowed")
        assert b.request("cmd=set_config", None, raw, "POST")[0] == 401
        assert parsed(get_config(b, ADMIN2)) == parsed(good)
