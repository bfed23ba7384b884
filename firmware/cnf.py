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

from httpd import HTTPError

# "cmd module" pairs: the module holds `async def <cmd>(app, req)`. A module
# name starting with "!" marks an admin command: its credentials are checked
# before its module is loaded (a refused request loads nothing, and the
# check's own module is gone again before the command's arrive). One string
# costs less heap than a dict of 20 entries.
_ROUTES = (" get_dev_info cmd_info get_params cmd_info sys_info cmd_sys modbus cmd_modbus"
           " set_params !config del_device !config reset_device !config accept_license !cmd_admin"
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


def bad(name):
    return HTTPError(400, "bad value: " + name)


def flag(q, name):
    v = q.get(name)
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise bad(name)


def parse_int(text, name, lo, hi):
    t = text.strip() if isinstance(text, str) else ""
    s = t[1:] if t[:1] in "+-" else t
    if not s.isdigit() or len(s) > 15:
        raise bad(name)
    v = int(t)
    if not lo <= v <= hi:
        raise bad(name)
    return v


def int_param(q, name, lo, hi):
    return parse_int(need(q, name), name, lo, hi)


class Api:
    def __init__(self, app):
        self.app = app
        self._busy = 0  # requests running in on-demand modules

    async def handle(self, req):
        if req.path != "/cnf":
            raise HTTPError(404, "not found")
        cmd = need(req.query, "cmd")
        app = self.app
        mod = route(cmd)
        if mod is None:
            raise HTTPError(404, "unknown cmd")
        # (a modbus write is an admin command too; with read and write both given
        # the module answers 400 "need read or write")
        if mod[0] == "!" or (mod == "cmd_modbus" and "write" in req.query and "read" not in req.query):
            app.check_admin(req)
            mod = mod.lstrip("!")
        if not self._busy:
            gc.collect()  # load the module into as few holes as possible
        self._busy += 1
        try:
            return 200, await getattr(__import__(mod), cmd)(app, req)
        finally:
            self._busy -= 1
            if not self._busy:
                unload()
                gc.collect()  # give the module's blocks back before the next request

# Modules loaded only while needed (dependencies of the cmd_* modules included).
ON_DEMAND = ("cmd_info", "config", "cfgsave", "cfgboot", "users", "schema", "auth", "store", "registers", "rules", "cmd_modbus",
             "cmd_admin", "cmd_ajax", "cmd_session", "cmd_users", "diag", "cmd_sys", "repl")


def unload():
    """Forget the on-demand modules; their code is freed once nothing uses it."""
    for k in ON_DEMAND:
        if k in sys.modules:
            del sys.modules[k]
