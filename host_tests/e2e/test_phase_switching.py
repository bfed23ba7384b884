"""Phase switching end to end on the wire (INTEGRATIONS.md §5, issue 17): the
firmware under MicroPython against the simulator, a grid meter (slave 2) that
sees the PV export, two wallboxes with `phase_switching` 1 and a solar-surplus
rule: E1 (slave 1) reports feature bit 8 (8113), E2 (slave 4, priority 2) does
not.

- PV 5 kW: E1's car charges on three phases (~7.2 A each).
- PV falls to 2 kW (8.7 A in all): three phases cannot charge it (2.9 A <
  6 A), one can: the request, then on the wire exactly charging_enable 0,
  relay_select 1 once the car draws < 1 A, charging_enable 1 5 s after the
  relay (the simulator's request log); no relay switch under load.
- PV back at 5 kW at once: three phases give more, but the balancer needs 60 s
  of room and `phase_switch_min_time` (75 s here) since the last request: the
  switch back comes at the min time, not before.
- E2 (no feature bit 8) is never switched: no write of 8087 to slave 4.

About 100 s (the 60 s of room before a switch to three phases are fixed).
"""
import json
import time

import pytest
from conftest import assert_clean_log

from simrun import ADMIN, Sim, wait_for

JSON = {"Content-Type": "application/json"}
E1, E2, GRID = 1, 4, 2
RELAY, LIMIT, ENABLE = 8087, 8093, 8094
MIN_TIME = 75  # phase_switch_min_time, s
SOLAR = [{"days": 127, "mode": 5, "udur": 0}]  # charge from surplus only
PV5, PV2 = 7250, 2900  # mA per phase: 5 kW and 2 kW in all at 230 V
CAR = {"phases": 7, "max_ma": 16000}


def set_params(s, body):
    st, obj, _, _ = s.request("cmd=set_params", ADMIN, json.dumps(body).encode(), "POST", JSON)
    assert (st, obj) == (200, "ok"), (body, st, obj)


def evse(s, dev_id):
    st, obj = s.get("cmd=get_dev_info")
    assert st == 200
    return [d for d in obj["devices"] if d["dev_id"] == dev_id][0]


def writes(s, since, slave):
    """(t_ms, addr, value) of the answered writes to 8087/8093/8094 of slave."""
    r = s.control(cmd="requests", since=since, slave=slave)
    assert r["first"] <= since, "request log overran"
    return [(i["t_ms"], i["addr"], i["values"][0]) for i in r["items"]
            if i["fn"] in (6, 16) and i["addr"] in (RELAY, LIMIT, ENABLE) and i["answered"]]


def mark(s):
    return s.control(cmd="requests", since=0, slave=255)["next"]


@pytest.fixture(scope="module")
def site():
    s = Sim(sim_args=["--evse-ids", "1,4"])
    s.start()
    try:
        s.control(cmd="evse", slave=E2, features=0)  # E2: no 1p/3p switching
        set_params(s, {"devices": [{"dev_id": "M1", "role": 3}]})
        set_params(s, {"devices": [{"dev_type": "evse_powerbrain", "address": "rtu:4", "name": "b"}]})
        s.control(cmd="house", ma=0)
        s.control(cmd="pv", ma=PV5)
        set_params(s, {"max_total_current": 32000, "phase_switch_min_time": MIN_TIME, "cycle_time": 500})
        for dev_id, prio in (("E1", 1), ("E2", 2)):
            set_params(s, {"devices": [{"dev_id": dev_id, "phase_switching": 1, "prio": prio,
                                        "charging_rules": SOLAR}]})
        yield s
    finally:
        s.stop()
        log = assert_clean_log(s)
        assert "control cycle:" not in log, log


def test_pv_falls_to_one_phase_and_back_after_min_time(site):
    s = site
    # the balancer smooths the surplus (1/8 a cycle) and the set_params that added
    # E2 gave it a new one: 24 cycles to see 95 % of the 5 kW (before that, three
    # phases could not charge the car, one could: it would start on one)
    time.sleep(12)
    s.control(cmd="plug", slave=E1, car=CAR)
    s.control(cmd="plug", slave=E2, car=CAR)

    def three():
        st = s.control(cmd="state")["evses"][str(E1)]
        return st["relay"] == 0 and min(st["current_ma"]) >= 6000
    wait_for(three, 30, "E1 charging on three phases from 5 kW")
    e = evse(s, "E1")
    assert (e["phases"], e["phase_mode"]) == (7, 3)
    assert evse(s, "E2")["phase_mode"] == 0  # no feature bit 8: cannot switch

    # the surplus falls to 2 kW: one phase
    k = mark(s)
    s.control(cmd="pv", ma=PV2)
    wait_for(lambda: [w for w in writes(s, k, E1) if w[1] == ENABLE and w[2] == 1], 40,
             "E1 enabled again after the switch")
    w = writes(s, k, E1)
    seq = [(a, v) for _, a, v in w if a != LIMIT]
    assert seq == [(ENABLE, 0), (RELAY, 1), (ENABLE, 1)], w
    t_off, t_relay, t_on = [t for t, a, _ in w if a != LIMIT]
    assert t_relay - t_off <= 10000, w  # the car stopped within a cycle or two (at most 10 s)
    assert 5000 <= t_on - t_relay <= 6500, w  # 5 s after the relay, then at once
    assert [v for t, a, v in w if a == LIMIT and t > t_relay][-1] >= 60, w  # >= 6 A on one phase
    st = s.control(cmd="evse", slave=E1)
    assert (st["relay"], st["relay_switch_count"], st["relay_under_load"]) == (1, 1, 0), st

    def on_one():
        e = evse(s, "E1")
        return e["phases"] == 1 and e["phase_mode"] == 1 and e["charging_cur"] >= 8000 and e
    e = wait_for(on_one, 15, "E1 charging on L1")
    assert e["limit_reason"] == "rule 1 (solar)", e

    # the surplus is back at once: three phases again, not before the min time
    k2 = mark(s)
    s.control(cmd="pv", ma=PV5)
    t_back = time.time()
    assert evse(s, "E1")["phase_mode"] == 1
    wait_for(lambda: [w for w in writes(s, k2, E1) if w[1] == RELAY], MIN_TIME + 20,
             "relay back to three phases")
    w = writes(s, k2, E1)
    seq = [(a, v) for _, a, v in w if a != LIMIT]
    assert seq[:2] == [(ENABLE, 0), (RELAY, 0)], w
    # the request (charging_enable 0) came MIN_TIME after the first one, not 60 s
    # after the surplus returned
    t_req = [t for t, a, v in w if a == ENABLE and v == 0][0]
    assert MIN_TIME * 1000 - 1000 <= t_req - t_off <= MIN_TIME * 1000 + 3000, (w, t_off)
    assert time.time() - t_back >= MIN_TIME - 25
    wait_for(lambda: [x for x in writes(s, k2, E1) if x[1] == ENABLE and x[2] == 1], 15, "enabled on three")
    st = s.control(cmd="evse", slave=E1)
    assert (st["relay"], st["relay_switch_count"], st["relay_under_load"]) == (0, 2, 0), st
    wait_for(lambda: evse(s, "E1")["phases"] == 7, 15, "E1 charging on three phases again")

    # E2 has no feature bit 8: never switched, its relay never written
    assert not [x for x in writes(s, 0, E2) if x[1] == RELAY]
    st = s.control(cmd="evse", slave=E2)
    assert (st["relay"], st["relay_switch_count"]) == (0, 0), st
    assert s.get("cmd=sys_info")[1]["phase_switches"] == 2
