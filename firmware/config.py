"""Configuration changes: set_params (cfgdel.py: del/reset_device). Loaded on demand.

Each change is validated on a copy, persisted, and only then swapped in.
The stored file is {"params", "devices": [[dev_type, dev_id, {config}], ...],
"users", "admin", "license"} — the device entries reference the live config
dicts, so a save copies nothing big;
cfgboot.py reads it at boot, users.py changes users.
"""
from micropython import const

import time

import devices
import schema
from cfgsave import entry, save, snapshot
from httpd import HTTPError

_MAX_METERS = const(8)


def _fields(dev_type):
    return schema.EVSE if dev_type[:5] == "evse_" else schema.METER


# An admin command: cnf.py checks before loading this module.
async def set_params(app, req):
    """cmd=set_params (API.md §3): POST a JSON object."""
    if req.method != "POST":
        raise HTTPError(405, "method not allowed")
    return apply_params(app, req.json())


def apply_params(app, body):
    if not isinstance(body, dict):
        raise HTTPError(400, "bad json")
    params = dict(app.params)
    try:
        schema.check(schema.PARAMS, body, params)
    except schema.SchemaError as e:
        raise HTTPError(400, e.args[0])
    devs = body.get("devices")
    new = None
    if devs is not None:
        if not isinstance(devs, list) or len(devs) > 1:
            raise HTTPError(400, "bad value: devices")
        if devs:
            new = _device_update(app, devs[0])
    snap = snapshot(app)
    snap["params"] = params
    if new is not None:
        old = app.device(new.dev_id)
        snap["devices"] = [entry(new if d is old else d) for d in app.devices]
        if old is None:
            snap["devices"].append(entry(new))
    save(app, snap)
    app.params = params
    if new is not None:
        if old is None:
            app.devices.append(new)
        elif old.cfg["address"] != new.cfg["address"] or old.cfg["id"] != new.cfg["id"]:
            app.devices[app.devices.index(old)] = new  # another box: fresh runtime state
        else:
            old.cfg = new.cfg
    return "ok"


def _device_update(app, obj):
    """A validated, not yet installed Device for one set_params device object."""
    if not isinstance(obj, dict):
        raise HTTPError(400, "bad value: devices")
    dev_id = obj.get("dev_id")
    t = obj.get("dev_type")
    old = app.device(dev_id) if isinstance(dev_id, str) else None
    if old is not None:
        if t is not None and t != old.dev_type:
            raise HTTPError(400, "bad value: dev_type")
        t = old.dev_type
        cfg = dict(old.cfg)
    else:
        if t is None and dev_id is not None:
            raise HTTPError(404, "unknown device")
        if t not in devices.DEV_META:
            raise HTTPError(400, "bad value: dev_type")
        cfg = schema.defaults(_fields(t), schema.like(app, t))
        prefix = "E" if t.startswith("evse_") else "M"
        n = len([d for d in app.devices if d.dev_id[0] == prefix])
        if n >= (app.MAX_EVSES if prefix == "E" else _MAX_METERS):
            raise HTTPError(400, "too many devices")
        ctl = app.control
        if prefix == "E" and ctl and n >= len(ctl.slot):
            try:  # room in the balancer first: if there is none, nothing changes
                ctl.resize(n + 1)
            except MemoryError:
                raise HTTPError(503, "out of memory")
        if dev_id is None:
            dev_id = _next_id(app, prefix)
        elif (not isinstance(dev_id, str) or not 2 <= len(dev_id) <= 4 or dev_id[0] != prefix
              or not dev_id[1:].isdigit()):
            raise HTTPError(400, "bad value: dev_id")
    try:
        schema.check(_fields(t), obj, cfg)
    except schema.SchemaError as e:
        raise HTTPError(400, e.args[0])
    if t.endswith("_powerbrain"):
        if old is None and "address" not in obj:
            cfg["address"] = "rtu:%d" % cfg["id"]
        s = devices.slave_id(cfg["address"], cfg["id"])
        if s is None:
            raise HTTPError(400, "bad value: address")
        cfg["id"] = s
    if prefix_of(t) == "E":
        if cfg["min_charging_cur"] > cfg["max_charging_cur"]:
            raise HTTPError(400, "bad value: min_charging_cur")
        a = cfg["attach"]
        if a and (app.device(a) is None or app.device(a).is_evse):
            raise HTTPError(400, "bad value: attach")
    return devices.new_device(t, dev_id, cfg, app.bus, time.ticks_ms())


def prefix_of(dev_type):
    return "E" if dev_type.startswith("evse_") else "M"


def _next_id(app, prefix):
    n = 1
    while app.device(prefix + str(n)) is not None:
        n += 1
    return prefix + str(n)
