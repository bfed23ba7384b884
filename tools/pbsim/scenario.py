"""Scenario JSON: the physics' starting point and its timed events.

All keys optional::

  {"name": "...", "description": "...",
   "evse_ids": [1], "speed": 1, "ramp_ma_per_s": 5000, "seed": 1,
   "house": {"profile": [[0, 3000, 2000, 1000]], "noise_ma": 0}  | [l1,l2,l3],
   "pv": {"profile": [[0, 0]]} | n,
   "meters": {"2": {"role": "grid"}, "3": {"role": "evse", "evses": [1]}},
   "evses": {"1": {"grid_phases": [0, 1, 2], "features": 256,
                   "car": {...plugged at t=0...}}},
   "events": [[t_s, {"cmd": "plug", ...}], ...]}

Meters are slaves 2 and 3 only; roles grid|house|pv|evse|static. grid_phases
maps EVSE phase L1..L3 to grid phase index (phase rotation). features is
written to the EVSE's register 8113 (bit 8 = 1p/3p switching available,
relay.py); without it 8113 keeps its value. events run any control command
(except scenario/reset) at physics time t_s. Unknown keys are an error. --speed
is the default of "speed". A scenario is checked whole before anything changes.
Examples: tools/scenarios/default.json, tools/scenarios/house_step.json.
"""
import random

from pbsim.checks import CmdError, as_int, as_u16, phases3
from pbsim.physics import METER_ROLES, new_car

SCENARIO_KEYS = {"name", "description", "evse_ids", "speed", "ramp_ma_per_s", "seed",
                 "house", "pv", "meters", "evses", "events"}


def _slave_key(key, what):
    try:
        return int(key)
    except (TypeError, ValueError):
        raise CmdError("%s key %r is not a slave id" % (what, key))


def _profile(p, width):
    """[[t_s, v, ...], ...] -> [(t_ms, [v, ...]), ...] sorted by time."""
    if not isinstance(p, list) or not p:
        raise CmdError("profile must be a non-empty list")
    out = []
    for row in p:
        if not isinstance(row, list) or len(row) != width:
            raise CmdError("profile rows need %d values" % width)
        out.append((_ms(row[0]), [as_int(x, "profile") for x in row[1:]]))
    out.sort(key=lambda r: r[0])
    return out


def _ms(t_s):
    try:
        return int(round(float(t_s) * 1000))
    except (TypeError, ValueError):
        raise CmdError("time must be a number of seconds")


def _house(plan, house):
    if isinstance(house, dict):
        plan["house_profile"] = _profile(house.get("profile", [[0, 0, 0, 0]]), 4)
        plan["noise"] = as_int(house.get("noise_ma", 0), "noise_ma")
    elif house is not None:
        plan["house_static"] = phases3(house, "house")


def _pv(plan, pv):
    if isinstance(pv, dict):
        plan["pv_profile"] = _profile(pv.get("profile", [[0, 0]]), 2)
    elif pv is not None:
        plan["pv_static"] = phases3(pv, "pv")


def _meters(meters, known):
    out = {}
    for key, m in (meters or {}).items():
        sid = _slave_key(key, "meter")
        if sid not in known:
            raise CmdError("meter %s: meters are slaves 2 and 3" % key)
        role = m.get("role", "static")
        if role not in METER_ROLES:
            raise CmdError("meter role must be one of %s" % (METER_ROLES,))
        out[sid] = (role, [_slave_key(i, "meter evses") for i in m.get("evses", [])])
    return out


def _evses(evses, evse_ids):
    out = {}
    for key, e in (evses or {}).items():
        sid = _slave_key(key, "evse")
        if sid not in evse_ids:
            raise CmdError("evse %s is not on the bus" % key)
        gp = e.get("grid_phases", [0, 1, 2])
        if not isinstance(gp, list) or sorted(gp) != [0, 1, 2]:
            raise CmdError("grid_phases must be a permutation of [0,1,2]")
        spec = {"grid_phases": list(gp), "car": None, "features": None}
        if e.get("car") is not None:
            spec["car"] = new_car(e["car"])
        if e.get("features") is not None:
            spec["features"] = as_u16(e["features"], "features")
        out[sid] = spec
    return out


def _events(events):
    out = []
    for ev in events or []:
        if not (isinstance(ev, list) and len(ev) == 2 and isinstance(ev[1], dict)):
            raise CmdError("event must be [t_s, {command}]")
        if ev[1].get("cmd") in ("scenario", "reset"):
            raise CmdError("event command %r not allowed" % ev[1].get("cmd"))
        out.append((_ms(ev[0]), ev[1]))
    out.sort(key=lambda e: e[0])
    return out


def parse(sc, evse_ids, meter_ids, default_speed):
    """Check a scenario; -> the plan that apply() carries out."""
    if not isinstance(sc, dict):
        raise CmdError("scenario must be an object")
    bad = set(sc) - SCENARIO_KEYS
    if bad:
        raise CmdError("unknown scenario keys: %s" % ", ".join(sorted(bad)))
    if "evse_ids" in sc:
        ids = [as_int(i, "evse_ids") for i in sc["evse_ids"]]
        if sorted(ids) != sorted(evse_ids):
            raise CmdError("scenario evse_ids %s differ from the bus %s" % (ids, list(evse_ids)))
    try:
        speed = float(sc.get("speed", default_speed))
    except (TypeError, ValueError):
        raise CmdError("speed must be a number")
    plan = {"speed": speed, "ramp": as_int(sc.get("ramp_ma_per_s", 5000), "ramp_ma_per_s"),
            "seed": sc.get("seed", 1), "house_static": None, "house_profile": None, "noise": 0,
            "pv_static": None, "pv_profile": None}
    _house(plan, sc.get("house"))
    _pv(plan, sc.get("pv"))
    plan["meters"] = _meters(sc.get("meters"), meter_ids)
    plan["evses"] = _evses(sc.get("evses"), evse_ids)
    plan["events"] = _events(sc.get("events"))
    return plan


def apply(physics, plan):
    """Restart the physics with the plan (registers other than the physics' are left alone)."""
    physics.clear()
    physics.on = True
    physics.speed = plan["speed"]
    physics.ramp = plan["ramp"]
    physics.rng = random.Random(plan["seed"])
    if plan["house_static"] is not None:
        physics.house_static = plan["house_static"]
    physics.house_profile = plan["house_profile"]
    physics.noise = plan["noise"]
    if plan["pv_static"] is not None:
        physics.pv_static = plan["pv_static"]
    physics.pv_profile = plan["pv_profile"]
    for sid, (role, evses) in plan["meters"].items():
        physics.meters[sid]["role"] = role
        physics.meters[sid]["evses"] = evses
    for sid, spec in plan["evses"].items():
        physics.evses[sid]["grid_phases"] = spec["grid_phases"]
        if spec["car"] is not None:
            physics.evses[sid]["car"] = spec["car"]
    physics.events = list(plan["events"])
    physics.update_inputs()
