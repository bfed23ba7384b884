"""Users (API.md §6). Loaded on demand."""
import os

from cnf import admin, need
from httpd import HTTPError


def _owner(app, rfid):
    import auth  # (dropped again with this module after the request)

    return auth.rfid_owner(app, rfid)


def masked(r):
    m = dict(r)
    m["id"] = "*" * max(0, len(r["id"]) - 2) + r["id"][-2:]
    return m


async def get_users(app, req):  # admin, checked by cnf.py
    return app.users


async def get_user(app, req):
    """Admin, or the user itself by one of its PINs/RFIDs (shown masked)."""
    q = req.query
    u = app.user(need(q, "id"))
    if q.get("rfid"):
        owner, _ = _owner(app, q["rfid"])
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
    import users

    return users.set_user(app, body, admin(app, req, True))


async def get_new_user_id(app, req):  # admin, checked by cnf.py
    while True:
        b = os.urandom(4)
        uid = str(1000000000 + ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) % 3000000000)
        if app.user(uid) is None:
            return uid
