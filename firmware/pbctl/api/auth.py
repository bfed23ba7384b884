"""Admin authentication and PIN/RFID checks (API.md §0, §6, §7): salted hash,
constant-time compare, slow-down after repeated failures.

The stored secret is "salt$hexdigest" with digest = sha256 iterated over
salt + password. Nothing derived from the secret ever leaves this module.

Failures — wrong passwords and wrong PINs/RFIDs alike — are slowed down
(Guard): a client (address) with _MAX_FAILS failures waits _BLOCK_MS, twice
as long after each further one (up to 16×); all failures together count in a
window of _BLOCK_MS, and past _MAX_TOTAL of them every client waits for the
rest of the window — except the clients that logged in as admin before (the
last _MAX_GOOD of them): an attacker rotating through addresses cannot lock
the admin out, and no more than _MAX_TOTAL guesses are checked per window
from unknown addresses (BENCHMARKS.md, Reliability).
"""
import binascii
import hashlib
import os
import time

from micropython import const

_ROUNDS = const(64)
_MAX_FAILS = const(5)  # failures from one client before it is slowed down
_BLOCK_MS = const(10000)  # how long a client that failed too often waits (doubling, up to 16x)
_MAX_CLIENTS = const(8)  # failure records kept (bounded RAM)
_MAX_TOTAL = const(40)  # failures from all clients within _BLOCK_MS before unknown clients wait
_MAX_GOOD = const(4)  # clients remembered as having logged in as admin


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
    """Failure counting; `check` raises AuthError for 401/429 (module docstring).

    The state is a dict the caller keeps (app.fails), so this module can be
    unloaded between requests: client -> (failures, ticks_ms of the last
    one), at most _MAX_CLIENTS of them (a new one evicts the oldest); "*" ->
    (failures, ticks_ms the window began); "+" -> the clients that logged in.
    """

    def __init__(self, fails):
        self._fails = fails

    def blocked(self, client):
        now = time.ticks_ms()
        f = self._fails.get(client)
        if f is not None and f[0] >= _MAX_FAILS:
            if time.ticks_diff(now, f[1]) < _BLOCK_MS << min(f[0] - _MAX_FAILS, 4):
                return True
        if client in self._fails.get("+", ()):
            return False  # it logged in before: the window of all failures does not stop it
        f = self._fails.get("*")
        return f is not None and f[0] >= _MAX_TOTAL and time.ticks_diff(now, f[1]) < _BLOCK_MS

    def failed(self, client):
        fails = self._fails
        now = time.ticks_ms()
        f = fails.get("*")
        fails["*"] = (f[0] + 1, f[1]) if f and time.ticks_diff(now, f[1]) < _BLOCK_MS else (1, now)
        f = fails.get(client)
        if f is None and len(fails) - ("*" in fails) - ("+" in fails) >= _MAX_CLIENTS:
            # forget the oldest client record to stay bounded
            oldest = None
            for k in fails:
                if k not in "*+" and (oldest is None or time.ticks_diff(fails[oldest][1], fails[k][1]) > 0):
                    oldest = k
            del fails[oldest]
        fails[client] = ((f[0] if f else 0) + 1, now)

    def succeeded(self, client, admin=True):
        fails = self._fails
        if client in fails:
            del fails[client]
        if admin:
            good = [c for c in fails.get("+", ()) if c != client][-(_MAX_GOOD - 1):]
            good.append(client)
            fails["+"] = good

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
    """HTTPError 401 (httpd adds the realm's WWW-Authenticate) or 429 unless
    req carries the admin's credentials."""
    try:
        Guard(app.fails).check(app.site.admin, req.auth(), req.client)
    except AuthError as e:
        from pblib.httpd import HTTPError

        raise HTTPError(e.status, e.args[0])


def rfid_owner(app, rfid, client=None):
    """(user, rfid entry) owning PIN/RFID rfid, or (None, None). With the
    client's address, a wrong one counts as a failure like a wrong password,
    and a client slowed down gets HTTPError 429 before anything is compared."""
    g = Guard(app.fails) if client is not None else None
    if g and g.blocked(client):
        from pblib.httpd import HTTPError

        raise HTTPError(429, "too many failed logins")
    if rfid:
        from pbctl import store, userlist

        found = None, None
        # only lines holding the PIN/RFID as a string are parsed (a user is ~9
        # KB parsed on the 64-bit host; two of them did not fit beside a large
        # configuration); every one of those is compared in constant time. The
        # time then says whether the guess is a string in some user's line,
        # little more than the answer says, and guesses are counted (Guard)
        it = store.Store(app.board.FLASH, "users", app).each(False, userlist.quoted(rfid))
        for u in it:
            for r in u.get("rfids", ()):
                if same(r.get("id", ""), rfid) and found[0] is None:
                    found = u, r
        if found[0] is not None:
            return found  # (no reset of the client's failures: one's own PIN would clear guesses)
    if g:
        g.failed(client)
    return None, None
