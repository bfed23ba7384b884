"""HTTP-input devices: set_ajax_meter, set_ajax_evse (API.md §4). Loaded on demand.

Fields come from a JSON body (POST) or the query (GET form, lists as
"231,232,233"). Every field is optional; all are validated before any is
applied.
"""
from pblib.httpd import HTTPError

from pbctl.api import args
from pbctl.api.cnf import need

_METER = (("model", "s"), ("import_wh", "i"), ("export_wh", "i"), ("voltage", "l"), ("current", "l"),
          ("power_w", "i"), ("is_va", "b"))
_EVSE = (("state", "i"), ("max_charging_current", "i"), ("current", "l"), ("total_energy", "i"),
         ("model", "s"), ("rfid", "s"))
_BIG = 1 << 40


def _int(v, name, form):
    if form:
        return args.parse_int(v, name, -_BIG, _BIG)
    if isinstance(v, float) and -_BIG <= v <= _BIG:
        v = int(v)  # a JSON number with a fraction (clients send floats): toward zero, as query values
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
    d = app.site.device(need(req.query, "dev_id"))
    if d is None:
        raise HTTPError(404, "unknown device")
    if d.dev_type != dev_type:
        raise HTTPError(400, "not an HTTP input device")
    return d


async def set_ajax_meter(app, req):
    d = _device(app, req, "meter_http")
    ctl = app.control
    await ctl.settle(ctl.reading(d, fields(req, _METER)))
    return "ok"


async def set_ajax_evse(app, req):
    """The reply is the controller's decision with this reading (the control
    task's pass that applied it)."""
    d = _device(app, req, "evse_http")
    v = fields(req, _EVSE)
    if "state" in v and not 1 <= v["state"] <= 5:
        raise args.bad("state")
    ctl = app.control
    if v.get("rfid"):
        from pbctl.api import session

        session.authorize(app, d, session.rfid_user(app, d, v["rfid"], req))
    await ctl.settle(ctl.reading(d, v))
    return {
        "device_enabled": d.cfg["device_enabled"] == 1,
        "charging_enabled": d.limit > 0,
        "paused": d.paused,
        "charging_current": d.limit,
    }
