"""HTTP-input devices: set_ajax_meter, set_ajax_evse (API.md §4). Loaded on demand.

Fields come from a JSON body (POST) or the query (GET form, lists as
"231,232,233"). Every field is optional; all are validated before any is
applied.
"""
import time

import args
import cnf
from httpd import HTTPError

_METER = (("model", "s"), ("import_wh", "i"), ("export_wh", "i"), ("voltage", "l"), ("current", "l"),
          ("power_w", "i"), ("is_va", "b"))
_EVSE = (("state", "i"), ("max_charging_current", "i"), ("current", "l"), ("total_energy", "i"),
         ("model", "s"), ("rfid", "s"))
_BIG = 1 << 40


def _int(v, name, form):
    if form:
        return args.parse_int(v, name, -_BIG, _BIG)
    if not isinstance(v, int) or isinstance(v, bool) or not -_BIG <= v <= _BIG:
        raise args.bad(name)
    return v


def fields(req, spec):
    if req.method == "POST" and req.body:
        src = req.json()
        if not isinstance(src, dict):
            raise HTTPError(400, "bad json")
        form = False
    else:
        src = req.query
        form = True
    out = {}
    for name, kind in spec:
        if name not in src:
            continue
        v = src[name]
        if kind == "l":
            if form:
                v = v.strip("[]").split(",")
            if not isinstance(v, list) or len(v) != 3:
                raise args.bad(name)
            v = [_int(x, name, form) for x in v]
        elif kind == "s":
            if not isinstance(v, str) or len(v) > 64:
                raise args.bad(name)
        elif kind == "b":
            v = args.flag(src, name) if form else v
            if not isinstance(v, bool):
                raise args.bad(name)
        else:
            v = _int(v, name, form)
        out[name] = v
    return out


def _device(app, req, dev_type):  # set_ajax_*: admin, checked by cnf.py
    d = app.device(cnf.need(req.query, "dev_id"))
    if d is None:
        raise HTTPError(404, "unknown device")
    if d.dev_type != dev_type:
        raise HTTPError(400, "not an HTTP input device")
    return d


def _apply(d, v, energy):
    """The fields both device kinds share: model, energy (under its key), voltage, current, power."""
    if "model" in v:
        d.model = v["model"]
    if energy in v:
        d.energy = v[energy]
    sign = -1 if d.cfg.get("invert") else 1
    if "voltage" in v:
        d.voltage[:] = v["voltage"]
    if "current" in v:
        for i in range(3):
            d.cur[i] = sign * v["current"][i]
    if "power_w" in v:
        d.power = sign * v["power_w"]
    elif "current" in v or "voltage" in v:
        d.power = d.estimate_power()  # API.md §4: missing power_w = voltage × current


async def set_ajax_meter(app, req):
    d = _device(app, req, "meter_http")
    v = fields(req, _METER)
    _apply(d, v, "import_wh")
    if "export_wh" in v:
        d.export = v["export_wh"]
    if "is_va" in v:
        d.cfg["is_va"] = v["is_va"]
    d.updated(time.ticks_ms())
    return "ok"


async def set_ajax_evse(app, req):
    d = _device(app, req, "evse_http")
    v = fields(req, _EVSE)
    if "state" in v and not 1 <= v["state"] <= 5:
        raise args.bad("state")
    if v.get("rfid"):
        import cmd_session

        cmd_session.authorize(app, d, v["rfid"])
    now = time.ticks_ms()
    _apply(d, v, "total_energy")
    if "max_charging_current" in v:
        d.max_http = v["max_charging_current"]
    if "state" in v:
        d.set_state(v["state"], now)
    d.updated(now)
    if app.control:
        app.control.rebalance()
    return {
        "device_enabled": d.cfg["device_enabled"] == 1,
        "charging_enabled": d.limit > 0,
        "paused": d.paused,
        "charging_current": d.limit,
    }
