"""The controller's state: configuration, devices, users, bus — resident.

Everything that changes the configuration (and loading it at boot) lives in
config.py, which is loaded on demand: see cnf.py on RAM.
"""
import sys
import time

import rtu
from httpd import HTTPError

VERSION = "0.1.0"
AUTH_HDR = [("WWW-Authenticate", 'Basic realm="cnf"')]


class App:
    VERSION = VERSION
    MAX_EVSES = 8  # balancer slots; each costs heap (boards may say otherwise)

    def __init__(self, board):
        import cfgboot

        self.board = board
        self.MAX_EVSES = getattr(board, "MAX_EVSES", App.MAX_EVSES)
        self.boot_ms = time.ticks_ms()
        self.bus = rtu.Master(board.uart(), board.BAUD, board.de_pin(), timeout_ms=board.BUS_TIMEOUT_MS,
                              retries=board.BUS_RETRIES)
        self.fails = {}  # auth.Guard state: client -> (failures, ticks_ms)
        self.diag = None  # diag.Ring while diagnostic logging is used
        self.control = None  # control.Control, set by pbctl
        self.server = None  # httpd.Server, set by pbctl
        self.devices = []  # filled by cfgboot.boot
        self.users = []
        self.admin_secret = ""
        cfgboot.boot(self)

    def device(self, dev_id):
        for d in self.devices:
            if d.dev_id == dev_id:
                return d
        return None

    def evse(self, dev_id):
        d = self.device(dev_id)
        if d is None or not d.is_evse:
            raise HTTPError(404, "unknown device")
        return d

    def like(self, dev_type):
        """The configuration of a device of the same kind, if any: new
        configurations reuse its key strings (schema.defaults)."""
        for d in self.devices:
            if d.is_evse == (dev_type[:5] == "evse_"):
                return d.cfg
        return None

    def user(self, uid):
        for u in self.users:
            if u["id"] == uid:
                return u
        return None

    def rfid_owner(self, rfid):
        """(user, rfid entry) owning PIN/RFID rfid, or (None, None)."""
        if rfid:
            import auth

            for u in self.users:
                for r in u["rfids"]:
                    if auth.same(r["id"], rfid):
                        return u, r
        return None, None

    def check_admin(self, req):
        import auth

        try:
            auth.Guard(self.fails).check(self.admin_secret, req.auth(), req.client)
        except auth.AuthError as e:
            raise HTTPError(e.status, e.args[0], AUTH_HDR if e.status == 401 else None)
        finally:
            # checked: let its 2.4 KB go before the command loads what it needs
            del sys.modules["auth"]

    def is_admin(self, req):
        """True with valid admin credentials, False when none were given."""
        if req.auth() is None:
            return False
        self.check_admin(req)
        return True
