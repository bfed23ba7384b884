"""The controller's state: configuration, devices, users, bus — resident
(what only commands need lives with them: cnf.admin, auth.rfid_owner,
schema.like).

Everything that changes the configuration (and loading it at boot) lives in
config.py, which is loaded on demand: see cnf.py on RAM.
"""
import time

import rtu

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

    def user(self, uid):
        for u in self.users:
            if u["id"] == uid:
                return u
        return None
