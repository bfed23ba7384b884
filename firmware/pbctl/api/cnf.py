"""The /cnf command dispatcher: query -> policy -> handler -> JSON reply (API.md),
and the web UI's files.

The route table below is the one place that says which commands exist, which
module of pbctl.api holds each (`async def <cmd>(app, req)`), and who may run
it. Policies:

    r  a read: open, admin while api_read_auth is set
    a  admin (HTTP Basic, the admin password), checked before the module loads
    u  the command decides: a user's PIN/RFID, or the admin (optional Basic auth)
    p  change_admin_pwd: its old password is the proof
    m  cmd=modbus: r for read, a for write

RAM: on an ESP32 without PSRAM every loaded module costs heap. The command
modules (and what they import) are loaded for a request and dropped from
sys.modules when no request runs any more (`unload`), so their code is freed
again; pbctl.main() finds them from this table at boot (on_demand()). A
refused request loads nothing.

A handler returns a JSON-able object (status 200) or a generator of JSON text
pieces (streamed), or raises httpd.HTTPError. Errors of the lower layers are
mapped here: config.ConfigError (its status), store.StoreError 507 "flash
write failed", control.Busy and MemoryError 503. Nothing changes before all
input has been validated.
"""
import gc
import sys

import asyncio

from pblib.httpd import File, HTTPError

_ROUTES = (" get_dev_info:info:r get_params:info:r sys_info:info:r modbus:modbus:m"
           " set_params:admin:a:config del_device:admin:a:config+userlist reset_device:admin:a"
           " accept_license:admin:a:config change_admin_pwd:admin:p:config+api.auth set_diag_logging:admin:a"
           " get_diag_log:admin:a set_ajax_meter:ajax:a set_ajax_evse:ajax:a enter_rfid:session:u:userlist+api.auth"
           " override_device:session:u:userlist+api.auth soft_meter:session:u:userlist+api.auth"
           " get_users:users:a:userlist get_user:users:u:userlist+api.auth set_user:users:u:config+userlist"
           " get_new_user_id:users:a:userlist scan_wifi:wifi:a set_wifi:wifi:a get_config:backup:a:userlist"
           " set_config:backup:a:config+userlist+restore update:update:a ")


def _entry(cmd):
    # [cmd, module, policy(, helpers)] of a command's entry, or None
    i = _ROUTES.find(" " + cmd + ":") if cmd and " " not in cmd and ":" not in cmd else -1
    if i < 0:
        return None
    return _ROUTES[i + 1 : _ROUTES.index(" ", i + 1)].split(":")


def route(cmd):
    """(module, policy) of a command, or None."""
    e = _entry(cmd)
    return None if e is None else (e[1], e[2])


def streamed(path, qs):
    """httpd's stream hook: the POST bodies a command reads itself, a piece at
    a time (cmd=update's bundle: never whole in RAM)."""
    if path != "/cnf":
        return False
    for p in qs.split("&"):
        if p == "cmd=update":
            return True
    return False


# on demand, but not loaded at boot (pbctl.main()): their names are interned
# when first used — an update, which a restart follows — not on every boot's heap
LATE = ("pbctl.api.update", "pbslot")


def on_demand():
    """The modules loaded only while needed: every command module and the helpers."""
    # (with the modules the commands load lazily, inside a function)
    out = ["pbctl.config", "pbctl.userlist", "pbctl.restore", "pbctl.params", "pbctl.cfgsize", "pbctl.api.auth", "pbctl.diag",
           "pbctl.repl", "pbslot"]
    for entry in _ROUTES.split():
        m = "pbctl.api." + entry.split(":")[1]
        if m not in out:
            out.append(m)
    return out


def unload(names):
    """Forget the on-demand modules; their code is freed once nothing uses it."""
    for k in names:
        if k in sys.modules:
            del sys.modules[k]
            p, _, n = k.rpartition(".")
            if p in sys.modules:  # a package keeps its submodules as attributes too
                try:
                    delattr(sys.modules[p], n)
                except AttributeError:
                    pass


def need(q, name):
    v = q.get(name)
    if v is None or v == "":
        raise HTTPError(400, "missing parameter: " + name)
    return v


def admin(app, req, optional=False):
    """Raise 401/429 unless req carries the admin's credentials (API.md §0);
    optional: False when it carries none. The check's module (auth.py) is
    dropped at once, so a command's module finds its heap free."""
    if optional and req.auth() is None:
        return False
    had = "pbctl.api.auth" in sys.modules  # (loaded for the command: its route's 4th field)
    from pbctl.api import auth

    try:
        auth.check_admin(app, req)
    finally:
        if not had:
            unload(("pbctl.api.auth",))
    return True


class Api:
    def __init__(self, app):
        self.app = app
        self._busy = 0  # requests running in on-demand modules

    async def handle(self, req):
        # (a coroutine's frame is one block: what a sync helper can do is done there)
        if req.path != "/cnf":
            return 200, self.static(req)
        # patient (cnf.roomy): only a request alone on the server; while
        # others run, waiting would hold its blocks (and keep the command
        # modules loaded) and starve them and the control task
        patient = self.app.server.live() <= 1
        r = await self._checked(req, patient)
        if not self._busy:
            gc.collect()  # load the module into as few holes as possible
        self._busy += 1
        try:
            # the command's module, the larger modules it loads on its way
            # first (the route table's 4th field): a module needs blocks of
            # its own (its globals' dict, its constants' table: up to ~750 B)
            fn = await roomy(_import, r, patient)
            return 200, await fn(self.app, req)
        except MemoryError:
            # the heap had no room for this command now: a clean refusal (every
            # command validates and saves before it changes anything)
            raise HTTPError(503, "out of memory")
        except Exception as e:
            raise _mapped(e)
        finally:
            self._busy -= 1
            if not self._busy:
                unload(self.app.demand)
                gc.collect()  # give the module's blocks back before the next request

    async def _checked(self, req, patient):
        # _allowed; the admin check loads api/auth.py (a block of ~270 B for
        # its names, which readers flooding the server may have taken for a
        # moment): tried again as a command's module is (roomy), before 503.
        # Nothing was checked or counted yet.
        try:
            return await roomy(self._allowed, req, patient)
        except MemoryError:
            raise HTTPError(503, "out of memory")

    def _allowed(self, req):
        # the command's route entry, once its policy let the request through
        r = _entry(need(req.query, "cmd"))
        if r is None:
            raise HTTPError(404, "unknown cmd")
        pol = r[2]
        if pol == "m":  # with read and write both given the module answers 400 "need read or write"
            pol = "a" if "write" in req.query and "read" not in req.query else "r"
        if pol == "a" or (pol == "r" and self.app.site.params["api_read_auth"]):
            admin(self.app, req)
        return r

    def static(self, req):
        # the web UI (README "Web UI"): /NAME is www/NAME.gz of the package
        # (tools/mpybuild.py gzips firmware/pbctl/www/ there), "/" index.html;
        # only in www/ itself (no "/"; "\0" would end the name early). httpd
        # streams the file, 404 if there is none. Types: html, css, js (no
        # charset: the page says UTF-8, its script and style sheet inherit that).
        # The vendor's own pages live under /ui/ (clients check the admin
        # password with /ui/en/sim.htm: docs/ha-cfos.md): any /ui/ page is our
        # web UI, for the admin only.
        p = req.path[1:] or "index.html"
        if p[:3] == "ui/":
            admin(self.app, req)
            p = "index.html"
        if "/" in p or "\0" in p:
            raise HTTPError(404, "not found")
        t = p.rpartition(".")[2]
        root = __file__.rpartition("/")[0].rpartition("/")[0]  # .../pbctl
        return File(root + "/www/" + p + ".gz", "text/" + ("javascript" if t == "js" else t), True, 60,
                    req.headers.get("if-none-match"))


async def roomy(fn, a, patient=True):
    """fn(a), tried again when the heap has no block for it (MemoryError):
    after 30, 60, 120, 240 and 480 ms (patient; else after 30 and 60 ms), a
    collection each, then raised. Only for work that changes nothing before
    it has its memory (loading a module,
    validating on copies). The heap's free space is there, in pieces: other
    connections end, the control cycle's and the last command's blocks come
    back, and a hole large enough opens (on the host at 96k, just after a
    configuration change, a command's module found one after up to ~0.8 s;
    the web UI and test clients ask again after a 503 as well)."""
    n = 5 if patient else 2
    for k in range(n + 1):
        try:
            return fn(a)
        except MemoryError:
            if k == n:
                raise
        await asyncio.sleep_ms(30 << k)
        gc.collect()


def _import(r):
    for h in r[3].split("+") if len(r) > 3 else ():
        __import__("pbctl." + h)
    return getattr(__import__("pbctl.api." + r[1], None, None, (r[0],)), r[0])


def _mapped(e):
    # the lower layers' errors as replies (their modules are loaded when they raise them)
    if isinstance(e, HTTPError):
        return e
    c = sys.modules.get("pbctl.config")
    if c and isinstance(e, c.ConfigError):
        return HTTPError(e.status, e.args[0])
    s = sys.modules.get("pbctl.store")
    if s and isinstance(e, s.StoreError):
        return HTTPError(507, "flash write failed")
    c = sys.modules.get("pbctl.control")
    if c and isinstance(e, c.Busy):
        return HTTPError(503, "busy")
    return e
