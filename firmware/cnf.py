"""The /cnf command dispatcher: query -> handler -> JSON reply (API.md).

RAM: on an ESP32 without PSRAM every module loaded from .mpy costs heap.
Only this dispatcher is resident; every command lives in a `cmd_*` module
that is imported for the request and dropped from sys.modules when no such
request is running any more, so its code is freed again (with anything it
imported that is not resident). Even get_dev_info, which the web UI polls:
loading 3 KB from flash per request is cheap next to keeping it.

A handler is `async def name(app, req)` returning a JSON-able object (status
200) or raising httpd.HTTPError. Admin commands check Basic auth first;
nothing changes before all input has been validated.
"""
import gc
import sys

from httpd import File, HTTPError

# "cmd module" pairs: the module holds `async def <cmd>(app, req)`. A module
# name starting with "!" marks an admin command: its credentials are checked
# before its module is loaded (a refused request loads nothing, and the
# check's own module is gone again before the command's arrive). One string
# costs less heap than a dict of 20 entries.
_ROUTES = (" get_dev_info cmd_info get_params cmd_info sys_info cmd_sys modbus cmd_modbus"
           " set_params !config del_device !cfgdel reset_device !cfgdel accept_license !cmd_admin"
           " change_admin_pwd cmd_admin set_diag_logging !cmd_admin get_diag_log !cmd_admin"
           " set_ajax_meter !cmd_ajax set_ajax_evse !cmd_ajax enter_rfid cmd_session override_device cmd_session"
           " soft_meter cmd_session get_users !cmd_users get_user cmd_users set_user cmd_users"
           " get_new_user_id !cmd_users ")


def route(cmd):
    """Module name of a command, or None."""
    i = -1 if " " in cmd or not cmd else _ROUTES.find(" " + cmd + " ")
    if i < 0 or _ROUTES[: i + 1].count(" ") % 2 == 0:
        return None  # not found, or found in the place of a module name
    i += len(cmd) + 2
    return _ROUTES[i : _ROUTES.index(" ", i)]


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
    import auth

    try:
        auth.check_admin(app, req)
    finally:
        del sys.modules["auth"]
    return True


class Api:
    def __init__(self, app):
        self.app = app
        self._busy = 0  # requests running in on-demand modules

    async def handle(self, req):
        p = req.path
        if p != "/cnf":
            # the web UI (README "Web UI"): /NAME is www/NAME.gz next to this module
            # (tools/mpybuild.py gzips firmware/www/ there), "/" index.html; only in
            # www/ itself (no "/"; "\0" would end the name early). httpd streams the
            # file, 404 if there is none. Types: html, css, js (no charset: the page
            # says UTF-8, its script and style sheet inherit that).
            p = p[1:] or "index.html"
            if "/" in p or "\0" in p:
                raise HTTPError(404, "not found")
            t = p.rpartition(".")[2]
            return 200, File(__file__.rpartition("/")[0] + "/www/" + p + ".gz",
                             "text/" + ("javascript" if t == "js" else t), True, 60, req.headers.get("if-none-match"))
        cmd = need(req.query, "cmd")
        app = self.app
        mod = route(cmd)
        if mod is None:
            raise HTTPError(404, "unknown cmd")
        if not self._busy:
            gc.collect()  # load the module into as few holes as possible
        self._busy += 1
        try:
            # (a modbus write is an admin command too; with read and write both given
            # the module answers 400 "need read or write")
            if mod[0] == "!" or (mod == "cmd_modbus" and "write" in req.query and "read" not in req.query):
                admin(app, req)
                mod = mod.lstrip("!")
            return 200, await getattr(__import__(mod), cmd)(app, req)
        except MemoryError:
            # the heap had no room for this command now: a clean refusal (every
            # command validates and saves before it changes anything)
            raise HTTPError(503, "out of memory")
        finally:
            self._busy -= 1
            if not self._busy:
                unload()
                gc.collect()  # give the module's blocks back before the next request

# Modules loaded only while needed (dependencies of the cmd_* modules included).
ON_DEMAND = ("cmd_info", "reasons", "args", "config", "cfgdel", "cfgsave", "cfgboot", "users", "schema", "auth", "store", "registers", "rules", "cmd_modbus",
             "cmd_admin", "cmd_ajax", "cmd_session", "cmd_users", "diag", "cmd_sys", "repl", "start")


def unload():
    """Forget the on-demand modules; their code is freed once nothing uses it."""
    for k in ON_DEMAND:
        if k in sys.modules:
            del sys.modules[k]
