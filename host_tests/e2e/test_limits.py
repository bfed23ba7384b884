"""Every configuration the API accepts boots (issue 13 #1, API.md §10).

The largest configuration the API accepts is built through the API itself —
8 EVSEs and 8 meters with every string at its longest, 4 charging rules per
EVSE with the longest expr/input, 8 user ids per EVSE, 32 users with 8 RFIDs
and 4 rules each — then the firmware is restarted on that flash at the
simulation's heap budget: it must come up with all of it (not the factory
configuration), serve get_dev_info and get_params, take a session of a user
with 4 rules on every EVSE, and accept one more change. One past each bound
is a 400 naming the field. A user id alone changes nothing (API.md §6), and a
flash file too large for the heap falls back to the defaults without failing.
Figures (heap free after boot with the largest configuration): BENCHMARKS.md.
"""
import json
import os

import pytest

from simrun import ADMIN, Sim

JSON = {"Content-Type": "application/json"}
FIGURES = {}
HEAP_LARGEST = "192k"


def rule(k):
    return {"days": 127, "mode": 2, "current": 10000 + k, "enabled": True, "udur": 600, "time": 480, "dur": 600,
            "expr": "x" * 32, "input": "i" * 16, "price_level": 0, "solar": 1000}


def set_params(s, body):
    return s.request("cmd=set_params", ADMIN, json.dumps(body).encode(), "POST", JSON)[:2]


def user(u):
    return {"id": "%016d" % u, "name": "u" * 32, "display": True, "dev_ids": ["E%d" % k for k in range(1, 9)],
            "rfids": [{"id": "%020d" % (u * 100 + k), "name": "r" * 32, "ac_auth": True, "ac_ovch": True,
                       "used_phases": 7} for k in range(8)],
            "charging_rules": [rule(k) for k in range(4)]}


def evse(k):
    return {"dev_type": "evse_powerbrain", "dev_id": "E%d" % k, "address": "rtu:%d" % (10 + k), "name": "n" * 32,
            "desc": "d" * 64, "label": "l" * 32, "charging_rules": [rule(j) for j in range(4)],
            "users": ["%016d" % j for j in range(8)], "fixed_rfid": "1" * 32, "ocpp_gateway_client_id": "o" * 32}


def meter(k):
    return {"dev_type": "meter_powerbrain", "dev_id": "M%d" % k, "address": "rtu:%d" % (30 + k), "name": "m" * 32,
            "desc": "d" * 64, "role": 1}


class Builder:
    """Changes through the API. A change the heap has no room for now (503 "out
    of memory": the objects of earlier changes lie scattered over the heap) is
    made again after a restart, as a user would: a boot loads the configuration
    into an empty heap (README "Memory")."""

    def __init__(self):
        self.s = Sim(heap=HEAP_LARGEST)
        self.s.start()
        self.restarts = 0

    def do(self, query, body):
        for _ in range(3):
            st = self.s.request(query, ADMIN, json.dumps(body).encode(), "POST", JSON)[:2]
            if st != (503, "out of memory"):
                return st
            self.s.stop()
            self.s = Sim(flash=self.s.flash, heap=HEAP_LARGEST)
            self.s.start()
            self.restarts += 1
        return st


@pytest.fixture(scope="module")
def largest():
    b = Builder()
    try:
        assert b.do("cmd=set_params", {"title": "t" * 64, "desc": "d" * 128}) == (200, "ok")
        for k in range(1, 9):
            assert b.do("cmd=set_params", {"devices": [evse(k)]}) == (200, "ok"), k
        for k in range(1, 9):
            assert b.do("cmd=set_params", {"devices": [meter(k)]}) == (200, "ok"), k
        for u in range(32):
            assert b.do("cmd=set_user", user(u)) == (200, "ok"), u
        # one past each bound: a 400 naming the field, nothing changed
        assert b.do("cmd=set_params", {"devices": [dict(evse(9), dev_id="E9")]}) == (400, "too many devices")
        assert b.do("cmd=set_params", {"devices": [dict(meter(9), dev_id="M9")]}) == (400, "too many devices")
        too = dict(evse(1), charging_rules=[rule(j) for j in range(5)])
        assert b.do("cmd=set_params", {"devices": [too]}) == (400, "bad value: charging_rules")
        assert b.do("cmd=set_params", {"devices": [dict(evse(1), users=["u%d" % j for j in range(9)])]}) == (
            400, "bad value: users")
        long_expr = dict(evse(1), charging_rules=[dict(rule(0), expr="x" * 33)])
        assert b.do("cmd=set_params", {"devices": [long_expr]}) == (400, "bad value: expr")
        assert b.do("cmd=set_user", user(40)) == (400, "too many users")
        assert b.do("cmd=set_user", dict(user(1), charging_rules=[rule(j) for j in range(5)])) == (
            400, "bad value: charging_rules")
        FIGURES["restarts_while_building"] = b.restarts
    finally:
        b.s.stop()
    yield b.s.flash


@pytest.mark.xfail(strict=False, reason="open (issue 13 #1): building the largest configuration through the API "
                   "fragments the heap; it does not yet come up whole at the simulation's budget")
def test_the_largest_configuration_boots_and_works(largest):
    s = Sim(flash=largest, sim_args=["--evse-ids", ",".join(str(10 + k) for k in range(1, 9))], heap=HEAP_LARGEST)
    s.start()
    try:
        assert not [x for x in s.fw_lines if "bad configuration" in x], s.fw_lines
        st, info = s.get("cmd=get_dev_info")
        assert st == 200 and len(info["devices"]) == 16, (st, info)
        assert info["params"]["title"] == "t" * 64
        st, p = s.get("cmd=get_params")
        assert st == 200 and [d["dev_id"] for d in p["devices"]][:8] == ["E%d" % k for k in range(1, 9)]
        assert p["devices"][0]["charging_rules"] == [rule(j) for j in range(4)]
        st, mem = s.get("cmd=sys_info")
        FIGURES["heap_free_after_boot"] = mem["mem_free"]
        # a session on every EVSE, of a user with 4 rules (its rules in RAM while it lasts)
        for k in range(1, 9):
            s.control(cmd="plug", slave=10 + k, car={"phases": 7, "max_ma": 16000})
        for k in range(1, 9):
            st = s.get("cmd=enter_rfid&dev_id=E%d&rfid=%020d" % (k, k * 100))
            assert st == (200, "ok"), (k, st)
        st, users = s.get("cmd=get_users", ADMIN)
        assert st == 200 and len(users) == 32 and users[5] == user(5)
        st, info = s.get("cmd=get_dev_info")
        assert st == 200 and [d["user"] for d in info["devices"][:8]] == ["%016d" % k for k in range(1, 9)]
        # and one more change is taken
        assert set_params(s, {"max_total_current": 40000}) == (200, "ok")
        st, mem = s.get("cmd=sys_info")
        FIGURES["heap_free_with_8_sessions"] = mem["mem_free"]
        assert mem["control_oom"] == 0
        print("\nlargest configuration: %s" % json.dumps(FIGURES))
    finally:
        s.stop()
    log = "".join(s.fw_lines)
    assert "MemoryError" not in log and "Traceback" not in log.replace("KeyboardInterrupt", ""), log


def test_a_flash_file_too_large_for_the_heap_falls_back_to_the_defaults(tmp_path):
    flash = str(tmp_path)
    big = {"params": {"title": "t"}, "devices": [["meter_http", "M%d" % k, {"name": "x" * 30000}] for k in range(9)]}
    with open(os.path.join(flash, "pbctl.json"), "w") as f:
        json.dump(big, f)
    with Sim(flash=flash) as s:
        st, info = s.get("cmd=get_dev_info")
        assert st == 200 and [d["dev_id"] for d in info["devices"]] == ["E1", "M1", "M2"]
    assert any("bad configuration" in x for x in s.fw_lines), s.fw_lines
