"""Administration (API.md §3, §7): set_params, del_device, reset_device,
accept_license, change_admin_pwd, diagnostic logging. Loaded on demand.

A configuration change holds app.lock from validation to installation: the
configuration module validates it on copies and the store saves it, then the
control task installs it (control.Control.install) before the reply says "ok".
"""
from pblib.httpd import HTTPError

from pbctl.api.args import flag
from pbctl.api.cnf import need, roomy


async def change(app, ch):
    """Save a validated config.Change and have the control task install it."""
    from pbctl import config

    config.save(app.board.FLASH, ch)
    await app.control.settle(app.control.install(ch))
    app.links_changed()  # integrations switched on, off or to other settings
    return "ok"


async def set_params(app, req):
    """POST a JSON object (API.md §3)."""
    if req.method != "POST":
        raise HTTPError(405, "method not allowed")
    body = req.json()
    async with app.lock:
        # validation works on copies: nothing changed yet (cnf.roomy)
        ch = await roomy(_validated, (app, body), app.server.live() <= 1)
        return await change(app, ch)


def _validated(a):
    app, body = a
    from pbctl import config

    ch = config.change_params(app.site, body, app.max_evses, app.config_size)
    n = ch.evses()
    if n > app.control.slots():
        # room in the balancer first: if there is none, nothing changes
        from pblib import balancer

        ch.lb = balancer.Balancer(n)
    return ch


async def del_device(app, req):
    from pbctl import config, userlist

    dev_id = need(req.query, "dev_id")
    async with app.lock:
        await change(app, config.delete_device(app.site, dev_id))
        userlist.drop_device_from_users(app.board.FLASH, dev_id)
    return "ok"


async def reset_device(app, req):
    dev_id = need(req.query, "dev_id")
    async with app.lock:  # (it replaces a device: no configuration change may race it)
        if app.site.device(dev_id) is None:
            raise HTTPError(404, "unknown device")
        await app.control.settle(app.control.reset(dev_id))
    return "ok"


async def accept_license(app, req):
    q = req.query
    lic = {"accepted": flag(q, "acc"),
           "allow_usage_stats": flag(q, "allow_usage_stats") if "allow_usage_stats" in q else False}
    from pbctl import config

    async with app.lock:
        ch = config.Change(app.site)
        ch.license = lic
        return await change(app, ch)


async def change_admin_pwd(app, req):
    """No Basic auth: the old password is the proof (empty while none is set)."""
    from pbctl.api import auth

    q = req.query
    guard = auth.Guard(app.fails)
    if guard.blocked(req.client):
        raise HTTPError(429, "too many failed logins")
    old = q.get("old_pwd", "")
    # factory-new: only an empty old_pwd sets the first password (API.md §7)
    if not auth.verify(app.site.admin, old) if app.site.admin else old:
        guard.failed(req.client)
        raise HTTPError(403, "wrong password")
    new = q.get("new_pwd", "")
    if not 8 <= len(new) <= 64:
        raise HTTPError(400, "bad value: new_pwd")
    from pbctl import config

    async with app.lock:
        ch = config.Change(app.site)
        ch.admin = auth.make_secret(new)
        await change(app, ch)
    guard.succeeded(req.client)
    return "ok"


async def set_diag_logging(app, req):
    """The ring (4 KB) is allocated on first use and kept for get_diag_log."""
    on = flag(req.query, "enable")
    if on and app.diag is None:
        from pbctl import diag

        app.diag = diag.Ring()
    if app.diag:
        app.diag.start(on)
        await app.control.settle(app.control.trace(app.diag.frame if on else None))
    return "ok"


async def get_diag_log(app, req):
    return _json_lines(app.diag.lines() if app.diag else ())


def _json_lines(lines):
    # streamed a line at a time: the 4 KB ring as one JSON text needs one
    # block that large, which a busy heap often does not have (MemoryError)
    import json

    sep = "["
    for s in lines:
        yield sep + json.dumps(s)
        sep = ","
    yield "[]" if sep == "[" else "]"
