"""Users (API.md §6). Loaded on demand."""
import os

from pblib.httpd import HTTPError

from pbctl.api.cnf import admin, need


def _owner(app, rfid, req):
    from pbctl.api import auth  # (dropped again with this module after the request)

    return auth.rfid_owner(app, rfid, req.client)  # a wrong one counts as a failed login


def _user(app, uid):
    from pbctl import userlist

    return userlist.user(app.board.FLASH, uid, app)


def masked(r):
    m = dict(r)
    m["id"] = "*" * max(0, len(r["id"]) - 2) + r["id"][-2:]
    return m


async def get_users(app, req):  # admin, checked by cnf.py
    """Streamed a user at a time from flash (never all in RAM), each its
    line as stored: the JSON text the API took (validated then), never
    parsed here (a parsed user is ~9 KB on the 64-bit host; its line, in the
    app's kept line buffer, costs nothing)."""
    from pbctl import userlist

    return _array(userlist.users(app.board.FLASH, app, True))


def _array(items):
    sep = "["
    try:
        for line in items:
            yield sep
            yield line
            sep = ","
    finally:  # (a reply cut short: httpd closes this, the reader's line buffer goes back)
        items.close()
    yield "[]" if sep == "[" else "]"


async def get_user(app, req):
    """Admin, or the user itself by one of its PINs/RFIDs (shown masked)."""
    q = req.query
    u = _user(app, need(q, "id"))
    if q.get("rfid"):
        owner, _ = _owner(app, q["rfid"], req)
        if owner is None or u is None or owner["id"] != u["id"]:
            raise HTTPError(403, "unknown rfid")
        if admin(app, req, True):
            return u
        m = dict(u)
        m["rfids"] = [masked(r) for r in u["rfids"]]
        return m
    admin(app, req)
    if u is None:
        raise HTTPError(404, "unknown user")
    return u


async def set_user(app, req):
    if req.method != "POST":
        raise HTTPError(405, "method not allowed")
    body = req.json()
    from pbctl import userlist

    by_admin = admin(app, req, True)
    owner = None
    if not by_admin and req.query.get("rfid"):
        # a user may edit itself by one of its PINs/RFIDs (API.md §6)
        u, _ = _owner(app, req.query["rfid"], req)
        if u is None:
            raise HTTPError(403, "unknown rfid")
        owner = u["id"]
    async with app.lock:
        u = userlist.change_user(app.board.FLASH, body, by_admin, owner, app)
        ctl = app.control  # its sessions follow its rules now (a user without one: nothing to
        # wait for; an authorisation reads the user and asks in one step, no await between)
        if ctl.charging(u["id"]):
            await ctl.settle(ctl.user_rules(u["id"], app.site.compact_rules(u["charging_rules"])))
    return "ok"


async def get_new_user_id(app, req):  # admin, checked by cnf.py
    while True:
        b = os.urandom(4)
        uid = str(1000000000 + ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) % 3000000000)
        if _user(app, uid) is None:
            return uid
