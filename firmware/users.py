"""User changes (API.md §6): set_user and validation. Loaded on demand."""
from micropython import const

import schema
from app import AUTH_HDR
from cfgsave import save, snapshot
from httpd import HTTPError

_MAX_USERS = const(32)


def set_user(app, body, admin):
    if not isinstance(body, dict):
        raise HTTPError(400, "bad json")
    uid = body.get("id")
    if not isinstance(uid, str) or not uid:
        raise HTTPError(400, "bad value: id")
    old = app.user(uid)
    if old is None and not admin:
        raise HTTPError(401, "authentication required", AUTH_HDR)
    if old is None and len(app.users) >= _MAX_USERS:
        raise HTTPError(400, "too many users")
    if not admin:
        # a user may edit itself, but not what it may use or how it identifies
        for k in ("dev_ids", "rfids"):
            if k in body and body[k] != old.get(k):
                raise HTTPError(403, "admin required: " + k)
    u = check_user(body, dict(old) if old else None)
    snap = snapshot(app)
    snap["users"] = [u if x is old else x for x in app.users] + ([] if old else [u])
    save(app, snap)
    app.users = snap["users"]
    return "ok"


def check_user(obj, base=None):
    """A validated user object (fields of API.md §6), starting from base."""
    u = base if base else schema.defaults(schema.USER)
    try:
        schema.check(schema.USER, obj, u)
        if not u["id"]:
            raise schema.SchemaError("bad value: id")
        rf = obj.get("rfids", u.get("rfids", []))
        if not isinstance(rf, list) or len(rf) > 8:
            raise schema.SchemaError("bad value: rfids")
        out = []
        for r in rf:
            x = schema.check(schema.RFID, r, schema.defaults(schema.RFID), "rfids")
            if not x["id"].isdigit():
                raise schema.SchemaError("bad value: rfids")
            out.append(x)
        u["rfids"] = out
    except schema.SchemaError as e:
        raise HTTPError(400, e.args[0])
    return u
