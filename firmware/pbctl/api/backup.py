"""Backup and restore of the whole configuration (INTEGRATIONS.md §6):
cmd=get_config, cmd=set_config (admin). Loaded on demand. README "Backup".

The backup is a JSON array with one item a line — the format of the store's
list files (store.py), so that it is written and read an item at a time,
never whole in RAM:

    [
    {"pbctl_config":1,"version":"0.2.0","params":{...},"admin":"salt$hash","license":{...}},
    {"device":{"dev_type":"evse_powerbrain","dev_id":"E1",...its configuration}},
    {"user":{"id":"...",...}},
    ]

Secrets: the admin password only as its salted hash (restored as it is: the
password at the time of the backup); the OCPP password and the MQTT URL's
password as "***" (never in a reply), which set_config resolves to this
controller's own (on another controller: none). The users' PINs/RFIDs and
fixed_rfid are in it (the admin reads them with get_users too; without them
a restore would lose every user's login).

set_config takes the file as POST bodies (the server holds one body of at
most 8 KB): `offset=<bytes before it>&more=1` for every piece but the last,
`offset=<...>` (or nothing, a file in one piece) for the last. The pieces go
to flash (upload.json); the last one starts the restore: the whole file is
validated (restore.restore: 400 naming the field, nothing changed), the users'
file and the configuration saved (each atomically), the configuration
installed by the control task. The upload is removed in every case.
"""
import json
import os

from micropython import const

from pblib.httpd import HTTPError

_MAX_UP = const(131072)  # bytes: the largest configuration is ~90 KB


def _dumps(v):
    return json.dumps(v, separators=(",", ":"))


def _masked(url):
    # mqtt_url with its password as *** (api/info.py masked)
    cred, at, hp = url.rpartition("@")
    i = cred.find(":", 7)
    return url if not at or i < 0 else cred[: i + 1] + "***@" + hp


async def get_config(app, req):  # admin, checked by cnf.py
    # (imported here, not in the generator: a generator's imports would be
    # its first piece's heap)
    from pbctl import userlist

    return _config(app, userlist)


def _config(app, userlist):
    site = app.site
    p = dict(site.params)
    p["ocpp_password"] = "***" if p["ocpp_password"] else ""
    p["mqtt_url"] = _masked(p["mqtt_url"])
    yield '[\n{"pbctl_config":1,"version":%s,"params":%s,"admin":%s,"license":%s}' % (
        _dumps(app.VERSION), _dumps(p), _dumps(site.admin), _dumps(site.license))
    p = None
    for d in site.devices:  # (a list replaced by a change, never changed in place)
        yield ',\n{"device":{"dev_type":%s,"dev_id":%s' % (_dumps(d.dev_type), _dumps(d.dev_id))
        c = d.cfg
        for k in c:  # a member at a time (a rule is the largest piece)
            v = d.soft_wh if k == "soft_meter" and d.is_evse else c[k]  # the newest estimate
            yield ',"%s":%s' % (k, _dumps(v))
        yield "}}"
    users = userlist.users(app.board.FLASH, app, True)
    try:
        for line in users:  # (its JSON text as stored, not parsed: get_users)
            yield ',\n{"user":'
            yield line
            yield "}"
    finally:  # (a reply cut short: httpd closes this, the reader's line buffer goes back)
        users.close()
    yield "\n]\n"


async def set_config(app, req):
    if req.method != "POST":
        raise HTTPError(405, "method not allowed")
    q = req.query
    off = q.get("offset", "0")
    if not off.isdigit() or len(off) > 7:
        raise HTTPError(400, "bad value: offset")
    off = int(off)
    path = app.board.FLASH + "/upload.json"
    try:
        size = os.stat(path)[6]
    except OSError:
        size = 0
    if off and off != size:  # a piece lost or sent twice
        raise HTTPError(400, "bad value: offset")
    if off + len(req.body) > _MAX_UP:
        raise HTTPError(413, "request body too large")
    from pbctl import store

    try:
        with open(path, "ab" if off else "wb") as f:
            f.write(req.body)
    except OSError as e:
        raise store.StoreError(repr(e))
    if q.get("more") == "1":
        return "ok"
    try:
        async with app.lock:
            return await _restore(app, store.Store(app.board.FLASH, "upload", app))
    finally:
        try:
            os.remove(path)
        except OSError:
            pass


async def _restore(app, up):
    from pbctl import config, restore, store
    from pbctl.api.admin import change

    with open(up.path, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - 2))
        if f.read(2) != b"]\n":  # cut short (or not as get_config wrote it)
            raise HTTPError(400, "bad json")
    items = up.each(True)
    try:
        ch, n = restore.restore(app.site, items, app.max_evses, True, app.config_size)
    except ValueError as e:  # a line that is no JSON
        if isinstance(e, config.ConfigError):
            raise
        raise HTTPError(400, "bad json")
    finally:
        items.close()  # (refused part-way: the app's line buffer goes back)
        items = None
    k = ch.evses()
    if k > app.control.slots():
        from pblib import balancer

        ch.lb = balancer.Balancer(k)
    # (the devices' lines, validated above, are not parsed again: a device is a block of ~0.5 KB)
    items = up.each(True, [b'{"user":'])
    try:
        store.Store(app.board.FLASH, "users").write(restore.restore_users(items), True)
    finally:
        items.close()
    await change(app, ch)
    return "ok"
