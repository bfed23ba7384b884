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
    caller keeps, so this module can be unloaded between requests.
    """

    def __init__(self, fails):
        self._fails = fails

    def blocked(self, client):
        f = self._fails.get(client)
        if f is None or f[0] < _MAX_FAILS:
            return False
        if time.ticks_diff(time.ticks_ms(), f[1]) < _BLOCK_MS:
            return True
        del self._fails[client]
        return False

    def failed(self, client):
        f = self._fails.get(client)
        if f is None and len(self._fails) >= _MAX_CLIENTS:
            # forget the oldest record to stay bounded
            oldest = None
            for k in self._fails:
                if oldest is None or time.ticks_diff(self._fails[oldest][1], self._fails[k][1]) > 0:
                    oldest = k
            del self._fails[oldest]
        self._fails[client] = ((f[0] if f else 0) + 1, time.ticks_ms())

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
