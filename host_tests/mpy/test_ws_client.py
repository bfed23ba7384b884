"""pblib.ws under the MicroPython unix port (96 KB heap) against real servers.

The client is host_tests/mpy/scripts/ws_client.py. Its peers: host_tests/mpy/ws_peer.py (the
`websockets` library, plain and TLS), and for what no proper server does (broken handshakes, protocol
errors, a server that freezes) raw sockets here, which also read the client's frames back byte for byte.
"""
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

import mp

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "scripts", "ws_client.py")
PEER = os.path.join(HERE, "ws_peer.py")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_client(url, scenario, *opts, timeout=30):
    """Run the MicroPython client; its JSON lines as a list (the last one {"done": true})."""
    r = mp.run([SCRIPT, url, scenario] + list(opts), timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert lines and lines[-1] == {"done": True}, out
    return lines[:-1]


class Peer:
    """ws_peer.py as a process; its events collected by a thread."""

    def __init__(self, tls=None):
        self.port = free_port()
        cmd = [sys.executable, PEER, str(self.port)] + list(tls or ())
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.p.stdout.readline()
        assert json.loads(line) == {"ev": "READY"}, line + self.p.stdout.read()
        self.events = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            with self.lock:
                self.events.append(json.loads(line) if line.startswith("{") else {"text": line})

    def wait(self, path, ev, timeout=10):
        t = time.monotonic() + timeout
        while time.monotonic() < t:
            with self.lock:
                for e in self.events:
                    if e.get("path") == path and e.get("ev") == ev:
                        self.events.remove(e)
                        return e
            time.sleep(0.02)
        raise AssertionError("no %s %s from the peer; it said: %s" % (path, ev, self.events))

    def stop(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGCONT)
            self.p.kill()
        self.p.wait(5)


@pytest.fixture(scope="module")
def peer():
    p = Peer()
    yield p
    p.stop()


def url(peer, path, scheme="ws"):
    return "%s://127.0.0.1:%d%s" % (scheme, peer.port, path)


# ---- against the websockets library ---------------------------------------------------------


def test_echo_lengths_kinds_and_concurrent_senders(peer):
    out = run_client(url(peer, "/echo"), "echo")
    # hello, 256 binary bytes, 900 UTF-8 bytes, 125, 126, empty, 4000 binary bytes, max_msg (4096) text
    assert out[0] == {"echo": ["ok"] * 8}
    assert out[1] == {"concurrent": True, "n": 10}
    assert out[2] == {"closed": 1000, "error": "", "rx": 18, "tx": 18, "after": None}
    e = peer.wait("/echo", "open")
    assert e["subprotocol"] == "ocpp1.6" and e["protocols"] == "ocpp1.6"
    assert e["extra"] == "yes" and e["auth"] is None and e["host"] == "127.0.0.1:%d" % peer.port
    assert peer.wait("/echo", "closed")["code"] == 1000


def test_fragmented_messages_with_a_ping_between(peer):
    out = run_client(url(peer, "/frag"), "frag")
    assert out[0] == {"text": "fragment one, fragment two, and \u00e9 three", "binary_len": 303, "binary_op": 2}
    e = peer.wait("/frag", "frag")
    assert e == {"path": "/frag", "ev": "frag", "text_ok": True, "binary_ok": True, "pong": True}


def test_server_pings_get_their_pongs(peer):
    out = run_client(url(peer, "/ping"), "ping")
    assert out[0] == {"got": "done", "error": ""}
    assert peer.wait("/ping", "pongs")["n"] == 3  # payloads "", "p1", 125 bytes: websockets checks them


def test_close_from_the_server_with_its_code(peer):
    out = run_client(url(peer, "/close?4001"), "until_end")
    assert out[0] == {"connected": True}
    assert out[1]["code"] == 4001 and out[1]["error"] == "" and out[1]["again"] is None
    assert out[2] == {"send_after_end": "ws: not open"}
    assert peer.wait("/close?4001", "closed")["code"] == 4001  # echoed


def test_close_from_the_client_while_a_task_reads(peer):
    out = run_client(url(peer, "/echo"), "close_while_reading", "code=4000")
    assert out[0]["recv"] is None and out[0]["code"] == 4000 and out[0]["error"] == ""
    assert out[0]["ms"] < 1000
    assert peer.wait("/echo", "closed")["code"] == 4000


@pytest.mark.parametrize("query", ["n=5000", "n=5000&frag=1", "n=4097"])
def test_oversize_message_closes_1009(peer, query):
    out = run_client(url(peer, "/big?" + query), "until_end", "max_msg=4096")
    assert out[0] == {"connected": True}
    assert out[1]["code"] == 1009 and out[1]["error"] == "ws: message too big"
    assert peer.wait("/big?" + query, "closed")["code"] == 1009


def test_message_of_exactly_max_msg_passes(peer):
    out = run_client(url(peer, "/big?n=4096"), "until_end", "max_msg=4096", "n=1")
    assert out[1] == {"message": "z" * 4096, "len": 4096, "op": 1}
    assert out[2]["code"] == 1000 and out[2]["error"] == ""
    assert peer.wait("/big?n=4096", "closed")["code"] == 1000


def test_keepalive_pings_keep_a_quiet_connection(peer):
    out = run_client(url(peer, "/quiet?1500"), "until_end", "ping_ms=300", "timeout_ms=1000", "n=1")
    assert out[1]["message"] == "still here"
    assert out[2]["pings"] >= 3 and out[2]["code"] == 1000 and out[2]["error"] == ""


def test_basic_auth(peer):
    out = run_client(url(peer, "/auth"), "until_end", "user=CP_1", "password=secret", "n=0")
    assert out[0] == {"connected": True}
    assert peer.wait("/auth", "open")["auth"] == "Basic Q1BfMTpzZWNyZXQ="
    out = run_client(url(peer, "/auth"), "until_end", "user=CP_1", "password=wrong")
    assert out == [{"connect": "WSError", "message": "ws: http 401", "status": 401}]
    assert peer.wait("/auth", "refused")["auth"] == "Basic " + base64.b64encode(b"CP_1:wrong").decode()


def test_subprotocol_refused(peer):
    out = run_client(url(peer, "/noproto"), "until_end")
    assert out == [{"connect": "WSError", "message": "ws: subprotocol not accepted", "status": 0}]


def test_connection_refused():
    out = run_client("ws://127.0.0.1:%d/x" % free_port(), "until_end")
    assert out[0]["connect"] == "OSError"


# ---- a server that vanishes ------------------------------------------------------------------


def test_frozen_server_is_detected_as_dead():
    # SIGSTOP: the kernel keeps the connection, nothing answers; the client must notice within
    # ping_ms (silence before its ping) + timeout_ms (the pong's time), here 500 + 1000 ms
    p = Peer()
    try:
        c = subprocess.Popen([mp.micropython_bin(), "-X", "heapsize=" + mp.HEAP, SCRIPT, url(p, "/quiet?60000"),
                              "until_end", "ping_ms=500", "timeout_ms=1000"], cwd=mp.ROOT, env=mp.micropython_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert json.loads(c.stdout.readline()) == {"connected": True}
        os.kill(p.p.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        rest = c.communicate(timeout=10)[0]
        took = time.monotonic() - t0
        lines = [json.loads(x) for x in rest.splitlines()]
        end = lines[0]
        assert end["error"] == "ws: no answer" and end["code"] == 1006 and end["pings"] == 1, rest
        assert 1.0 < took < 2.5, took  # 1.5 s after the last sign of life at most (the stop came a bit later)
        assert 1400 <= end["ended_ms"] <= 1700
        assert lines[1] == {"send_after_end": "ws: not open"}
    finally:
        p.stop()


def test_killed_server_is_noticed_at_once():
    p = Peer()
    try:
        c = subprocess.Popen([mp.micropython_bin(), "-X", "heapsize=" + mp.HEAP, SCRIPT, url(p, "/quiet?60000"),
                              "until_end"], cwd=mp.ROOT, env=mp.micropython_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert json.loads(c.stdout.readline()) == {"connected": True}
        p.p.kill()
        end = json.loads(c.communicate(timeout=10)[0].splitlines()[0])
        assert end["error"] == "ws: connection lost" and end["code"] == 1006 and end["ended_ms"] < 500
    finally:
        p.stop()


# ---- wss:// ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_peer(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("no openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key, der = str(d / "cert.pem"), str(d / "key.pem"), str(d / "cert.der")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER", "-out", der], check=True)
    other = str(d / "other.der")  # a CA that did not sign the server's certificate
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=other", "-keyout", str(d / "k2.pem"), "-outform", "DER",
                    "-out", other], check=True, capture_output=True)
    p = Peer((cert, key))
    p.der, p.other = der, other
    yield p
    p.stop()


def test_wss_echo_unverified(tls_peer):
    # the default context: encrypted, server not authenticated (MicroPython's CERT_NONE default)
    out = run_client(url(tls_peer, "/echo", "wss"), "echo")
    assert out[0] == {"echo": ["ok"] * 8}
    assert out[1] == {"concurrent": True, "n": 10}
    assert out[2]["closed"] == 1000
    assert tls_peer.wait("/echo", "closed")["code"] == 1000


def test_wss_verified_against_its_ca(tls_peer):
    out = run_client("wss://localhost:%d/echo" % tls_peer.port, "until_end", "ca=" + tls_peer.der, "n=0")
    assert out[0] == {"connected": True}
    out = run_client("wss://localhost:%d/echo" % tls_peer.port, "until_end", "ca=" + tls_peer.other)
    assert out[0]["connect"] in ("OSError", "ValueError"), out  # mbedtls: certificate verification failed


def test_wss_to_a_plain_server_fails_cleanly(peer):
    out = run_client(url(peer, "/echo", "wss"), "until_end", "timeout_ms=2000")
    assert out[0]["connect"] == "OSError"


# ---- raw servers: what no proper server sends -----------------------------------------------


def accept_for(head):
    key = [x.split(":", 1)[1].strip() for x in head.split("\r\n") if x.lower().startswith("sec-websocket-key:")][0]
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def read_head(c):
    b = b""
    while b"\r\n\r\n" not in b:
        k = c.recv(4096)
        if not k:
            break
        b += k
    return b.decode()


def read_frame(c):
    """One client frame: (first byte, unmasked payload); checks the mask bit. None at EOF."""
    def exactly(n):
        b = b""
        while len(b) < n:
            k = c.recv(n - len(b))
            if not k:
                raise EOFError
            b += k
        return b

    try:
        b0, b1 = exactly(2)
        assert b1 & 0x80, "client frame not masked"
        n = b1 & 127
        if n == 126:
            n = struct.unpack(">H", exactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", exactly(8))[0]
        key = exactly(4)
        data = exactly(n)
        return b0, bytes(x ^ key[i & 3] for i, x in enumerate(data))
    except (EOFError, ConnectionResetError):
        return None


class Raw:
    """One connection, served by behaviour(conn, request_head) in a thread; what it returns is kept."""

    def __init__(self, behaviour):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(1)
        self.port = self.s.getsockname()[1]
        self.result = None
        self.t = threading.Thread(target=self._run, args=(behaviour,), daemon=True)
        self.t.start()

    def _run(self, behaviour):
        c, _ = self.s.accept()
        c.settimeout(10)
        try:
            self.result = behaviour(c, read_head(c))
        finally:
            c.close()
            self.s.close()

    def client(self, *opts, path="/cp"):
        out = run_client("ws://127.0.0.1:%d%s" % (self.port, path), "until_end", *opts)
        self.t.join(10)
        return out


def upgrade(extra=""):
    def make(head):
        return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: ocpp1.6\r\n%s\r\n" % (accept_for(head), extra)).encode()
    return make


def test_request_head_exact():
    def b(c, head):
        c.sendall(upgrade()(head))
        read_frame(c)
        return head

    r = Raw(b)
    r.client("n=0", "user=CP_1", "password=p:w", path="/ocpp/CP_1?x=1")
    lines = r.result.split("\r\n")
    key = [x for x in lines if x.startswith("Sec-WebSocket-Key: ")][0][19:]
    assert len(base64.b64decode(key)) == 16
    assert lines == ["GET /ocpp/CP_1?x=1 HTTP/1.1", "Host: 127.0.0.1:%d" % r.port, "Upgrade: websocket",
                     "Connection: Upgrade", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13",
                     "Sec-WebSocket-Protocol: ocpp1.6", "Authorization: Basic " + base64.b64encode(b"CP_1:p:w").decode(),
                     "", ""]


@pytest.mark.parametrize("reply,message,status", [
    (lambda h: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "ws: http 200", 200),
    (lambda h: b"hello there\r\n\r\n", "ws: bad reply", 0),
    (lambda h: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n",
     "ws: wrong accept key", 0),
    (lambda h: upgrade()(h).replace(b"Upgrade: websocket\r\n", b""), "ws: not an upgrade", 0),
    (lambda h: upgrade()(h).replace(b"ocpp1.6", b"ocpp2.0.1"), "ws: wrong subprotocol", 0),
    (lambda h: upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n")(h), "ws: extension not asked for", 0),
    (lambda h: b"HTTP/1.1 101 OK\r\nX-Pad: " + b"x" * 5000 + b"\r\n\r\n", "ws: reply head too large", 0),
    (lambda h: b"HTTP/1.1 101 \xff\xfe\r\n\r\n", "ws: bad reply", 0),
])
def test_bad_handshake_replies(reply, message, status):
    def b(c, head):
        c.sendall(reply(head))
        time.sleep(0.2)

    out = Raw(b).client()
    assert out == [{"connect": "WSError", "message": message, "status": status}]


def test_handshake_timeout_and_early_close():
    out = Raw(lambda c, h: time.sleep(2)).client("timeout_ms=500")
    assert out == [{"connect": "OSError", "message": "ws: handshake timeout", "status": None}]
    out = Raw(lambda c, h: None).client()
    assert out == [{"connect": "OSError", "message": "ws: closed in handshake", "status": None}]


def test_first_frames_in_the_handshake_segment_and_a_ping_inside_a_message():
    def b(c, head):
        # the reply, a whole message and the first fragment of the next in one segment
        c.sendall(upgrade()(head) + b"\x81\x05first" + b"\x01\x03abc")
        c.sendall(b"\x89\x04ping")  # between the fragments
        got = [read_frame(c), read_frame(c)]  # the echo of "first" and the pong, in either order
        c.sendall(b"\x80\x03def")
        got.append(read_frame(c))
        c.sendall(b"\x88\x00")  # close without a code
        return got, read_frame(c)

    r = Raw(b)
    out = r.client("echo=1")
    assert out[1] == {"message": "first", "len": 5, "op": 1}
    assert out[2] == {"message": "abcdef", "len": 6, "op": 1}
    assert out[3]["code"] == 1005 and out[3]["error"] == ""
    got, close = r.result
    assert sorted(got[:2]) == [(0x81, b"first"), (0x8A, b"ping")]
    assert got[2] == (0x81, b"abcdef")
    assert close == (0x88, b"")  # an empty close echoes no code


@pytest.mark.parametrize("frames", [
    b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",  # masked by the server
    b"\xc1\x02hi",  # RSV1 without an extension
    b"\x83\x00",  # opcode 3
    b"\x8b\x00",  # opcode 11
    b"\x89\x7e\x00\x7e" + b"p" * 126,  # ping of 126 bytes
    b"\x09\x02hi",  # a fragmented ping
    b"\x80\x02hi",  # a continuation with nothing to continue
    b"\x01\x02hi\x81\x02ho",  # a new message inside a fragmented one
    b"\x88\x01\x03",  # close with a 1-byte payload
])
def test_protocol_errors_close_1002(frames):
    def b(c, head):
        c.sendall(upgrade()(head) + frames)
        return read_frame(c)  # then the server closes the connection, as it should

    r = Raw(b)
    out = r.client()
    assert out[1]["code"] == 1002 and out[1]["error"] == "ws: protocol error"
    assert out[1]["ended_ms"] < 1000  # not the whole timeout_ms (3 s): the server's close ended it
    assert r.result == (0x88, b"\x03\xea")


def test_unanswered_close_is_bounded():
    # the client closes; the server neither answers nor closes: the client gives up after timeout_ms
    def b(c, head):
        c.sendall(upgrade()(head) + b"\x81\x02hi")
        f = read_frame(c)
        time.sleep(1.5)
        return f

    r = Raw(b)
    out = r.client("n=1", "timeout_ms=700")
    assert out[2]["code"] == 1000 and 600 <= out[2]["ended_ms"] <= 1200
    assert r.result == (0x88, b"\x03\xe8")


@pytest.mark.parametrize("frames", [
    b"\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff",  # 2^63 - 1 bytes announced
    b"\x81\x7e\x10\x01",  # 4097: one more than max_msg
    b"\x01\x7e\x08\x00" + b"a" * 2048 + b"\x00\x7e\x08\x01",  # fragments adding up to 4097
])
def test_announced_length_over_the_bound_closes_1009_before_the_payload(frames):
    # the client refuses on the head: it neither waits for nor buffers the payload
    def b(c, head):
        c.sendall(upgrade()(head) + frames)
        return read_frame(c)

    r = Raw(b)
    out = r.client("max_msg=4096")
    assert out[1]["code"] == 1009 and out[1]["error"] == "ws: message too big" and out[1]["ended_ms"] < 1000
    assert r.result == (0x88, b"\x03\xf1")
