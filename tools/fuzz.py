"""A stream of random and malformed HTTP requests against the firmware running
under MicroPython with the simulated bus (issue 7).

    .venv/bin/python tools/fuzz.py [--count 10000] [--seed 1] [--heap 128k]

Every request goes on its own connection (raw socket; the client half-closes
after sending, so an incomplete request ends at once instead of after the
server's read timeout). Checked for each reply: a well-formed HTTP/1.1 status
line and head, `Content-Type: application/json`, a body that is exactly
Content-Length bytes (when given) and parses as JSON, never a 500, an error
body that is a JSON string, no secret of the admin account (the stored salt
and hash, the password) anywhere. A connection closed without any reply is
allowed only for garbage (counted). Around the stream: `cmd=sys_info` before
and after — the control loop's `cycles` counter must keep rising, the free
heap must stay flat — and the firmware's log must hold no traceback.

Requests (weights in KINDS): well-formed /cnf requests of every command with
plausible, random and hostile parameters (GET and POST, JSON and form bodies,
with and without the admin's credentials), and malformed ones: random bytes,
broken request lines, bad percent-encoding, non-UTF-8, control characters,
oversize heads and bodies, bad/short Content-Length, Transfer-Encoding,
other methods, bare LF line ends. Admin requests never change what the
heap check depends on: no new devices or users (bodies for those are
invalid), no cycle_time change.

run(sim, count, seed) is used by host_tests/e2e/test_robustness.py with a
small count; `make fuzz` runs this file with the full one.
"""
import argparse
import base64
import json
import os
import random
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CMDS = ["get_dev_info", "get_params", "sys_info", "modbus", "set_params", "del_device", "reset_device",
        "accept_license", "change_admin_pwd", "set_diag_logging", "get_diag_log", "set_ajax_meter",
        "set_ajax_evse", "enter_rfid", "override_device", "soft_meter", "get_users", "get_user", "set_user",
        "get_new_user_id"]
PLAUSIBLE = {
    "modbus": {"device": ["evse", "meter1", "meter2", "x"], "read": ["all", "8000", "8062d", "8058q", "8016s", "8093",
                                                                  "8999", "8002"],
               "count": ["1", "10", "125", "126", "0"], "write": ["8093", "8094", "8050q", "8000", "8044d", "9999"],
               "value": ["0", "1", "-1", "65535", "65536"], "values": ["[1,2]", "[7,230,230,230 ]", "[", "[1,x]"]},
    "set_ajax_meter": {"dev_id": ["M9", "M1", "E1"], "current": ["1,2,3", "[1,2,3]", "1,2"], "voltage": ["231,232,233"],
                       "import_wh": ["5", "-5", "x"], "is_va": ["1", "false", "2"], "power_w": ["100"]},
    "set_ajax_evse": {"dev_id": ["E9", "E1", "M1"], "state": ["1", "2", "3", "9"], "current": ["16000,0,0"],
                      "max_charging_current": ["16000"], "rfid": ["4711", "1"]},
    "enter_rfid": {"rfid": ["4711", "1", ""], "dev_id": ["E1", "E7"]},
    "override_device": {"dev_id": ["E1", "E7"], "flags": ["C", "c", "E", "e", "U", "u", "Cc", "X"],
                        "mamps": ["0", "6000", "-1"], "rfid": ["4711"]},
    "soft_meter": {"dev_id": ["E1", "M1"], "val": ["x", "-1"]},
    "del_device": {"dev_id": ["E9", "M9", ""]}, "reset_device": {"dev_id": ["E1", "M1", "M2", "E9"]},
    "accept_license": {"acc": ["1", "0", "2"], "allow_usage_stats": ["1", "0"]},
    "change_admin_pwd": {"old_pwd": ["wrong", ""], "new_pwd": ["x", "newpassword"]},
    "set_diag_logging": {"enable": ["1", "0", "x"]}, "get_user": {"id": ["u1", "u2", ""], "rfid": ["4711", "1"]},
}
NASTY = ["%", "%%", "%0", "%zz", "%00", "%ff", "%c3%a9", "%e2%82", "+", "&", "=", "?", "#", "%25", "%3D", "%26",
         "..", "/", "\\", "[", "]", "'", '"', "<", "{", "}", "%0d%0a", "%C0%80", "a" * 200]


def rnd_text(r, n=8):
    out = []
    for _ in range(r.randrange(n)):
        k = r.randrange(4)
        if k == 0:
            out.append(r.choice(NASTY))
        elif k == 1:
            out.append("".join(r.choice("abcxyz0129-_.~") for _ in range(r.randrange(1, 6))))
        elif k == 2:
            out.append("%%%02x" % r.randrange(256))
        else:
            out.append(str(r.randrange(-100000, 100000)))
    return "".join(out)


def rnd_json(r, depth=0):
    k = r.randrange(9 if depth < 3 else 6)
    if k == 0:
        return None
    if k == 1:
        return r.choice([True, False])
    if k == 2:
        return r.choice([0, 1, -1, 6000, 32000, 2 ** 31, -2 ** 63, 2 ** 70])
    if k == 3:
        return r.choice([0.5, 1e300, -0.0])
    if k in (4, 5):
        return rnd_text(r, 4)
    if k in (6, 7):
        return {r.choice(["max_total_current", "title", "devices", "id", "name", "rfids", "dev_id", "x", ""]):
                rnd_json(r, depth + 1) for _ in range(r.randrange(4))}
    return [rnd_json(r, depth + 1) for _ in range(r.randrange(4))]


def body_for(r, cmd):
    """A JSON body for a POST command that cannot grow the configuration."""
    if cmd == "set_params":
        b = {}
        for k, vals in (("max_total_current", [32000, 16000, -1, "x", None, 10 ** 7]), ("title", ["t", 5, "x" * 70]),
                        ("lb_enabled", [True, 1]), ("reserve_current", [0, -5]), ("failsafe_current", [-1, 6000, -2]),
                        ("rotation_time", [900, 10]), ("desc", ["d", None])):
            if r.randrange(3) == 0:
                b[k] = r.choice(vals)
        if r.randrange(3) == 0:  # devices: existing ones, or invalid new ones
            d = r.choice([{"dev_id": "E1", "max_charging_cur": r.choice([16000, 5, -1])},
                          {"dev_id": "M1", "role": r.choice([0, 9])},
                          {"dev_id": "E1", "dev_type": "meter_http"},
                          {"dev_type": "evse_http", "dev_id": "X1"},
                          {"dev_type": "nope"}, {"dev_id": "E1", "charging_rules": [{"mode": 9}]},
                          {"dev_id": "E1", "address": "rtu:999"}, [], 5])
            b["devices"] = r.choice([[d], d, [d, d]])
        return b
    if cmd == "set_user":
        return r.choice([{"id": "u1", "name": r.choice(["Ann", 5])}, {"id": "u1", "rfids": r.choice([5, [{"id": "x"}]])},
                         {"id": ""}, {"id": 7}, {"id": "u1", "charging_rules": [{"days": -1}]}, [], "u1"])
    if cmd == "set_ajax_evse":
        return {"state": r.choice([1, 2, 9, "2"]), "current": r.choice([[1, 2, 3], [1, 2], "x"])}
    if cmd == "set_ajax_meter":
        return {"current": r.choice([[1, 2, 3], [1.5, 2, 3]]), "import_wh": r.choice([5, 2 ** 50, True])}
    return rnd_json(r)


def auth_header(user, pwd):
    return "Authorization: Basic " + base64.b64encode(("%s:%s" % (user, pwd)).encode()).decode() + "\r\n"


def cnf_request(r, admin_pwd):
    """(raw request bytes, client address, garbage?) of a well-formed /cnf request."""
    cmd = r.choice(CMDS) if r.randrange(12) else rnd_text(r, 3)
    if cmd == "change_admin_pwd" and r.randrange(8):
        cmd = "get_params"  # (its wrong old passwords are failed logins: see below)
    q = {"cmd": cmd} if r.randrange(30) else {}
    for k, vals in PLAUSIBLE.get(cmd, {}).items():
        if r.randrange(3):
            q[k] = r.choice(vals) if r.randrange(5) else rnd_text(r, 3)
    if "read" in q and "write" in q and r.randrange(5):
        del q[r.choice(["read", "write"])]
    for _ in range(r.randrange(3)):
        q[r.choice(["dev_id", "id", "count", "rfid", "x", rnd_text(r, 2)])] = rnd_text(r, 4)
    qs = "&".join(k + "=" + v for k, v in q.items())
    if r.randrange(10) == 0:
        qs = qs.replace("_", "%5F").replace("e", "%65")  # percent-encoded names and values
    path = "/cnf" if r.randrange(25) else r.choice(["/", "/cnf/", "/CNF", "/cnf%20", "/%zz", "/x/../cnf"])
    method = r.choice(["GET", "POST"])
    heads = "Host: pbctl\r\n"
    # failed logins rarely: 40 of them within 10 s from all clients together
    # slow every client down for the rest of the 10 s (auth.Guard), the admin too
    who = r.randrange(6) if r.randrange(10) else 3
    if who == 3 and r.randrange(6):
        who = 4
    if who <= 2:
        heads += auth_header("admin", admin_pwd)
        client = "127.0.0.1"
    elif who == 3:
        heads += auth_header(r.choice(["admin", "root", ""]), r.choice(["wrong", admin_pwd + "x", ""]))
        client = "127.0.1.%d" % r.randrange(1, 7)  # failed logins: 6 other clients
    else:
        client = "127.0.0.1"
    if cmd == "change_admin_pwd":
        client = "127.0.2.1"  # its wrong old passwords count as failed logins too
    body = b""
    if method == "POST":
        k = r.randrange(5)
        if k < 3:
            body = json.dumps(body_for(r, cmd)).encode()
            heads += "Content-Type: application/json\r\n"
        elif k == 3:
            body = "&".join(k + "=" + v for k, v in list(PLAUSIBLE.get(cmd, {"a": ["1"]}).items())[:2]
                            for v in [r.choice(["1", rnd_text(r, 2)])]).encode()
            heads += "Content-Type: application/x-www-form-urlencoded\r\n"
        else:
            body = bytes(r.randrange(256) for _ in range(r.randrange(40)))
        heads += "Content-Length: %d\r\n" % len(body)
    if "cycle_time" in qs or b"cycle_time" in body:
        raise AssertionError("the fuzz must not change cycle_time")
    return (method + " " + path + "?" + qs + " HTTP/1.1\r\n" + heads + "\r\n").encode() + body, client, False


def malformed_request(r, admin_pwd):
    """(raw bytes, client, garbage?) of a malformed request."""
    ok = b"GET /cnf?cmd=get_params HTTP/1.1\r\nHost: x\r\n\r\n"
    k = r.randrange(16)
    if k == 0:
        return bytes(r.randrange(256) for _ in range(r.randrange(1, 300))), "127.0.0.1", True
    if k == 1:
        return r.choice([b"\r\n\r\n", b"GET\r\n\r\n", b"GET /cnf\r\n\r\n", b"GET /cnf HTTP/1.1", b" / HTTP/1.1\r\n\r\n",
                         b"GET  /cnf HTTP/1.1\r\n\r\n", b"GET cnf HTTP/1.1\r\n\r\n", b"G@T /cnf HTTP/1.1\r\n\r\n",
                         b"GET /cnf HTTP/9.9\r\n\r\n", b"GET /c\x00nf HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00\x01",
                         b"GET /cnf?cmd=get_params HTTP/1.1\r\nNoColon\r\n\r\n",
                         b"GET /cnf?cmd=get_params HTTP/1.1\r\n: empty\r\n\r\n",
                         b"GET /cnf?cmd=get_params HTTP/1.1\r\nX: a\x01b\r\n\r\n",
                         b"GET /cnf?cmd=get_params HTTP/1.1\r\nX\xff: 1\r\n\r\n",
                         b"GET /cnf?cmd=get_params HTTP/1.1\r\nX: \xc3\x28\r\n\r\n", b""]), "127.0.0.1", True
    if k == 2:  # a head larger than the server's buffer
        return ok[:-2] + b"X-Pad: " + b"a" * r.randrange(2000, 6000) + b"\r\n\r\n", "127.0.0.1", False
    if k == 3:  # many headers
        return ok[:-2] + b"".join(b"H%d: %d\r\n" % (i, i) for i in range(r.randrange(50, 400))) + b"\r\n", "127.0.0.1", False
    if k == 4:  # body larger than allowed
        n = r.randrange(8193, 30000)
        return (b"POST /cnf?cmd=set_params HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % n) + b"{" * min(n, 9000), \
            "127.0.0.1", False
    if k == 5:  # bad Content-Length
        v = r.choice([b"-1", b"x", b"1e3", b"99999999999", b"", b" 5", b"0x10", b"5, 5"])
        return b"POST /cnf?cmd=set_params HTTP/1.1\r\nContent-Length: " + v + b"\r\n\r\n{}", "127.0.0.1", False
    if k == 6:  # body shorter than its Content-Length (the client then half-closes)
        return (b"POST /cnf?cmd=set_params HTTP/1.1\r\n" + auth_header("admin", admin_pwd).encode()
                + b"Content-Length: 100\r\n\r\n{\"title\":"), "127.0.0.1", False
    if k == 7:
        return b"POST /cnf?cmd=set_params HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", \
            "127.0.0.1", False
    if k == 8:
        return r.choice([b"PUT", b"DELETE", b"OPTIONS", b"HEAD", b"get", b"CONNECT", b"TRACE"]) + ok[3:], "127.0.0.1", False
    if k == 9:  # bare LF line ends
        return ok.replace(b"\r\n", b"\n"), "127.0.0.1", False
    if k == 10:  # bad percent-encoding in path, query or form body
        q = r.choice(["cmd=get_params&x=%", "cmd=%zzx", "cmd%=1", "cmd=get_params&%c3%28=1", "cmd=get%5"])
        return ("GET /cnf?" + q + " HTTP/1.1\r\n\r\n").encode(), "127.0.0.1", False
    if k == 11:
        body = b"cmd=%zz&a=%"
        return (b"POST /cnf?cmd=get_params HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)) + body, "127.0.0.1", False
    if k == 12:  # deep JSON
        n = r.randrange(100, 4000)
        body = b"[" * n + b"]" * n
        return (b"POST /cnf?cmd=set_params HTTP/1.1\r\n" + auth_header("admin", admin_pwd).encode()
                + b"Content-Length: %d\r\n\r\n" % len(body)) + body, "127.0.0.1", False
    if k == 13:  # random bytes after a good request line
        return ok[:-2] + bytes(r.randrange(256) for _ in range(r.randrange(1, 200))) + b"\r\n\r\n", "127.0.0.1", True
    if k == 14:  # Expect: 100-continue
        body = b'{"title": 5}'
        return (b"POST /cnf?cmd=set_params HTTP/1.1\r\nExpect: 100-continue\r\n" + auth_header("admin", admin_pwd).encode()
                + b"Content-Length: %d\r\n\r\n" % len(body)) + body, "127.0.0.1", False
    # a truncated well-formed request
    raw, client, _ = cnf_request(r, admin_pwd)
    return raw[: r.randrange(1, len(raw))], client, True


STATUS_LINE = re.compile(rb"^HTTP/1\.1 (\d{3}) [A-Za-z ]+$")


def exchange(port, raw, client, timeout=10.0):
    """Send raw, half-close, read to EOF: the reply bytes (b"" = closed without a reply)."""
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.bind((client, 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed while we were still sending (oversize input)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            out += d
        return out
    finally:
        s.close()


def unchunk(body):
    """The body of a chunked reply; AssertionError unless it is whole (its last, empty chunk)."""
    out = b""
    while True:
        size, sep, body = body.partition(b"\r\n")
        assert sep, "chunk size line cut short"
        n = int(size, 16)
        if n == 0:
            assert body == b"\r\n", "after the last chunk: %r" % body[:50]
            return out
        assert body[n : n + 2] == b"\r\n", "chunk cut short"
        out += body[:n]
        body = body[n + 2 :]


def check_reply(data, secrets):
    """(status, JSON value) of a reply; AssertionError if it is not well-formed."""
    while data.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
        data = data[25:]
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "no end of head: %r" % data[:200]
    lines = head.split(b"\r\n")
    m = STATUS_LINE.match(lines[0])
    assert m, "bad status line: %r" % lines[0]
    status = int(m.group(1))
    h = {}
    for line in lines[1:]:
        k, c, v = line.partition(b":")
        assert c and k and k == k.strip(), "bad header line %r" % line
        h[k.decode().lower()] = v.strip().decode()
    assert h.get("connection") == "close", h
    if "content-length" in h:
        assert len(body) == int(h["content-length"]), (h, len(body))
    elif h.get("transfer-encoding") == "chunked":  # a streamed reply: whole, with its last chunk
        body = unchunk(body)
    if h.get("content-type") != "application/json":
        # a static file of the web UI (any path but /cnf): 200 with its length, or 304
        assert status in (200, 304) and ("content-length" in h or status == 304), (status, h)
        return status, None
    val = json.loads(body)
    assert status != 500, (status, val)
    if status >= 400:
        assert isinstance(val, str) and val, (status, val)
    if status == 401:
        assert h.get("www-authenticate") == 'Basic realm="cnf"', h
    for s in secrets:
        assert s.encode() not in data, "secret in reply: %r" % data[:300]
    return status, val


def sys_info(port):
    raw = exchange(port, b"GET /cnf?cmd=sys_info HTTP/1.1\r\n\r\n", "127.0.0.1")
    status, v = check_reply(raw, ())
    assert status == 200, v
    return v


def heap_sample(port, n=7):
    """sys_info with the highest mem_free of n in a row: what a single reading
    shows swings by ~2 KB with what the last requests left behind."""
    best = None
    for _ in range(n):
        v = sys_info(port)
        if best is None or v["mem_free"] > best["mem_free"]:
            best = v
        time.sleep(0.05)
    return best


def secrets_of(sim):
    """The admin password and what is derived from it (salt, hash) from the simulated flash."""
    out = [sim.admin_pwd]
    try:
        with open(os.path.join(sim.flash, "pbctl.json")) as f:
            secret = json.load(f)[0].get("admin") or ""  # (a list file: its head first)
        out += [x for x in secret.split("$") if x]
    except OSError:
        pass  # nothing saved yet: the secret lives in RAM only, made from the password
    return out


def warm_up(sim):
    """One request of each kind whose state the firmware keeps (diag ring, a user),
    so that the heap measured before the stream already holds them."""
    from simrun import ADMIN

    port = sim.http_port
    for raw in [b"GET /cnf?cmd=set_diag_logging&enable=1 HTTP/1.1\r\n" + auth_header(*ADMIN).encode() + b"\r\n",
                b"GET /cnf?cmd=set_diag_logging&enable=0 HTTP/1.1\r\n" + auth_header(*ADMIN).encode() + b"\r\n",
                b"GET /cnf?cmd=accept_license&acc=1 HTTP/1.1\r\n" + auth_header(*ADMIN).encode() + b"\r\n"]:
        reply = check_reply(exchange(port, raw, "127.0.0.1"), ())
        assert reply[0] == 200, "warm-up %r: %r" % (raw[:50], reply)
    body = json.dumps({"id": "u1", "name": "Ann", "rfids": [{"id": "4711", "ac_ovch": True}]}).encode()
    raw = (b"POST /cnf?cmd=set_user HTTP/1.1\r\n" + auth_header(*ADMIN).encode()
           + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    reply = check_reply(exchange(port, raw, "127.0.0.1"), ())
    assert reply[0] == 200, "warm-up set_user: %r" % (reply,)
    # the failed-login table as the stream keeps it (7 clients: never full,
    # so the admin's own client, which never fails, is not slowed down)
    for i in range(6):
        raw = b"GET /cnf?cmd=get_users HTTP/1.1\r\n" + auth_header("admin", "warm-up").encode() + b"\r\n"
        assert check_reply(exchange(port, raw, "127.0.1.%d" % (i + 1)), ())[0] in (401, 429)
    raw = b"GET /cnf?cmd=change_admin_pwd&old_pwd=warm-up&new_pwd=warm-up-x HTTP/1.1\r\n\r\n"
    assert check_reply(exchange(port, raw, "127.0.2.1"), ())[0] in (403, 429)
    # a wrong PIN counts like a wrong password (issue 13), also from the admin's
    # own client: the stream sends PINs from there too (its 8th record)
    raw = b"GET /cnf?cmd=enter_rfid&rfid=1&dev_id=E1 HTTP/1.1\r\n\r\n"
    assert check_reply(exchange(port, raw, "127.0.0.1"), ())[0] in (403, 429)
    # and the control loop through its first cycles (models read, sessions set up)
    end = time.time() + 15
    while sys_info(port)["cycles"] < 3 and time.time() < end:
        time.sleep(0.2)


def run(sim, count, seed=1, malformed_share=0.4, log=None):
    """Send count requests; returns the figures (dict). AssertionError on any bad reply."""
    r = random.Random(seed)
    port = sim.http_port
    warm_up(sim)
    secrets = secrets_of(sim)
    assert len(secrets) == 3, "the admin secret is on flash after warm_up"
    before = heap_sample(port)
    t0 = time.time()
    statuses = {}
    errors = {}  # 5xx replies by text
    oom_small = 0
    trace = []  # mem_free (best of 3) every 2 500 requests
    closed = malformed = 0
    lowest = before["mem_free"]
    for i in range(count):
        bad = r.random() < malformed_share
        raw, client, garbage = (malformed_request if bad else cnf_request)(r, sim.admin_pwd)
        malformed += bad
        data = exchange(port, raw, client)
        if not data:
            assert garbage, "connection closed without a reply to %r" % raw[:300]
            closed += 1
            continue
        try:
            status, val = check_reply(data, secrets)
        except AssertionError as e:
            raise AssertionError("request %d %r -> %s" % (i, raw[:300], e))
        statuses[status] = statuses.get(status, 0) + 1
        if val == "out of memory" and len(raw.partition(b"\r\n\r\n")[2]) < 1024:
            oom_small += 1  # a request that needs no large block (body < 1 KB) found no heap
        if status >= 500:
            k = "%d %s" % (status, val)
            errors[k] = errors.get(k, 0) + 1
            if os.environ.get("FUZZ_DEBUG"):
                print("fuzz: %s <- %r" % (k, raw[:150]))
        if i % 500 == 499:
            lowest = min(lowest, sys_info(port)["mem_free"])
        if i % 2500 == 2499:
            trace.append(heap_sample(port, 3)["mem_free"])
            if log:
                log("fuzz: %d/%d requests, %d s" % (i + 1, count, time.time() - t0))
    time.sleep(0.3)
    # what the stream's last connections hold goes when they end (a half-sent
    # request: at the read timeout, 3 s): what stays after that would be a leak
    after = heap_sample(port)
    end = time.time() + 4
    while after["mem_free"] < before["mem_free"] - 1024 and time.time() < end:
        time.sleep(0.5)
        after = heap_sample(port, 3)
    return {"requests": count, "malformed": malformed, "wellformed": count - malformed, "closed": closed, "oom_small": oom_small,
            "statuses": dict(sorted(statuses.items())), "errors_5xx": errors, "seconds": round(time.time() - t0, 1),
            "mem_free_before": before["mem_free"], "mem_free_after": after["mem_free"], "mem_free_lowest": lowest, "mem_free_trace": trace,
            "cycles_before": before["cycles"], "cycles_after": after["cycles"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--heap", default=os.environ.get("PBCTL_HEAP", "128k"))
    a = ap.parse_args()
    os.environ["PBCTL_HEAP"] = a.heap
    import simrun

    simrun.HEAP = a.heap
    sim = simrun.Sim()
    sim.start()
    try:
        fig = run(sim, a.count, a.seed, log=print)
    except BaseException:
        time.sleep(0.5)
        print("firmware log (tail):\n" + "".join(sim.fw_lines[-40:]))
        raise
    finally:
        sim.stop()
    log = "".join(sim.fw_lines)
    crashes = log.replace("KeyboardInterrupt", "").count("Traceback") + log.count("MemoryError")
    fig["heap"] = a.heap
    fig["tracebacks"] = crashes
    print(json.dumps(fig, indent=1))
    ok = (crashes == 0 and fig["cycles_after"] > fig["cycles_before"] and fig["oom_small"] == 0
          and fig["mem_free_after"] >= fig["mem_free_before"] - 1024)
    print("fuzz: %s" % ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
