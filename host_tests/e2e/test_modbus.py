"""cmd=modbus end to end (API.md §1): every example of the original document,
sent over HTTP to the firmware under MicroPython, answered byte-identically."""
import socket
import threading
import time

import pytest
from conftest import slow_polling

from simrun import ADMIN

DOC_METER2_ALL = (b'{"8000d":-821755904,"8002":1,"8003":257,"8004":16777216,"8006":256,"8007":0,'
                  b'"8008s":"fcf5-c46d-310c","8016s":"cFos Power Brain","8040":41,"8041":1,"8042d":1000,'
                  b'"8044":1,"8045":230,"8046":230,"8047":230,"8050q":0,"8054d":0,"8056":0,"8057":0,'
                  b'"8058q":0,"8062d":-1,"8064d":0,"8066d":0,"8068d":0,"8070":0,"8071":0,"8120d":0}')


@pytest.fixture(scope="module", autouse=True)
def quiet_bus(sim):
    slow_polling(sim)


def raw(sim, query, auth=None):
    st, _, body, hdrs = sim.request(query, auth)
    return st, body


@pytest.mark.parametrize("query,reply", [
    ("cmd=modbus&device=meter1&read=8002", b"1"),
    ("cmd=modbus&device=meter1&read=8062d", b"-1"),
    ("cmd=modbus&device=meter1&read=8016s", b'"cFos Power Brain"'),
    ("cmd=modbus&device=meter1&read=8002&count=10", b"[1,257,256,0,256,0,26211,26165,11619,13366]"),
    ("cmd=modbus&device=meter2&read=all", DOC_METER2_ALL),
])
def test_document_reads(sim, query, reply):
    assert raw(sim, query) == (200, reply)


def test_document_writes(sim):
    assert raw(sim, "cmd=modbus&device=evse&write=8044&value=7", ADMIN) == (200, b'"ok"')
    assert raw(sim, "cmd=modbus&device=evse&write=8050q&value=1", ADMIN) == (200, b'"ok"')
    assert raw(sim, "cmd=modbus&device=evse&read=8050q") == (200, b"1")
    assert raw(sim, "cmd=modbus&device=evse&write=8044d&value=1", ADMIN) == (400, b'"bad modbus register size"')
    assert raw(sim, "cmd=modbus&device=evse&write=8044&values=[7,230,230,230%20]", ADMIN) == (200, b'"ok"')
    assert raw(sim, "cmd=modbus&device=evse&read=8044&count=4") == (200, b"[7,230,230,230]")
    assert raw(sim, "cmd=modbus&device=evse&write=8044&values=[1,230,230,230]", ADMIN) == (200, b'"ok"')


def test_writes_on_the_wire(sim):
    """Exact function codes: 16-bit -> 06, wider or several -> 16."""
    since = sim.control(cmd="requests", since=0)["next"]
    raw(sim, "cmd=modbus&device=evse&write=8045&value=231", ADMIN)
    raw(sim, "cmd=modbus&device=evse&write=8058q&value=-2", ADMIN)
    raw(sim, "cmd=modbus&device=evse&write=8045&values=[230,230]", ADMIN)
    items = [i for i in sim.control(cmd="requests", since=since)["items"] if i["fn"] in (6, 16)]
    assert [(i["slave"], i["fn"], i["addr"], i["values"]) for i in items] == [
        (1, 6, 8045, [231]),
        (1, 16, 8058, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]),
        (1, 16, 8045, [230, 230]),
    ]
    assert raw(sim, "cmd=modbus&device=evse&read=8058q") == (200, b"-2")


def test_evse_read_all_keys_in_order(sim):
    st, body = raw(sim, "cmd=modbus&device=evse&read=all")
    assert st == 200
    keys = [k.split(":")[0].strip('"') for k in body.decode()[1:-1].split(",")
            if k.split(":")[0].startswith('"') and k.split(":")[0][1:2].isdigit()]
    assert keys == ("8000d 8002 8003 8004 8006 8007 8008s 8016s 8040 8041 8042d 8044 8045 8046 8047 8050q "
                    "8054d 8056 8057 8058q 8062d 8064d 8066d 8068d 8070 8071 8120d 8086 8087 8092 8093 8094 "
                    "8096s 8112 8113").split()


@pytest.mark.parametrize("query,status,reply", [
    ("cmd=modbus&device=evse&read=9000", 502, b'"modbus exception 2: illegal data address"'),
    ("cmd=modbus&device=evse&read=8002&count=126", 400, b'"bad count"'),
    ("cmd=modbus&device=evse&read=8002&count=0", 400, b'"bad count"'),
    ("cmd=modbus&device=evse&read=8002&count=x", 400, b'"bad value"'),
    ("cmd=modbus&device=evse&read=80x2", 400, b'"bad register address"'),
    ("cmd=modbus&device=evse&read=9000s", 400, b'"bad modbus register size"'),
    ("cmd=modbus&device=meter3&read=8002", 404, b'"unknown device"'),
    ("cmd=modbus&read=8002", 400, b'"missing parameter: device"'),
    ("cmd=modbus&device=evse", 400, b'"need read or write"'),
    ("cmd=modbus&device=evse&read=1&write=2", 400, b'"need read or write"'),
    ("cmd=nope", 404, b'"unknown cmd"'),
    ("x=1", 400, b'"missing parameter: cmd"'),
])
def test_read_errors(sim, query, status, reply):
    assert raw(sim, query) == (status, reply)


@pytest.mark.parametrize("query,status,reply", [
    ("cmd=modbus&device=evse&write=8062d&value=1", 400, b'"register is read-only"'),
    ("cmd=modbus&device=evse&write=8044&value=65536", 400, b'"value out of range"'),
    ("cmd=modbus&device=evse&write=8044&value=-32769", 400, b'"value out of range"'),
    ("cmd=modbus&device=evse&write=8044&value=abc", 400, b'"bad value"'),
    ("cmd=modbus&device=evse&write=8044&values=[1,,2]", 400, b'"bad value"'),
    ("cmd=modbus&device=evse&write=8044", 400, b'"missing parameter: value"'),
    ("cmd=modbus&device=evse&write=9000&value=1", 502, b'"modbus exception 2: illegal data address"'),
])
def test_write_errors(sim, query, status, reply):
    assert raw(sim, query, ADMIN) == (status, reply)


def test_write_needs_admin(sim):
    st, _, body, hdrs = sim.request("cmd=modbus&device=evse&write=8044&value=7")
    assert (st, body) == (401, b'"authentication required"')
    assert hdrs["WWW-Authenticate"] == 'Basic realm="cnf"'
    assert raw(sim, "cmd=modbus&device=evse&write=8044&value=7", ("admin", "wrong-pwd")) == (
        401, b'"wrong user or password"')
    assert raw(sim, "cmd=modbus&device=evse&write=8044&value=7", ("root", "1234abcd")) == (
        401, b'"wrong user or password"')


def dev(sim, dev_id):
    _, info = sim.get("cmd=get_dev_info")
    return [d for d in info["devices"] if d["dev_id"] == dev_id][0]


@pytest.mark.parametrize("kind,status,text", [
    ("timeout", 503, "modbus timeout"),
    ("crc", 502, "modbus crc error"),
    ("wrong_slave", 502, "modbus reply from wrong slave id"),
    ("truncated", 502, "modbus truncated reply"),
])
def test_bus_faults_counted_then_recovered(sim, kind, status, text):
    before = dev(sim, "M1")["com_errors"]
    sim.control(cmd="fault", slave=2, kind=kind, count=2)  # the request and its one retry
    assert raw(sim, "cmd=modbus&device=meter1&read=8002") == (status, ('"%s"' % text).encode())
    m1 = dev(sim, "M1")
    assert m1["com_err"] is True
    assert m1["com_errors"] == before + 2
    assert m1["last_error"] == text
    assert m1["com_err_secs"] == 0
    assert raw(sim, "cmd=modbus&device=meter1&read=8002") == (200, b"1")
    assert dev(sim, "M1")["com_err"] is False


def test_single_fault_is_retried(sim):
    before = dev(sim, "M1")["com_errors"]
    sim.control(cmd="fault", slave=2, kind="crc", count=1)
    assert raw(sim, "cmd=modbus&device=meter1&read=8002") == (200, b"1")
    m1 = dev(sim, "M1")
    assert (m1["com_errors"], m1["com_err"]) == (before + 1, False)


def test_exception_reply_not_retried(sim):
    before = dev(sim, "M1")["com_errors"]
    sim.control(cmd="fault", slave=2, kind="exception", count=1, code=4)
    assert raw(sim, "cmd=modbus&device=meter1&read=8002") == (502, b'"modbus exception 4: server device failure"')
    # the device answered the user's request: its answer, not a communication error (issue 13 #13)
    m1 = dev(sim, "M1")
    assert (m1["com_errors"], m1["com_err"]) == (before, False)
    assert raw(sim, "cmd=modbus&device=meter1&read=8002") == (200, b"1")
    # an unmapped register likewise (the device's exception 2)
    assert raw(sim, "cmd=modbus&device=meter1&read=9000")[0] == 502
    m1 = dev(sim, "M1")
    assert (m1["com_errors"], m1["com_err"]) == (before, False)


def test_hung_device_does_not_stall_http(sim):
    sim.control(cmd="offline", slave=2, on=True)
    try:
        done = {}

        def slow():
            done["slow"] = raw(sim, "cmd=modbus&device=meter1&read=8002")
            done["slow_t"] = time.monotonic()

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.03)
        st, info = sim.get("cmd=get_dev_info")
        fast_t = time.monotonic()
        assert st == 200 and info["devices"]
        t.join(5)
        assert done["slow"] == (503, b'"modbus timeout"')
        assert fast_t < done["slow_t"], "get_dev_info waited for the hung device"
    finally:
        sim.control(cmd="offline", slave=2, on=False)
    assert raw(sim, "cmd=modbus&device=meter1&read=8002") == (200, b"1")


def send_raw(sim, data, timeout=5):
    s = socket.create_connection(("127.0.0.1", sim.http_port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                b = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def status_body(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("data,status,body", [
    (b"GARBAGE\r\n\r\n", 400, b'"bad request"'),
    (b"GET /cnf?cmd=modbus&device=%ZZ HTTP/1.1\r\n\r\n", 400, b'"bad percent-encoding"'),
    (b"GET /cnf?cmd=get_dev_info HTTP/1.1\r\nX: " + b"a" * 3000 + b"\r\n\r\n", 413, b'"request header too large"'),
    (b"POST /cnf?cmd=set_params HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", 413, b'"request body too large"'),
    (b"DELETE /cnf?cmd=get_dev_info HTTP/1.1\r\n\r\n", 405, b'"method not allowed"'),
    (b"GET /other HTTP/1.1\r\n\r\n", 404, b'"not found"'),
])
def test_bad_http_input(sim, data, status, body):
    assert status_body(send_raw(sim, data)) == (status, body)
    assert raw(sim, "cmd=modbus&device=meter1&read=8002") == (200, b"1")


def test_truncated_body_and_slow_client(sim):
    s = socket.create_connection(("127.0.0.1", sim.http_port), timeout=10)
    s.sendall(b"POST /cnf?cmd=set_params HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"a\":")
    s.shutdown(socket.SHUT_WR)
    assert status_body(s.recv(4096)) == (400, b'"truncated body"')
    s.close()
    slow = socket.create_connection(("127.0.0.1", sim.http_port), timeout=10)
    slow.sendall(b"GET /cnf?cmd=get_dev_info HTTP/1.1\r\n")  # and nothing more
    t0 = time.monotonic()
    assert raw(sim, "cmd=modbus&device=meter1&read=8002") == (200, b"1")  # others are served meanwhile
    assert time.monotonic() - t0 < 1
    slow.settimeout(10)
    assert slow.recv(100) == b""  # dropped after the read timeout
    assert time.monotonic() - t0 < 6
    slow.close()
