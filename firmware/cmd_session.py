"""Sessions: enter_rfid, override_device, soft_meter (API.md §5). Loaded on demand."""
import time

from args import bad, int_param
from cnf import admin, need
from app import AUTH_HDR
from httpd import HTTPError


def _owner(app, rfid):
    import auth  # (dropped again with this module after the request)

    return auth.rfid_owner(app, rfid)


def _evse(app, dev_id):
    d = app.device(dev_id)
    if d is None or not d.is_evse:
        raise HTTPError(404, "unknown device")
    return d


def authorize(app, evse, rfid):
    """Start evse's session for the user owning PIN/RFID rfid."""
    user, r = _owner(app, rfid)
    if user is None or not r["ac_auth"]:
        raise HTTPError(403, "unknown rfid")
    allowed = evse.cfg["users"]
    if (allowed and user["id"] not in allowed) or (user["dev_ids"] and evse.dev_id not in user["dev_ids"]):
        raise HTTPError(403, "rfid not allowed at this device")
    evse.user = user["id"]


async def enter_rfid(app, req):
    q = req.query
    rfid = need(q, "rfid")
    if "dev_id" in q:
        evse = _evse(app, q["dev_id"])
    else:
        # the EVSE with an EV present and no user yet; ties: the latest plugged in
        evse = None
        for e in app.devices:
            if e.is_evse and e.state in (2, 3, 4) and not e.user and (evse is None or time.ticks_diff(e.plug_ms, evse.plug_ms) > 0):
                evse = e
        if evse is None:
            if _owner(app, rfid)[0] is None:
                raise HTTPError(403, "unknown rfid")
            raise HTTPError(404, "no vehicle waiting")
    authorize(app, evse, rfid)
    if app.control:
        app.control.kick()
    return "ok"


async def override_device(app, req):
    """Flags C/c (admin or the user's PIN/RFID with ac_ovch), E/e (admin),
    U/u (the user's PIN/RFID); mamps caps the current (0 = no cap)."""
    q = req.query
    evse = _evse(app, need(q, "dev_id"))
    flags = q.get("flags", "")
    for f in flags:
        if f not in "CcEeUu":
            raise bad("flags")
    mamps = int_param(q, "mamps", 0, 80000) if "mamps" in q else None
    by_admin = admin(app, req, True)
    user = r = None
    if q.get("rfid"):
        user, r = _owner(app, q["rfid"])
        if user is None or (evse.user and evse.user != user["id"]):
            raise HTTPError(403, "unknown rfid")
        allowed = evse.cfg["users"]
        if allowed and user["id"] not in allowed:
            raise HTTPError(403, "rfid not allowed at this device")
    if ("E" in flags or "e" in flags) and not by_admin:
        raise HTTPError(401, "authentication required", AUTH_HDR)
    if ("U" in flags or "u" in flags) and user is None:
        raise HTTPError(403, "rfid required")
    stop = "C" in flags or "c" in flags
    if (stop or mamps is not None) and not by_admin:
        if user is None:
            raise HTTPError(401, "authentication required", AUTH_HDR)
        if stop and not r["ac_ovch"]:
            raise HTTPError(403, "rfid may not stop charging")
    ov = evse.ov_flags
    for f in flags:
        u = f.upper()
        if f == u:
            if u not in ov:
                ov += u
        else:
            ov = ov.replace(u, "")
    evse.ov_flags = ov
    if mamps is not None:
        evse.ov_mamps = mamps
    if app.control:
        app.control.kick()
    return "ok"


async def soft_meter(app, req):
    """The old reading; with val (admin) it is set."""
    q = req.query
    evse = _evse(app, need(q, "dev_id"))
    old = evse.energy if evse.rtu else evse.soft_wh  # the box's own meter when it has one
    if "val" in q:
        admin(app, req)
        wh = evse.soft_wh = int_param(q, "val", 0, 1 << 40)
        evse.soft_mws = 0
        evse.cfg["soft_meter"] = wh
        import cfgsave

        cfgsave.save(app)
    return old
