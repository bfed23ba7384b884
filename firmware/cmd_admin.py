"""Administration commands (API.md §7). Loaded on demand.

set_params, del_device and reset_device are in config.py itself (one module
less on the heap while the largest command runs)."""
from args import flag
from httpd import HTTPError


# accept_license, set_diag_logging, get_diag_log: admin, checked by cnf.py.
async def accept_license(app, req):
    q = req.query
    lic = {"accepted": flag(q, "acc"),
           "allow_usage_stats": flag(q, "allow_usage_stats") if "allow_usage_stats" in q else False}
    import cfgsave

    snap = cfgsave.snapshot(app)
    snap["license"] = lic
    cfgsave.save(app, snap)
    app.license = lic
    return "ok"


async def change_admin_pwd(app, req):
    """No Basic auth: the old password is the proof (empty while none is set)."""
    import auth

    q = req.query
    guard = auth.Guard(app.fails)
    if guard.blocked(req.client):
        raise HTTPError(429, "too many failed logins")
    if app.admin_secret and not auth.verify(app.admin_secret, q.get("old_pwd", "")):
        guard.failed(req.client)
        raise HTTPError(403, "wrong password")
    new = q.get("new_pwd", "")
    if not 8 <= len(new) <= 64:
        raise HTTPError(400, "bad value: new_pwd")
    secret = auth.make_secret(new)
    import cfgsave

    snap = cfgsave.snapshot(app)
    snap["admin"] = secret
    cfgsave.save(app, snap)
    app.admin_secret = secret
    guard.succeeded(req.client)
    return "ok"


async def set_diag_logging(app, req):
    """The ring (4 KB) is allocated on first use and kept for get_diag_log."""
    on = flag(req.query, "enable")
    if on and app.diag is None:
        import diag

        app.diag = diag.Ring()
    if app.diag:
        app.diag.start(on)
        app.bus.trace = app.diag.frame if on else None
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
