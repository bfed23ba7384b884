"""del_device and reset_device (API.md §3): admin commands, loaded on demand
(apart from set_params in config.py: each request loads only what it runs)."""
import time

import devices
from cfgsave import save, snapshot
from cnf import need
from httpd import HTTPError


async def del_device(app, req):
    return delete_device(app, need(req.query, "dev_id"))


async def reset_device(app, req):
    return reset(app, need(req.query, "dev_id"))


def delete_device(app, dev_id):
    d = app.device(dev_id)
    if d is None:
        raise HTTPError(404, "unknown device")
    snap = snapshot(app)
    snap["devices"] = []
    for x in app.devices:
        if x is d:
            continue
        c = x.cfg
        if c.get("attach") == dev_id:
            c = dict(c)
            c["attach"] = ""
        snap["devices"].append([x.dev_type, x.dev_id, c])
    users = []
    for u in app.users:
        u = dict(u)
        u["dev_ids"] = [i for i in u["dev_ids"] if i != dev_id]
        users.append(u)
    snap["users"] = users
    save(app, snap)
    app.devices.remove(d)
    for x in app.devices:
        if x.cfg.get("attach") == dev_id:
            x.cfg["attach"] = ""
    app.users = users
    return "ok"


def reset(app, dev_id):
    d = app.device(dev_id)
    if d is None:
        raise HTTPError(404, "unknown device")
    app.devices[app.devices.index(d)] = devices.new_device(d.dev_type, d.dev_id, d.cfg, app.bus, time.ticks_ms())
    if app.control:
        app.control.kick()
    return "ok"
