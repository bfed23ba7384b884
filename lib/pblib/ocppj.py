# ocppj: the OCPP-J RPC layer (OCPP 1.6J, "JSON over WebSocket" §4) over a pblib.ws Client.
#
# Messages: CALL [2, id, action, payload], CALLRESULT [3, id, payload],
# CALLERROR [4, id, code, description, details].
# Rpc(ws, handler, timeout_ms=30000, max_queue=4):
# - run(): the reader task, one per connection: takes messages until the connection ends, then fails an
#   outstanding call with OSError and returns (the charge point reconnects and runs it again);
# - call(action, payload): our CALL; at most one is outstanding (the protocol's rule), up to max_queue
#   more wait in turn, one more gets OSError at once. Returns the CALLRESULT's payload; raises OcppError
#   (the central system answered CALLERROR, or a CALLRESULT that is not an object), asyncio.TimeoutError
#   (no answer within timeout_ms) or OSError (not connected, the connection ended, queue full);
# - incoming CALLs go to `async def handler(action, payload) -> payload (a dict)`, awaited in the reader
#   task and bounded by timeout_ms: it must not await call() (the answer could not be read: it would
#   time out) but hand such work to another task. It raises OcppError(code, description) for a
#   CALLERROR; any other exception becomes InternalError. No handler: NotImplemented.
# - malformed frames never end the reader: one that may be a CALL and whose id can be recovered (even
#   from text that is not JSON) is answered with a CALLERROR (table below), the rest are dropped; both
#   counted (bad, ignored) with last_error.
#     not JSON                                      FormationViolation
#     an array with a message type other than 2..4  PropertyConstraintViolation
#     a CALL of the wrong length or element types   FormationViolation
#     no heap to decode it                          InternalError
#   A CALLRESULT or CALLERROR for no outstanding call (late, unknown id) is dropped (ignored).
# check(payload, spec): payload validation from a compact spec string (see there).
#
# Message ids: decimal counter from a random start (unique over reconnects and reboots), 36 chars at most.
# RAM: few functions, the codes in one string, specs as strings parsed when used.
import asyncio
import json

# the OCPP 1.6J error codes (§4.2.3), "FormationViolation" and "OccurenceConstraintViolation" spelt as there
_CODES = ("NotImplemented NotSupported InternalError ProtocolError SecurityError FormationViolation "
          "PropertyConstraintViolation OccurenceConstraintViolation TypeConstraintViolation GenericError")


class OcppError(Exception):
    # a CALLERROR: raised by a handler (code one of _CODES, else GenericError goes out) or by call()
    def __init__(self, code, description="", details=None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.details = details
        self.id = None  # (decode: the id recovered from a malformed message, else None;
        self.t = 0  # its message type where known)


def decode(data):
    # One OCPP-J message (bytes-like or str) -> the list, its shape checked: [2, id, action(str),
    # payload(dict)], [3, id, payload(dict)] or [4, id, code(str), description(str), details(dict)], id a
    # str of 1..36 chars. OcppError if malformed, with .id (the recovered id or None) and .t (the type
    # if it is known).
    try:
        m = json.loads(data)
    except Exception as x:  # ValueError; MemoryError (no heap for it) or RecursionError (CPython: too deep)
        e = OcppError("InternalError", "out of memory") if isinstance(x, MemoryError) else OcppError(
            "FormationViolation", "not JSON")
        # '[2, "id", ...' broken later on: find the id
        b = bytes(data[:64]) if not isinstance(data, str) else data[:64].encode()
        i = 0
        for c in b'[2,"':
            while i < len(b) and b[i] in b" \t\r\n":
                i += 1
            if i >= len(b) or b[i] != c:
                i = -1
                break
            i += 1
        j = b.find(b'"', i) if i > 0 else -1
        if 1 < j - i < 37 and 92 not in b[i:j]:  # 92: "\", an escape: we could not write it back right
            e.id = str(b[i:j], "utf-8")
            e.t = 2
        raise e
    code = "FormationViolation"
    why = "not an array"
    i = None
    t = 0
    if type(m) is list and m:
        t = m[0]
        i = m[1] if len(m) > 1 else None
        if type(i) is not str or not 0 < len(i) < 37:
            i = None
        if type(t) is not int or not 2 <= t <= 4:
            code = "PropertyConstraintViolation"
            why = "unknown message type"
            t = 0
        elif i is None:
            why = "bad message id"
        elif (len(m) == 4 and type(m[2]) is str and type(m[3]) is dict if t == 2 else
              len(m) == 3 and type(m[2]) is dict if t == 3 else
              len(m) == 5 and type(m[2]) is str and type(m[3]) is str and type(m[4]) is dict):
            return m
        else:
            why = "bad call" if t == 2 else "bad result" if t == 3 else "bad error"
    e = OcppError(code, why)
    e.id = i
    e.t = t
    raise e


def check(obj, spec):
    # obj (a dict) against spec, space-separated fields "name=T" ("name?=T": optional), T one of
    #   s / s20   string / of at most 20 characters      i / i0: / i1:5   integer / at least 0 / 1..5
    #   d  number (integer or decimal)   b  boolean   o  object   a / a5  array / of at most 5 items
    #   eA/B/C  one of these strings     t  dateTime "YYYY-MM-DDThh:mm:ss..."
    # Returns obj; raises OcppError: a missing field OccurenceConstraintViolation, a wrong JSON type or a
    # string too long TypeConstraintViolation, an integer out of range or a value not in the enum
    # PropertyConstraintViolation, an array too long OccurenceConstraintViolation. Other fields are let be.
    if type(obj) is not dict:
        raise OcppError("TypeConstraintViolation", "payload: not an object")
    for f in spec.split():
        k, _, t = f.partition("=")
        opt = k[-1] == "?"
        if opt:
            k = k[:-1]
        if k not in obj:
            if opt:
                continue
            raise OcppError("OccurenceConstraintViolation", k + ": missing")
        v = obj[k]
        c = t[0]
        a = t[1:]
        y = type(v)
        code = "TypeConstraintViolation"
        if c == "s" or c == "e" or c == "t":
            ok = y is str
            if ok and c == "s" and a:
                ok = len(v) <= int(a)
            elif ok and c == "e":
                code = "PropertyConstraintViolation"
                ok = v in a.split("/")
            elif ok and c == "t":
                b = v.encode()
                ok = len(b) >= 19 and len(b) <= 40
                for i in range(19 if ok else 0):
                    x = b[i]
                    ok = ok and (x == b"--T::"[(i - 4) // 3] if i in (4, 7, 10, 13, 16) else 48 <= x <= 57)
        elif c == "i":
            ok = y is int
            if ok and a:
                code = "PropertyConstraintViolation"
                lo, _, hi = a.partition(":")
                ok = (not lo or v >= int(lo)) and (not hi or v <= int(hi))
        elif c == "d":
            ok = y is int or y is float
        elif c == "b":
            ok = y is bool
        elif c == "o":
            ok = y is dict
        else:  # "a"
            ok = y is list
            if ok and a and len(v) > int(a):
                code = "OccurenceConstraintViolation"
                ok = False
        if not ok:
            raise OcppError(code, k + ": invalid")
    return obj


class Rpc:
    def __init__(self, ws, handler=None, timeout_ms=30000, max_queue=4):
        import os

        self.ws = ws
        self.handler = handler
        self.timeout_ms = timeout_ms
        self.max_queue = max_queue
        self._n = int.from_bytes(os.urandom(3), "big")  # message ids from here on
        self._id = None  # the id of our outstanding CALL
        self._res = None  # its answer: a payload, or the exception call() raises
        self._got = asyncio.Event()
        self._busy = False
        self._q = []  # Events of the calls waiting for their turn, in order
        # counters: our CALLs sent, CALLRESULTs and CALLERRORs for them, timeouts; CALLs received,
        # CALLERRORs we answered; malformed messages; messages dropped without answer
        self.calls = self.results = self.errors = self.timeouts = 0
        self.calls_in = self.errors_out = self.bad = self.ignored = 0
        self.last_error = ""

    async def call(self, action, payload):
        if self._busy:
            if len(self._q) >= self.max_queue:
                raise OSError("ocpp: queue full")
            ev = asyncio.Event()
            self._q.append(ev)
            try:
                await ev.wait()  # bounded: each call before us ends within timeout_ms
            except BaseException:
                if ev in self._q:
                    self._q.remove(ev)
                elif ev.is_set():  # our turn came, but we are gone: pass it on
                    self._next()
                raise
        self._busy = True
        try:
            self._n = (self._n + 1) & 0x3FFFFFFF
            i = str(self._n)
            self._res = None
            self._got.clear()
            self._id = i
            await self.ws.send(json.dumps([2, i, action, payload], separators=(",", ":")))
            self.calls += 1
            try:
                await asyncio.wait_for_ms(self._got.wait(), self.timeout_ms)
            except asyncio.TimeoutError:
                self.timeouts += 1
                self.last_error = "ocpp: %s: no answer" % action
                raise
            r = self._res
            if isinstance(r, Exception):
                raise r
            return r
        finally:
            self._id = None
            self._next()

    def _next(self):
        if self._q:
            self._q.pop(0).set()  # the turn goes to the first waiting call (_busy stays)
        else:
            self._busy = False

    async def run(self):
        ws = self.ws
        while True:
            m = await ws.recv()
            if m is None:
                break
            try:
                await self._on(m)
            except Exception as e:  # no heap for it, the reply could not be sent: the loop goes on
                self.last_error = "ocpp: %s" % type(e).__name__
            m = None
        if self._id is not None:
            self._res = OSError("ocpp: connection closed")
            self._got.set()

    async def _on(self, m):
        try:
            m = decode(m)
        except OcppError as e:
            self.bad += 1
            self.last_error = "ocpp: " + e.description
            if e.id is not None and e.t != 3 and e.t != 4:  # it may be a CALL: answer
                m = [4, e.id, e.code, e.description, {}]
            elif e.id is not None and e.id == self._id:  # a broken answer to our call
                self._res = e
                self._got.set()
                return
            else:
                self.ignored += 1
                return
        else:
            t = m[0]
            if t != 2:
                if m[1] != self._id:
                    self.ignored += 1  # late (after its timeout) or never asked
                    self.last_error = "ocpp: answer to no call"
                elif t == 3:
                    self.results += 1
                    self._res = m[2]
                    self._got.set()
                else:
                    self.errors += 1
                    self.last_error = "ocpp: %s %s" % (m[2][:40], m[3][:80])
                    self._res = OcppError(m[2], m[3], m[4])
                    self._got.set()
                return
            self.calls_in += 1
            try:
                if self.handler is None:
                    raise OcppError("NotImplemented", "no handler")
                r = await asyncio.wait_for_ms(self.handler(m[2], m[3]), self.timeout_ms)
                m = json.dumps([3, m[1], {} if r is None else r], separators=(",", ":"))
            except OcppError as e:
                m = [4, m[1], e.code if e.code in _CODES.split() else "GenericError", e.description, e.details or {}]
            except Exception as e:  # a bug in the handler, a timeout, a reply json cannot write
                self.last_error = "ocpp: %s in %s" % (type(e).__name__, m[2])
                m = [4, m[1], "InternalError", "", {}]
        if not isinstance(m, str):
            self.errors_out += 1
            m = json.dumps(m, separators=(",", ":"))
        await self.ws.send(m)
