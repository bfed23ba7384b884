"""HTTP fuzzing under CPython (issue 7): hypothesis drives lib/pblib/httpd.py's
pure parts (parse_head, unquote, parse_query, Request.auth/json, and unquote /
parse_query against CPython's urllib) and the /cnf dispatcher
(pbctl/api/cnf.py with every command module of its route table) with random
and malformed input. Every outcome must be a normal result or the documented
error — never an unexpected exception, never a 500, never a secret.

The dispatcher runs against the firmware's real parts wired as pbctl.start
does it — the configuration loaded from a temporary flash directory
(config.load), the control task (control.Control), the App, an httpd.Server
that is never started — and the control task's passes run beside each
request as in the firmware (Firmware.run: the request and a loop of
`await control.step()` side by side; step() is the control task's pass
without the bus polling), so every request the API hands the control task
is applied, decided on and written before its reply. Only the RS-485 bus is
a small in-process fake (FakeBus below, the same interface as rtu.Master),
and MicroPython's `time.ticks_*`, `asyncio.wait_for_ms` and `gc.mem_free` get
CPython stand-ins for the duration of the test.
HTTP_FUZZ_EXAMPLES scales the example counts (make fuzz sets it higher).
"""
import asyncio
import base64
import gc
import json
import os
import re
import sys
import time
import urllib.parse

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pblib import httpd
from pblib.httpd import HTTPError, Request, parse_head, parse_query, unquote

from pbctl.api import cnf

SCALE = int(os.environ.get("HTTP_FUZZ_EXAMPLES", "1"))
FAST = settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=2000 * SCALE, deadline=None, suppress_health_check=list(HealthCheck))

PWD = "1234abcd"

# ---------------------------------------------------------------------------
# strategies
TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~"
NASTY = ["%", "%%", "%0", "%zz", "%00", "%ff", "%c3%a9", "%e2%82", "%2", "+", "&", "=", "?", "#", "\x00", "\x7f",
         "\t", " ", "\r", "\n", "\u00e9", "\ud7ff", "\U0001f600", "..", "/", "\\", "%25", "%3D", "%26", "[", "]"]
text_bits = st.one_of(st.text(alphabet=TOKEN_CHARS, max_size=12), st.sampled_from(NASTY), st.text(max_size=6))
fuzz_text = st.lists(text_bits, max_size=8).map("".join)


def pct(s):
    """Percent-encode every byte of s (as UTF-8)."""
    return "".join("%%%02X" % b for b in s.encode())


# ---------------------------------------------------------------------------
# pure parts


@FAST
@given(st.one_of(st.text(max_size=300), st.lists(st.sampled_from(
    ["GET", "POST", "PUT", "G3T", "", " ", "/", "/cnf", "?cmd=x", "HTTP/1.1", "HTTP/1.0", "HTTP/2", "\r\n", "\n",
     "Host: x", ":", "A:", ":b", "X-\u00e9: 1", "Y: \x01", "Z: \t", "\x7f", "%", "\u00e9"]), max_size=30).map("".join)))
def test_parse_head_returns_or_raises_value_error(text):
    try:
        m, path, qs, h = parse_head(text)
    except ValueError:
        return
    assert m.isalpha() and path.startswith("/") and isinstance(qs, str)
    assert all(k == k.lower() and ":" not in k for k in h)


@FAST
@given(st.sampled_from(["GET", "POST", "DELETE"]), st.text(alphabet=TOKEN_CHARS + "/%=&+", max_size=40),
       st.text(alphabet=TOKEN_CHARS + "=&%+", max_size=40),
       st.dictionaries(st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=10),
                       st.text(alphabet=TOKEN_CHARS + " ,;=/\t\u00e9", max_size=30), max_size=6),
       st.sampled_from(["\r\n", "\n"]))
def test_parse_head_of_a_valid_head(method, path, qs, headers, eol):
    target = "/" + path + ("?" + qs if qs else "")
    text = method + " " + target + " HTTP/1.1" + eol + "".join(
        "%s: %s%s" % (k, v, eol) for k, v in headers.items()) + eol
    m, p, q, h = parse_head(text)
    assert (m, p, q) == (method, target.partition("?")[0], target.partition("?")[2])
    want = {}
    for k, v in headers.items():
        k = k.lower()
        want[k] = want[k] + ", " + v.strip() if k in want else v.strip()
    assert h == want


@FAST
@given(fuzz_text)
def test_unquote_returns_text_or_raises_percent(s):
    try:
        out = unquote(s)
    except ValueError as e:
        assert e.args == ("percent",)
        return
    assert isinstance(out, str)
    if "%" not in s:
        assert out == s


@FAST
@given(st.text(max_size=40))
def test_unquote_inverts_percent_encoding(s):
    assert unquote(pct(s)) == s
    assert unquote(pct(s).lower()) == s


@FAST
@given(fuzz_text)
def test_parse_query_returns_dict_or_raises_value_error(qs):
    try:
        d = parse_query(qs)
    except ValueError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in d.items())


@FAST
@given(st.lists(st.tuples(st.text(min_size=1, max_size=10), st.text(max_size=20)), max_size=6))
def test_parse_query_round_trip_first_occurrence_wins(pairs):
    qs = "&".join(pct(k) + "=" + pct(v) for k, v in pairs)
    want = {}
    for k, v in pairs:
        want.setdefault(k, v)
    assert parse_query(qs) == want


def req(headers=None, body=b"", query=None, method="GET", client="10.0.0.1"):
    return Request(method, "/cnf", query or {}, headers or {}, bytearray(body), client)


@FAST
@given(st.one_of(st.text(max_size=60), st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
                 st.text(max_size=30).map(lambda t: "Basic " + t)))
def test_auth_of_any_header_is_none_or_a_pair(value):
    r = req({"authorization": value}).auth()
    assert r is None or (isinstance(r, tuple) and len(r) == 2 and all(isinstance(x, str) for x in r))


@FAST
@given(st.text(alphabet=st.characters(blacklist_characters=":", blacklist_categories=("Cs",)), max_size=20),
       st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30), st.sampled_from(["Basic", "basic", "BASIC"]))
def test_auth_decodes_valid_basic(user, pwd, scheme):
    h = scheme + " " + base64.b64encode((user + ":" + pwd).encode()).decode()
    assert req({"authorization": h}).auth() == (user, pwd)


@FAST
@given(st.one_of(st.binary(max_size=80), fuzz_text.map(str.encode),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                              max_leaves=20).map(lambda o: json.dumps(o).encode())))
def test_json_body_is_a_value_or_400_bad_json(body):
    try:
        v = req(body=body).json()
    except HTTPError as e:
        assert (e.status, e.message) == (400, "bad json")
        return
    assert json.dumps(v) == json.dumps(json.loads(bytes(body)))  # (NaN != NaN)


def test_json_too_deep_is_413():
    with pytest.raises(HTTPError) as e:
        req(body=b"[" * 100000 + b"]" * 100000).json()
    assert (e.value.status, e.value.message) == (413, "request body too large")


# ---------------------------------------------------------------------------
# the /cnf dispatcher with a real App

class FakeBus:
    """rtu.Master's interface without a wire. Slave 3 never answers (timeout);
    addresses from 9000 up do not exist (exception 2); everything else reads as
    a fixed pattern (register r = r & 0x7fff) and accepts writes."""

    def __init__(self, uart=None, baud=9600, de=None, timeout_ms=100, retries=1):
        from pblib import rtu

        self.rtu = rtu
        self._stats = {}
        self.trace = None
        self.writes = []

    def stats(self, slave, fresh=False):
        return self._stats.setdefault(slave, self.rtu.Stats())

    def _check(self, slave, addr, n):
        if slave == 3:
            raise self.rtu.ModbusError(self.rtu.TIMEOUT)
        if addr + n > 9000:
            raise self.rtu.ModbusError(self.rtu.EXCEPTION, 2)

    async def read(self, slave, addr, count, prio=False, quiet=False):
        if not 1 <= count <= self.rtu.MAX_READ:
            raise ValueError("bad count")
        self._check(slave, addr, count)
        out = bytearray()
        for r in range(addr, addr + count):
            out += bytes((((r & 0x7FFF) >> 8), r & 0xFF))
        return memoryview(out)

    async def write1(self, slave, addr, value, prio=False, quiet=False):
        assert 0 <= value <= 0xFFFF
        self._check(slave, addr, 1)
        self.writes.append((slave, addr, value))

    async def writen(self, slave, addr, data, prio=False, quiet=False):
        if not 2 <= len(data) <= 2 * self.rtu.MAX_WRITE or len(data) & 1:
            raise ValueError("bad count")
        self._check(slave, addr, len(data) // 2)
        self.writes.append((slave, addr, bytes(data)))


class Board:
    BAUD = 9600
    BUS_TIMEOUT_MS = 100
    BUS_RETRIES = 1
    ADMIN_PWD = PWD

    def __init__(self, flash):
        self.FLASH = flash

    def uart(self):
        return None

    def de_pin(self):
        return None

    def serial(self):
        return "0000-0000-0001"


@pytest.fixture(scope="module")
def firmware_env(tmp_path_factory):
    """MicroPython's time.ticks_*, asyncio.wait_for_ms and gc.mem_* on CPython."""
    mp = pytest.MonkeyPatch()
    t0 = time.monotonic_ns()
    mp.setattr(time, "ticks_ms", lambda: ((time.monotonic_ns() - t0) // 1000000) & 0x3FFFFFFF, raising=False)
    mp.setattr(time, "ticks_us", lambda: ((time.monotonic_ns() - t0) // 1000) & 0x3FFFFFFF, raising=False)
    mp.setattr(time, "ticks_add", lambda a, b: (a + b) & 0x3FFFFFFF, raising=False)
    mp.setattr(time, "ticks_diff", lambda a, b: ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000, raising=False)
    mp.setattr(asyncio, "wait_for_ms", lambda aw, ms: asyncio.wait_for(aw, ms / 1000), raising=False)
    mp.setattr(gc, "mem_free", lambda: 50000, raising=False)
    mp.setattr(gc, "collect", lambda: 0)  # the dispatcher collects twice per request: slow on CPython
    mp.setattr(gc, "mem_alloc", lambda: 50000, raising=False)
    mp.setattr(sys, "print_exception", lambda e, f=None: None, raising=False)
    yield tmp_path_factory.mktemp("flash")
    mp.undo()


class Firmware:
    """The firmware's parts as pbctl.main() and pbctl.start.start() wire them,
    minus the HTTP server's socket and the bus polling: the on-demand modules
    found from the route table, the configuration from flash, the control
    task, the App and its dispatcher. One event loop for all requests (the
    control task's events and the App's lock belong to it)."""

    def __init__(self, flash):
        import pbctl.start  # noqa: F401 (its imports are the resident modules)
        from pblib import httpd as httpd_mod
        from pbctl import app as app_mod
        from pbctl import control

        # pbctl.main(): every on-demand module once; what they load is on demand too
        base = set(sys.modules)
        for name in cnf.on_demand():
            __import__(name)
        demand = tuple(k for k in sys.modules if k not in base)
        cnf.unload(demand)
        from pbctl import config
        from pbctl.api import auth

        # pbctl.start.start()
        server = httpd_mod.Server(None, max_conns=4, max_head=1536, prealloc=2, realm="cnf")
        board = Board(str(flash))
        site = config.load(board.FLASH, time.ticks_ms())
        site.admin = auth.make_secret(board.ADMIN_PWD)  # the board's preset first password
        self.bus = FakeBus()
        self.control = control.Control(site, self.bus, board.FLASH, max(1, len([d for d in site.devices if d.is_evse])))
        self.app = app_mod.App(board, site, self.control, server)
        self.app.demand = demand
        self.api = cnf.Api(self.app)
        server.handler = self.api.handle
        self.secret = site.admin
        cnf.unload(demand)
        self.loop = asyncio.new_event_loop()

    async def _beside(self, coro):
        # the request as a task, the control task's passes beside it until it is done
        t = asyncio.ensure_future(coro)
        for _ in range(1000):
            await asyncio.sleep(0)
            if t.done():
                return t.result()
            await self.control.step()
        t.cancel()
        raise AssertionError("the request did not finish beside 1000 control passes")

    def run(self, method, query, body=b"", auth=None, headers=None, client="10.0.0.1", path="/cnf"):
        """(status, reply text) of one request through the dispatcher, like httpd.Server
        turns a handler result into a reply; an unexpected exception propagates."""
        h = dict(headers or {})
        if auth is not None:
            h["authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
        r = Request(method, path, query, h, bytearray(body), client)
        try:
            status, obj = self.loop.run_until_complete(self._beside(self.api.handle(r)))
        except HTTPError as e:
            assert isinstance(e.message, str), e.message
            return e.status, json.dumps(e.message)
        if isinstance(obj, httpd.File):  # a web UI file: only ever one in www/ itself
            d, _, name = obj.path.rpartition("/")
            assert d.endswith("/www") and name and "\0" not in name, obj.path
            return status, json.dumps("file")
        if hasattr(obj, "send"):  # pieces: str, or bytes/memoryview (a stored line, valid until the next piece)
            text = "".join(p if isinstance(p, str) else bytes(p).decode() for p in obj)
        else:
            text = json.dumps(obj)
        json.loads(text)  # a well-formed document
        return status, text

    def admin_back(self):
        """The admin password PWD again, if a request changed it (change_admin_pwd
        with the right old_pwd and any valid new_pwd): installed by the control
        task like any configuration change (not saved: nothing here reboots)."""
        if self.app.site.admin != self.secret:
            from pbctl import config

            ch = config.Change(self.app.site)
            ch.admin = self.secret
            self.control.install(ch)
            self.loop.run_until_complete(self.control.step())
            cnf.unload(self.app.demand)
            assert self.app.site.admin == self.secret

    def close(self):
        self.loop.close()


def boot(flash):
    fw = Firmware(flash)
    # a meter and an EVSE of each HTTP kind, so their commands have a target
    for body in ({"devices": [{"dev_type": "evse_http", "dev_id": "E2"}]},
                 {"devices": [{"dev_type": "meter_http", "dev_id": "M3", "role": 3}]}):
        code, out = fw.run("POST", {"cmd": "set_params"}, json.dumps(body).encode(), auth=("admin", PWD))
        assert code == 200, out
    code, out = fw.run("POST", {"cmd": "set_user"}, json.dumps(
        {"id": "u1", "name": "Ann", "rfids": [{"id": "4711", "ac_ovch": True}]}).encode(), auth=("admin", PWD))
    assert code == 200, out
    site = fw.app.site
    from pbctl import userlist

    assert [d.dev_id for d in site.devices] == ["E1", "M1", "M2", "E2", "M3"] and userlist.user(str(flash), "u1")
    cnf.unload(fw.app.demand)  # (this check's own import of the on-demand userlist module)
    assert fw.control.slots() == 2  # the balancer grew for the second EVSE
    return fw


ERRORS = re.compile(
    r"^(bad json|bad count|bad value|bad register address|bad modbus register size|register is read-only"
    r"|value out of range|need read or write|not an HTTP input device|too many devices|too many users"
    r"|(bad value|missing parameter|admin required): [a-z_]+|authentication required|admin password not set"
    r"|wrong user or password|wrong password|too many failed logins|rfid may not stop charging"
    r"|rfid not allowed at this device|rfid required|unknown rfid|no vehicle waiting|not found|unknown cmd"
    r"|unknown device|unknown user|method not allowed|request body too large|flash write failed|busy|rfid in use"
    # updates, WiFi (INTEGRATIONS.md §6; README "Updates over HTTP", "On the ESP32")
    r"|bad bundle|truncated bundle|bundle for another board|bundle too large|update in progress"
    r"|hash mismatch: [^\s]+|no wifi on this board|wifi: [a-z0-9 ]+"
    r"|modbus (timeout|exception \d+: [a-z ]+|crc error|reply from wrong slave id|truncated reply|bad reply))$")
STATUS = {400, 401, 403, 404, 405, 409, 413, 429, 501, 502, 503, 507}

COMMANDS = sorted(set(e.split(":")[0] for e in cnf._ROUTES.split()))  # the route table's
POST_BODIES = {
    "set_params": st.fixed_dictionaries({}, optional={
        "max_total_current": st.one_of(st.integers(-10, 2000000), st.text(max_size=4), st.booleans(), st.none()),
        "cycle_time": st.one_of(st.integers(0, 70000), st.floats()),
        "lb_enabled": st.one_of(st.booleans(), st.integers(0, 2)),
        "title": st.one_of(st.text(max_size=80), st.integers()),
        "failsafe_current": st.integers(-5, 90000),
        "devices": st.one_of(st.none(), st.integers(), st.lists(st.one_of(
            st.fixed_dictionaries({}, optional={
                "dev_type": st.sampled_from(["evse_http", "meter_http", "evse_powerbrain", "meter_powerbrain", "x", 3]),
                "dev_id": st.sampled_from(["E1", "E2", "E9", "M1", "M3", "M77", "X1", "E", "", 5, None]),
                "address": st.sampled_from(["evse", "meter1", "rtu:5", "rtu:0", "rtu:999", "", "x", 1]),
                "min_charging_cur": st.integers(-1, 90000), "max_charging_cur": st.integers(-1, 90000),
                "attach": st.sampled_from(["", "M1", "E1", "M99", 0]), "role": st.integers(-1, 6),
                "users": st.lists(st.text(max_size=20), max_size=3),
                "charging_rules": st.lists(st.fixed_dictionaries({}, optional={
                    "mode": st.integers(-1, 6), "current": st.integers(-90000, 90000), "days": st.integers(-1, 200),
                    "time": st.integers(-1, 2000), "dur": st.integers(-1, 2000)}), max_size=3)}),
            st.integers(), st.text(max_size=5)), max_size=2))}),
    "set_user": st.fixed_dictionaries({}, optional={
        "id": st.sampled_from(["u1", "u2", "", "x" * 20, 7, None]), "name": st.one_of(st.text(max_size=40), st.integers()),
        "dev_ids": st.one_of(st.lists(st.sampled_from(["E1", "E2", "", "x" * 20]), max_size=3), st.text(max_size=3)),
        "rfids": st.one_of(st.integers(), st.lists(st.one_of(st.integers(), st.fixed_dictionaries({}, optional={
            "id": st.sampled_from(["4711", "12", "abc", "", "9" * 25, 5]), "ac_auth": st.booleans(),
            "ac_ovch": st.one_of(st.booleans(), st.integers())})), max_size=3))}),
    "set_ajax_meter": st.fixed_dictionaries({}, optional={
        "model": st.one_of(st.text(max_size=70), st.integers()),
        "import_wh": st.one_of(st.integers(-(1 << 42), 1 << 42), st.floats(), st.booleans(), st.text(max_size=3)),
        "voltage": st.one_of(st.lists(st.integers(-5, 500), max_size=4), st.integers(), st.text(max_size=6)),
        "current": st.one_of(st.lists(st.one_of(st.integers(-100000, 100000), st.floats()), max_size=4), st.none()),
        "power_w": st.one_of(st.integers(-(1 << 41), 1 << 41), st.floats()), "is_va": st.one_of(st.booleans(), st.integers())}),
    "set_ajax_evse": st.fixed_dictionaries({}, optional={
        "state": st.one_of(st.integers(-1, 7), st.text(max_size=2)), "max_charging_current": st.integers(-10, 100000),
        "current": st.lists(st.integers(-100000, 100000), max_size=4), "total_energy": st.integers(-5, 1 << 41),
        "rfid": st.sampled_from(["", "4711", "0000", 5, None]), "model": st.text(max_size=5)}),
}
any_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                        max_leaves=10)
QUERY_KEYS = ["dev_id", "device", "read", "write", "value", "values", "count", "flags", "mamps", "rfid", "val", "id",
              "enable", "acc", "allow_usage_stats", "old_pwd", "new_pwd", "state", "current", "voltage", "import_wh",
              "max_charging_current", "total_energy", "is_va", "power_w", "model"]
QUERY_VALUES = ["", "E1", "E2", "M1", "M3", "E9", "evse", "meter1", "meter2", "all", "8000", "8093", "8062d", "8058q",
                "8016s", "8040", "8999", "9000", "65535", "65536d", "-1", "0", "1", "true", "2", "125", "126",
                "[1,2]", "[7,230,230,230 ]", "[", "1,2,3", "231,232,233", "CcEeUu", "X", "4711", "0000", "80001",
                "1099511627777", "99999999999999999", " 5", "+5", "1e3", "0x10", "\u00e9", "a" * 70]


PLAUSIBLE = {
    "modbus": {"device": ["evse", "meter1", "meter2"], "read": ["all", "8000", "8062d", "8058q", "8016s", "8093", "8999"],
               "count": ["1", "2", "10", "125"], "write": ["8093", "8094", "8050q", "8000", "8044d"],
               "value": ["0", "1", "-1", "65535"], "values": ["[1,2]", "[7,230,230,230 ]"]},
    "set_ajax_meter": {"dev_id": ["M3"], "current": ["1,2,3", "[1,2,3]"], "voltage": ["231,232,233"],
                       "import_wh": ["5", "-5"], "is_va": ["1", "false"], "power_w": ["100"]},
    "set_ajax_evse": {"dev_id": ["E2"], "state": ["1", "2", "3"], "current": ["16000,0,0"],
                      "max_charging_current": ["16000"], "rfid": ["4711", "1"]},
    "enter_rfid": {"rfid": ["4711", "1"], "dev_id": ["E1", "E2"]},
    "override_device": {"dev_id": ["E1", "E2"], "flags": ["C", "c", "E", "U", "u", "Cc"], "mamps": ["0", "6000"],
                        "rfid": ["4711"]},
    "soft_meter": {"dev_id": ["E1", "E2"], "val": ["0", "1000"]},
    "del_device": {"dev_id": ["E9", "M1", "M2"]}, "reset_device": {"dev_id": ["E1", "E2", "M1"]},
    "accept_license": {"acc": ["1", "0"], "allow_usage_stats": ["1", "0"]},
    "change_admin_pwd": {"old_pwd": [PWD, "x"], "new_pwd": [PWD, "short"]},
    "set_diag_logging": {"enable": ["1", "0"]}, "get_user": {"id": ["u1", "u2"], "rfid": ["4711", "1"]},
}


@st.composite
def cnf_request(draw):
    cmd = draw(st.sampled_from(COMMANDS)) if draw(st.integers(0, 9)) else draw(fuzz_text)
    q = {"cmd": cmd} if draw(st.integers(0, 30)) else {}
    if draw(st.integers(0, 2)):  # mostly the command's own parameters, with plausible values
        for k, vals in PLAUSIBLE.get(cmd, {}).items():
            if draw(st.integers(0, 4)):
                q[k] = draw(st.sampled_from(vals))
        if "read" in q and "write" in q and draw(st.integers(0, 5)):
            del q[draw(st.sampled_from(["read", "write"]))]
    for k in draw(st.lists(st.sampled_from(QUERY_KEYS), max_size=4)):
        q[k] = draw(st.one_of(st.sampled_from(QUERY_VALUES), fuzz_text))
    method = draw(st.sampled_from(["GET", "POST", "POST"]))
    body = b""
    if method == "POST":
        kind = draw(st.integers(0, 5))
        if cmd in POST_BODIES and kind < 4:
            body = json.dumps(draw(POST_BODIES[cmd])).encode()
        elif kind == 4:
            body = json.dumps(draw(any_json)).encode()
        else:
            body = draw(st.binary(max_size=30))
    auth = draw(st.sampled_from([None, ("admin", PWD), ("admin", PWD), ("admin", PWD), ("admin", "wrong"), ("root", PWD),
                                 ("", "")]))
    # failed logins come from 7 other clients than good ones (the failure table
    # holds 8): mostly not 429 then, and never for the good ones
    client = "10.0.%d.%d" % (0 if auth in (None, ("admin", PWD)) else 1, draw(st.integers(1, 6)))
    if cmd == "change_admin_pwd":  # (a wrong old_pwd is a failed login too)
        client = "10.0.2.1"
    path = "/cnf" if draw(st.integers(0, 30)) else draw(st.sampled_from(["/", "/cnf/", "/CNF", "/cnf%20"]))
    return method, q, body, auth, client, path


@pytest.fixture(scope="module")
def booted(firmware_env):
    fw = boot(firmware_env)
    yield fw
    fw.close()


@SLOW
@given(cnf_request())
def test_dispatcher_answers_every_request_with_a_spec_reply(booted, r):
    app = booted.app
    method, q, body, auth, client, path = r
    if app.fails.get("*", (0,))[0] >= 35:
        app.fails.clear()  # not the 40 failures that slow every client down (auth.Guard)
    booted.admin_back()
    status, text = booted.run(method, q, body, auth, client=client, path=path)
    event("%s %d" % (q.get("cmd") if q.get("cmd") in COMMANDS else "?", status))
    if status != 200:
        assert status in STATUS, (status, text, r)
        assert ERRORS.match(json.loads(text)), (status, text, r)
    # nothing derived from the admin secret (salt, hash), and no password, ever leaves
    # (but get_config, the admin's backup: "secrets only as their hashes", INTEGRATIONS.md §6)
    salt, digest = app.site.admin.split("$")
    for secret in (PWD,) if (status == 200 and q.get("cmd") == "get_config") else (salt, digest, PWD):
        assert secret not in text, (r, text)
    assert app.demand and not [m for m in app.demand if m in sys.modules], "on-demand modules left loaded"
    # whatever was asked, the control task applied it: no request is left waiting
    assert not booted.control._req and booted.control.errors == 0


def test_dispatcher_every_command_errors_are_exact(booted):
    """A few fixed requests whose exact replies the spec names (the fuzz above
    only knows the set of possible replies)."""
    booted.app.fails.clear()
    booted.admin_back()
    admin = ("admin", PWD)
    cases = [
        ("GET", {"cmd": "nope"}, b"", None, (404, '"unknown cmd"')),
        ("GET", {}, b"", None, (400, '"missing parameter: cmd"')),
        ("GET", {"cmd": "modbus", "device": "evse", "read": "8000", "count": "126"}, b"", None, (400, '"bad count"')),
        ("GET", {"cmd": "modbus", "device": "meter2", "read": "8000"}, b"", None, (503, '"modbus timeout"')),
        ("GET", {"cmd": "modbus", "device": "evse", "read": "9000"}, b"", None,
         (502, '"modbus exception 2: illegal data address"')),
        ("POST", {"cmd": "set_params"}, b"{", admin, (400, '"bad json"')),
        ("POST", {"cmd": "set_params"}, b'{"max_total_current": "x"}', admin, (400, '"bad value: max_total_current"')),
        ("GET", {"cmd": "set_params"}, b"", None, (401, '"authentication required"')),
        ("GET", {"cmd": "set_ajax_evse", "dev_id": "E2", "current": "1,2"}, b"", admin, (400, '"bad value: current"')),
        ("GET", {"cmd": "set_ajax_evse", "dev_id": "E1"}, b"", admin, (400, '"not an HTTP input device"')),
    ]
    for method, q, body, auth, want in cases:
        assert booted.run(method, q, body, auth, client="10.0.0.99") == want, q


# ---------------------------------------------------------------------------
# regression tests for what the fuzzing found (see the report in BENCHMARKS.md)


def test_string_register_with_non_ascii_bytes_reads_as_question_marks():
    """Found by the dispatcher fuzz: a string register holding bytes >= 128 made
    cmd=modbus read=8016s (and read=all) fail with UnicodeError -> 500, and the
    same bytes in a device's name register failed every poll of that device
    (devices._text, see test_robustness.py for the control loop end to end)."""
    from pblib import registers

    from pbctl import devices

    raw = memoryview(bytes([0x41, 0xA0, 0x42, 0xFF, 0x43, 0x00, 0x44, 0x45]))
    assert registers.decode(raw, 0, "s", 4) == "A?B?C"
    assert devices._text(raw, 0, 8) == "A?B?C"
    assert devices._text(raw, 6, 2) == "DE"


def test_modbus_read_of_a_non_ascii_string_register(booted):
    # FakeBus: register r reads as r & 0x7fff, so 8016.. hold bytes 0x1f, 0x50, 0x1f, 0x51, ...
    # and 8000.. give 0x1f40 -> "\x1f@"; 8032..: 0x1fa0 -> "\x1f?" (0xa0 is not ASCII)
    st_, text = booted.run("GET", {"cmd": "modbus", "device": "evse", "read": "8016s"})
    assert st_ == 200 and json.loads(text) == "".join(chr(0x1F) + chr(r & 0xFF) for r in range(8016, 8032))
    st_, text = booted.run("GET", {"cmd": "modbus", "device": "evse", "read": "all"})
    assert st_ == 200 and "8016s" in json.loads(text)


def test_get_diag_log_is_streamed_in_small_pieces(booted):
    """Found by the firmware fuzz stream (tools/fuzz.py): get_diag_log returned
    the 4 KB ring as one list, dumped as one JSON text — a block the heap
    often did not have (MemoryError -> 500). Now a generator, a line a piece."""
    from pbctl import diag
    from pbctl.api import admin, cnf

    app = booted.app
    try:
        app.diag = diag.Ring()
        app.diag.start(True)
        for i in range(400):
            app.diag.log("line %d %s" % (i, "x" * 20))
        lines = list(app.diag.lines())
        assert sum(len(x) for x in lines) > 3000
        gen = asyncio.run(admin.get_diag_log(app, req()))
        pieces = list(gen)
        assert json.loads("".join(pieces)) == lines
        assert max(len(p) for p in pieces) < 64
        app.diag = None
        assert list(asyncio.run(admin.get_diag_log(app, req()))) == ["[]"]
    finally:
        cnf.unload(app.demand)


# ---- pure helpers against CPython's urllib (property tests) -----------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_unquote_matches_urllib(s):
    q = urllib.parse.quote(s, safe="")
    assert httpd.unquote(q) == s
    assert httpd.parse_query("x=" + urllib.parse.quote_plus(s)) == {"x": s}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(), st.text()), max_size=6))
def test_parse_query_matches_urlencode(pairs):
    qs = urllib.parse.urlencode(pairs)
    want = {}
    for k, v in pairs:
        want.setdefault(k, v)
    assert httpd.parse_query(qs) == want
