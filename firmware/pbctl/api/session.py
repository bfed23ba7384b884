"""Sessions: enter_rfid, override_device, soft_meter (API.md §5). Loaded on demand.

Who may do what is decided here (policy "u" in cnf.py's table): a user's
PIN/RFID, or the admin. What changes is handed to the control task.
"""
import time

from pblib.httpd import HTTPError

from pbctl.api.args import bad, int_param
from pbctl.api.cnf import admin, need


def _owner(app, rfid, req):
    from pbctl.api import auth  # (dropped again with this module after the request)

    return auth.rfid_owner(app, rfid, req.client)  # a wrong one counts as a failed login


def _evse(app, dev_id):
    d = app.site.device(dev_id)
    if d is None or not d.is_evse:
        raise HTTPError(404, "unknown device")
    return d


def rfid_user(app, evse, rfid, req):
    """The user whose PIN/RFID rfid may start a session at evse (403 if none)."""
    user, r = _owner(app, rfid, req)
    if user is None or not r["ac_auth"]:
        raise HTTPError(403, "unknown rfid")
    allowed = evse.cfg["users"]
    if (allowed and user["id"] not in allowed) or (user["dev_ids"] and evse.dev_id not in user["dev_ids"]):
        raise HTTPError(403, "rfid not allowed at this device")
    return user


def authorize(app, evse, user):
    """Hand the control task the session's user and its charging rules."""
    return app.control.authorize(evse.dev_id, user["id"], app.site.compact_rules(user["charging_rules"]))


async def enter_rfid(app, req):
    q = req.query
    rfid = need(q, "rfid")
    if "dev_id" in q:
        evse = _evse(app, q["dev_id"])
    else:
        # the EVSE with an EV present and no user yet; ties: the latest plugged in
        evse = None
        for e in app.site.devices:
            if e.is_evse and e.state in (2, 3, 4) and not e.user and (evse is None or time.ticks_diff(e.plug_ms, evse.plug_ms) > 0):
                evse = e
        if evse is None:
            if _owner(app, rfid, req)[0] is None:
                raise HTTPError(403, "unknown rfid")
            raise HTTPError(404, "no vehicle waiting")
    ctl = app.control
    link = app.links.get("ocpp")
    if link is not None and _owner(app, rfid, req)[0] is None:
        # not known locally: the OCPP central system decides (Authorize.req)
        if not await link.authorize(rfid):
            raise HTTPError(403, "unknown rfid")
        link.authorized(evse, rfid)
        await ctl.settle(ctl.authorize(evse.dev_id, "ocpp"))
        return "ok"
    await ctl.settle(authorize(app, evse, rfid_user(app, evse, rfid, req)))
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
        user, r = _owner(app, q["rfid"], req)
        if user is None or (evse.user and evse.user != user["id"]):
            raise HTTPError(403, "unknown rfid")
        allowed = evse.cfg["users"]
        if allowed and user["id"] not in allowed:
            raise HTTPError(403, "rfid not allowed at this device")
    if ("E" in flags or "e" in flags) and not by_admin:
        raise HTTPError(401, "authentication required")
    if ("U" in flags or "u" in flags) and user is None:
        raise HTTPError(403, "rfid required")
    stop = "C" in flags or "c" in flags
    if (stop or mamps is not None) and not by_admin:
        if user is None:
            raise HTTPError(401, "authentication required")
        if stop and not r["ac_ovch"]:
            raise HTTPError(403, "rfid may not stop charging")
    ctl = app.control
    await ctl.settle(ctl.override(evse.dev_id, flags, mamps))
    return "ok"


async def soft_meter(app, req):
    """The old reading; with val (admin) it is set."""
    q = req.query
    evse = _evse(app, need(q, "dev_id"))
    old = evse.soft_wh  # the estimate (what val sets; integrated for EVSEs without a meter)
    if "val" in q:
        admin(app, req)
        wh = int_param(q, "val", 0, 100000000)  # (the field table's bound of soft_meter: a backup of it restores)
        async with app.lock:  # (it changes the configuration's soft_meter)
            await app.control.settle(app.control.energy(evse.dev_id, wh))
    return old
