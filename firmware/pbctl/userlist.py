"""The users (API.md §6): a list file of their own (store.Store(flash,
"users"): one user a line), read and written a user at a time and never held
in RAM as a whole: a user's charging rules are in RAM only while it has a
session (devices.Evse.user_rules). Loaded on demand, apart from config.py: a
request that reads users (get_users, a PIN/RFID) loads no more than this and
store.py (a module's globals are one dict: config.py's took one 752 B block,
which a heap holding a large configuration often lacks). Validation uses
config.py's field tables (config.check), loaded only by what changes a user.

A parsed user is ~9 KB on the 64-bit host (8 RFIDs, 4 rules, ~2 KB of text):
lines are parsed only when they hold the string looked for (store.each want),
and a rewrite copies the other users' lines as they are.

**Decision** (config.py has the others): at most 32 users with 8 PINs/RFIDs,
8 EVSEs and 4 charging rules each.
"""
from micropython import const

from pbctl import store

MAX_USERS = const(32)

USER = """id s 1 16 
name s 0 32 
display b 0 0 1
dev_ids u 0 8 
charging_rules r 0 4 """

RFID = """id s 1 20 
name s 0 32 
ac_auth b 0 0 1
ac_ovch b 0 0 0
used_phases i 0 7 0"""


def drop_device_from_users(flash, dev_id):
    """del_device's references in the users' dev_ids go (a separate file: a
    power cut between the two saves leaves a reference to no device, harmless)."""
    st = store.Store(flash, "users")
    it = st.each(False, quoted(dev_id))
    try:
        for u in it:
            if dev_id in u.get("dev_ids", ()):
                break
        else:
            return
    finally:
        it.close()
    u = None
    st.write((_without(u, dev_id) for u in st.each(False, quoted(dev_id), True)), True)


def _without(u, dev_id):
    # (a line without dev_id comes as it is: store.each raw)
    if isinstance(u, dict):
        u["dev_ids"] = [i for i in u.get("dev_ids", ()) if i != dev_id]
    return u


def users(flash, lend=None, raw=False):
    """The users, one at a time (a user dict each, as stored: RFIDs unmasked;
    raw: each one's line as it is stored, its JSON text, a memoryview valid
    until the next: get_users and get_config send it without parsing it).
    lend: the app, which lends its line buffer (store.Store); a reader that
    stops early closes the generator, so the buffer goes back."""
    return store.Store(flash, "users", lend).each(False, [] if raw else None, raw)


def quoted(*s):
    # how json.dump wrote these strings: a line without one is not parsed (store.each)
    import json

    return [json.dumps(x).encode() for x in s]


def user(flash, uid, lend=None):
    it = store.Store(flash, "users", lend).each(False, quoted(uid))
    try:
        for u in it:
            if u.get("id") == uid:
                return u
    finally:
        it.close()
    return None


def change_user(flash, body, admin, owner=None, lend=None):
    """set_user (API.md §6): the user saved (the users' file written anew, a user
    at a time); returns the user. admin: the request carries the admin's
    credentials; else owner is the id of the user whose PIN/RFID it carries,
    and only that user's own name, display and charging rules may change (a
    user id alone authorises nothing). A PIN/RFID belongs to one user only."""
    from pbctl.config import ConfigError

    if not isinstance(body, dict):
        raise ConfigError("bad json")
    uid = body.get("id")
    if not isinstance(uid, str) or not uid:
        raise ConfigError("bad value: id")
    old = user(flash, uid, lend)
    if not admin and (old is None or owner != uid):
        raise ConfigError("authentication required" if owner is None else "unknown rfid",
                          401 if owner is None else 403)
    if not admin:
        # a user may edit itself, but not what it may use or how it identifies
        for k in ("dev_ids", "rfids"):
            if k in body and body[k] != old.get(k):
                raise ConfigError("admin required: " + k, 403)
    new = old is None
    u = check_user(body, check_user(old) if old else None)
    # a parsed user is ~5 KB on the 64-bit host (8 RFIDs, 4 rules): what is
    # validated goes now, before the users' file is read and written (the
    # caller's body is emptied: it holds nothing the caller needs)
    body.clear()
    old = None
    n = 0
    it = store.Store(flash, "users", lend).each(False, quoted(*[r["id"] for r in u["rfids"]]), True)
    try:
        for x in it:
            n += 1
            if isinstance(x, dict) and x.get("id") != uid:
                for r in x.get("rfids", ()):
                    for mine in u["rfids"]:
                        if r.get("id") == mine["id"]:
                            raise ConfigError("rfid in use")
    finally:
        it.close()
    x = None
    if new and n >= MAX_USERS:
        raise ConfigError("too many users")
    st = store.Store(flash, "users", lend)
    st.write(_replaced(st, u, new), True)
    return u


def _replaced(st, u, new):
    # the other users' lines copied as they are (store.each raw): parsed, each
    # would be ~9 KB beside u on the 64-bit host
    for x in st.each(False, quoted(u["id"]), True):
        yield u if isinstance(x, dict) and x.get("id") == u["id"] else x
    if new:
        yield u


def check_user(obj, base=None):
    """A validated user object (fields of API.md §6), starting from base."""
    from pbctl.config import ConfigError, check, defaults

    u = base if base else defaults(USER)
    check(USER, obj, u)
    if not u["id"]:
        raise ConfigError("bad value: id")
    rf = obj.get("rfids", u.get("rfids", []))
    if not isinstance(rf, list) or len(rf) > 8:
        raise ConfigError("bad value: rfids")
    out = []
    for r in rf:
        x = check(RFID, r, defaults(RFID), "rfids")
        if not x["id"].isdigit():
            raise ConfigError("bad value: rfids")
        out.append(x)
    u["rfids"] = out
    return u
