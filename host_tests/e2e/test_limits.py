"""Every configuration the API accepts boots (issue 13 #1, API.md §10).

The largest configuration is built through the API itself, at the
simulation's heap budget (simrun.HEAP) — 8 EVSEs and 8 meters with every
string at its longest, 4 charging rules per EVSE with the longest
expr/input, 8 user ids per EVSE, 32 users with 8 RFIDs and 4 rules each — as
far as the API takes it: past the board's configuration size (CONFIG_SIZE,
pbctl/cfgsize.py; the HOST board's follows the heap, simrun.config_size) a
change is 400 "configuration too large"; a change the heap has no room for
is answered 503 "out of memory" and changes nothing (made again after a
restart, as a user would: a boot loads the configuration into an empty
heap, README "Memory").
Then the firmware is restarted on that flash at the same budget: it must
come up with all of it (not the factory configuration), serve get_dev_info
and get_params, take a session of a user with 4 rules on every EVSE, and
accept one more change. One past each bound is a 400 naming the field. A
flash file too large for the heap falls back to the defaults without failing.
Figures (what the API took, heap free after boot): BENCHMARKS.md.
"""
import json
import os

import pytest

from simrun import ADMIN, HEAP, Sim, board_heap

JSON = {"Content-Type": "application/json"}
FIGURES = {}


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
    """Changes through the API at the budget; a 503 "out of memory" is made
    again after a restart (an empty heap), twice at most."""

    def __init__(self):
        self.s = Sim()
        self.s.start()
        self.restarts = 0

    def do(self, query, body):
        for _ in range(3):
            st = self.s.request(query, ADMIN, json.dumps(body).encode(), "POST", JSON)[:2]
            if st != (503, "out of memory"):
                return st
            self.s.stop()
            self.s = Sim(flash=self.s.flash)
            self.s.start()
            self.restarts += 1
        return st


def _taken(b, query, bodies):
    """Apply the bodies in order until the API refuses one for memory or the
    board's configuration size (pbctl/cfgsize.py); how many it took."""
    n = 0
    for body in bodies:
        st = b.do(query, body)
        if st in ((503, "out of memory"), (400, "configuration too large")):
            FIGURES.setdefault("refused", []).append(st[1])
            break
        assert st == (200, "ok"), (n, st)
        n += 1
    return n


@pytest.fixture(scope="module")
def largest():
    b = Builder()
    try:
        assert b.do("cmd=set_params", {"title": "t" * 64, "desc": "d" * 128}) == (200, "ok")
        FIGURES["evses_taken"] = _taken(b, "cmd=set_params", ({"devices": [evse(k)]} for k in range(1, 9)))
        FIGURES["meters_taken"] = _taken(b, "cmd=set_params", ({"devices": [meter(k)]} for k in range(1, 9)))
        FIGURES["users_taken"] = _taken(b, "cmd=set_user", (user(u) for u in range(32)))
        FIGURES["restarts_while_building"] = b.restarts
    finally:
        b.s.stop()
    yield b.s.flash


def test_the_largest_configuration_the_api_takes_boots_and_works(largest):
    ne = FIGURES["evses_taken"]
    nm = FIGURES["meters_taken"]
    # the budget, not the heap, stopped it (no 503 while building), and every user was taken
    assert FIGURES["users_taken"] == 32 and ne >= 1 and FIGURES["restarts_while_building"] == 0, FIGURES
    s = Sim(flash=largest, sim_args=["--evse-ids", ",".join(str(10 + k) for k in range(1, 9))])
    s.start()
    try:
        assert not [x for x in s.fw_lines if "bad configuration" in x], s.fw_lines
        st, info = s.get("cmd=get_dev_info")
        # E1 is the factory EVSE made into evse(1); M1, M2 the factory meters made into meter(1), meter(2)
        assert st == 200 and len(info["devices"]) == max(ne, 1) + max(nm, 2), (st, FIGURES, info)
        assert info["params"]["title"] == "t" * 64
        st, p = s.get("cmd=get_params")
        assert st == 200 and [d["dev_id"] for d in p["devices"] if d["dev_id"][0] == "E"] == [
            "E%d" % k for k in range(1, ne + 1)]
        assert p["devices"][0]["charging_rules"] == [rule(j) for j in range(4)]
        st, mem = s.get("cmd=sys_info")
        FIGURES["heap_free_after_boot"] = mem["mem_free"]
        # a session on every EVSE, of a user with 4 rules (its rules in RAM while it lasts)
        nu = FIGURES["users_taken"]
        for k in range(1, ne + 1):
            s.control(cmd="plug", slave=10 + k, car={"phases": 7, "max_ma": 16000})
        for k in range(1, min(ne, nu - 1) + 1):
            st = s.get("cmd=enter_rfid&dev_id=E%d&rfid=%020d" % (k, k * 100))
            assert st == (200, "ok"), (k, st, FIGURES)
        st, users = s.get("cmd=get_users", ADMIN)
        assert st == 200 and len(users) == nu and users[min(5, nu - 1)] == user(min(5, nu - 1))
        st, info = s.get("cmd=get_dev_info")
        assert st == 200, (st, info, s.get("cmd=sys_info"))
        evses = [d for d in info["devices"] if d["dev_id"][0] == "E"]
        assert [d["user"] for d in evses[:min(ne, nu - 1)]] == [
            "%016d" % k for k in range(1, min(ne, nu - 1) + 1)]
        # and one more change is taken, and one that makes the configuration smaller
        assert set_params(s, {"max_total_current": 40000}) == (200, "ok")
        assert set_params(s, {"title": "t"}) == (200, "ok")
        st, mem = s.get("cmd=sys_info")
        assert st == 200, (st, mem)
        FIGURES["heap_free_with_sessions"] = mem["mem_free"]
        assert mem["control_oom"] == 0
        print("\nlargest configuration (heap %s): %s" % (HEAP, json.dumps(FIGURES)))
    finally:
        s.stop()
    log = "".join(s.fw_lines)
    assert "MemoryError" not in log and "Traceback" not in log.replace("KeyboardInterrupt", ""), log


def test_one_past_each_bound_is_a_400_naming_it():
    small_e = lambda k: {"dev_type": "evse_powerbrain", "dev_id": "E%d" % k, "address": "rtu:%d" % (10 + k)}  # noqa: E731
    small_m = lambda k: {"dev_type": "meter_powerbrain", "dev_id": "M%d" % k, "address": "rtu:%d" % (30 + k)}  # noqa: E731
    small_u = lambda u: {"id": "%016d" % u, "name": "u%d" % u}  # noqa: E731
    with Sim(heap=board_heap()) as s:  # (the bounds at the board's 96 KB; the heap at 128k: the test above)
        for k in range(1, 9):
            assert set_params(s, {"devices": [small_e(k)]}) == (200, "ok"), k
            assert set_params(s, {"devices": [small_m(k)]}) == (200, "ok"), k
        for u in range(32):
            assert s.request("cmd=set_user", ADMIN, json.dumps(small_u(u)).encode(), "POST", JSON)[:2] == (200, "ok")
        assert set_params(s, {"devices": [small_e(9)]}) == (400, "too many devices")
        assert set_params(s, {"devices": [small_m(9)]}) == (400, "too many devices")
        assert set_params(s, {"devices": [dict(evse(1), charging_rules=[rule(j) for j in range(5)])]}) == (
            400, "bad value: charging_rules")
        assert set_params(s, {"devices": [dict(evse(1), users=["u%d" % j for j in range(9)])]}) == (
            400, "bad value: users")
        assert set_params(s, {"devices": [dict(evse(1), charging_rules=[dict(rule(0), expr="x" * 33)])]}) == (
            400, "bad value: expr")
        su = lambda b: s.request("cmd=set_user", ADMIN, json.dumps(b).encode(), "POST", JSON)[:2]  # noqa: E731
        assert su(small_u(40)) == (400, "too many users")
        assert su(dict(small_u(1), charging_rules=[rule(j) for j in range(5)])) == (400, "bad value: charging_rules")
        # nothing of it changed anything
        st, p = s.get("cmd=get_params")
        assert st == 200 and len(p["devices"]) == 16 and p["devices"][0]["charging_rules"] == []


def test_past_the_configuration_size_a_400_and_nothing_changed():
    """At the simulation's heap the HOST board's CONFIG_SIZE (simrun.config_size)
    takes EVSEs with the factory's configuration until the next one would pass
    it; that one is 400 "configuration too large" and changes nothing; a
    change that does not make the configuration larger is still taken."""
    from pbctl import cfgsize

    from simrun import config_size, heap_bytes

    budget = config_size(heap_bytes(HEAP))
    small_e = lambda k: {"dev_type": "evse_powerbrain", "dev_id": "E%d" % k, "address": "rtu:%d" % (10 + k)}  # noqa: E731

    def size(p):  # what the controller's devices count (get_params shows them as stored, but fixed_rfid "")
        return sum(cfgsize.device(d["dev_type"].startswith("evse"), dict(d, fixed_rfid="")) - cfgsize.weight(
            {"dev_type": d["dev_type"], "dev_id": d["dev_id"]}) + 2 for d in p["devices"])

    with Sim() as s:
        k = 2
        while True:
            st = set_params(s, {"devices": [small_e(k)]})
            if st != (200, "ok"):
                break
            k += 1
        if st == (400, "too many devices"):  # the count bound first: only right if all of them fit the budget
            assert size(s.get("cmd=get_params")[1]) <= budget, "past the budget and not refused"
            pytest.skip("CONFIG_SIZE %d at heap %s takes 8 EVSEs as the factory makes them" % (budget, HEAP))
        assert st == (400, "configuration too large"), (k, st)
        st, p = s.get("cmd=get_params")
        assert st == 200 and len([d for d in p["devices"] if d["dev_id"][0] == "E"]) == k - 1
        one = size(p) - size(dict(p, devices=[d for d in p["devices"] if d["dev_id"] != "E2"]))  # one such EVSE
        assert size(p) <= budget < size(p) + one + 40, (size(p), one, budget)
        # a change that does not make it larger is taken: E2's name shorter
        assert set_params(s, {"devices": [{"dev_id": "E2", "name": ""}]}) == (200, "ok")


def test_a_flash_file_too_large_for_the_heap_falls_back_to_the_defaults(tmp_path):
    flash = str(tmp_path)
    big = {"params": {"title": "t"}, "devices": [["meter_http", "M%d" % k, {"name": "x" * 30000}] for k in range(9)]}
    with open(os.path.join(flash, "pbctl.json"), "w") as f:
        json.dump(big, f)
    with Sim(flash=flash) as s:
        st, info = s.get("cmd=get_dev_info")
        assert st == 200 and [d["dev_id"] for d in info["devices"]] == ["E1", "M1", "M2"]
    assert any("bad configuration" in x for x in s.fw_lines), s.fw_lines
