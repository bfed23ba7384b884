"""Admin authentication (API.md §0, §7): salted hash, constant-time compare,
slow-down after repeated failures.

The stored secret is "salt$hexdigest" with digest = sha256 iterated over
salt + password. Nothing derived from the secret ever leaves this module.
"""
import binascii
import hashlib
import os
import time

from micropython import const

_ROUNDS = const(64)
_MAX_FAILS = const(5)  # failures from one client before it is slowed down
_BLOCK_MS = const(10000)  # how long a client that failed too often waits
_MAX_CLIENTS = const(8)  # failure records kept (bounded RAM)
_MAX_TOTAL = const(40)  # failures from all clients within _BLOCK_MS before everyone waits


class AuthError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _digest(salt, pwd):
    h = (salt + "$" + pwd).encode()
    for _ in range(_ROUNDS):
        h = hashlib.sha256(h).digest()
    return binascii.hexlify(h).decode()


def make_secret(pwd, salt=None):
    if salt is None:
        salt = binascii.hexlify(os.urandom(8)).decode()
    return salt + "$" + _digest(salt, pwd)


def same(a, b):
    """Constant-time comparison of two strings (time depends only on the lengths).

    Compared as bytes: indexing a str would create a string per character."""
    a = a.encode()
    b = b.encode()
    r = len(a) ^ len(b)
    if r:
        b = a  # keep doing the same work, but fail
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


def verify(secret, pwd):
    if not secret or "$" not in secret:
        return False
    salt, want = secret.split("$", 1)
    return same(want, _digest(salt, pwd))


class Guard:
    """Per-client failure counting; `check` raises AuthError for 401/429.

    The state (client -> (failures, ticks_ms of the last one)) is a dict the
    caller keeps, so this module can be unloaded between requests. It holds
    at most _MAX_CLIENTS clients (a new one evicts the oldest), so an attacker
    cycling through addresses would never be slowed down by them alone: all
    failures also count in one record, "*" -> (failures, ticks_ms the window
    began), and _MAX_TOTAL of them within _BLOCK_MS slow every client down
    until the window is over (the admin too, while an attack goes on).
    """

    def __init__(self, fails):
        self._fails = fails

    def blocked(self, client):
        now = time.ticks_ms()
        for k in ("*", client):
            f = self._fails.get(k)
            if f is None or f[0] < (_MAX_TOTAL if k == "*" else _MAX_FAILS):
                continue
            if time.ticks_diff(now, f[1]) < _BLOCK_MS:
                return True
            del self._fails[k]
        return False

    def failed(self, client):
        fails = self._fails
        now = time.ticks_ms()
        f = fails.get("*")
        fails["*"] = (f[0] + 1, f[1]) if f and time.ticks_diff(now, f[1]) < _BLOCK_MS else (1, now)
        f = fails.get(client)
        if f is None and len(fails) > _MAX_CLIENTS:
            # forget the oldest client record to stay bounded
            oldest = None
            for k in fails:
                if k != "*" and (oldest is None or time.ticks_diff(fails[oldest][1], fails[k][1]) > 0):
                    oldest = k
            del fails[oldest]
        fails[client] = ((f[0] if f else 0) + 1, now)

    def succeeded(self, client):
        if client in self._fails:
            del self._fails[client]

    def check(self, secret, user_pwd, client):
        """user_pwd: (user, password) from Basic auth or None."""
        if not secret:
            raise AuthError(401, "admin password not set")
        if self.blocked(client):
            raise AuthError(429, "too many failed logins")
        if user_pwd is None:
            raise AuthError(401, "authentication required")
        ok = verify(secret, user_pwd[1]) and user_pwd[0] == "admin"
        if not ok:
            self.failed(client)
            raise AuthError(401, "wrong user or password")
        self.succeeded(client)


def check_admin(app, req):
    try:
        Guard(app.fails).check(app.admin_secret, req.auth(), req.client)
    except AuthError as e:
        from app import AUTH_HDR
        from httpd import HTTPError

        raise HTTPError(e.status, e.args[0], AUTH_HDR if e.status == 401 else None)


def rfid_owner(app, rfid):
    """(user, rfid entry) owning PIN/RFID rfid, or (None, None)."""
    if rfid:
        for u in app.users:
            for r in u["rfids"]:
                if same(r["id"], rfid):
                    return u, r
    return None, None
