"""pblib.mqtt's Client in the real MicroPython unix port (96 KB heap) against a real broker.

The broker is Debian's mosquitto (`make mqtt-broker`), started here on a free loopback
port with a generated config (no persistence, anonymous, or a password file); paho-mqtt
is the independent client that checks what the MicroPython client publishes and
publishes to it. host_tests/mpy/scripts/mqtt_client.py is the MicroPython program.

Unreachable brokers, all on loopback: a port with nothing listening (refused at once),
a listener whose accept queue is full (Linux then drops the SYNs: a blackhole for
connect), a TCP proxy that stops forwarding without closing (a half-open connection)
and a DNS server that never answers. A second task in the MicroPython program measures
how late a 10 ms sleep comes back: blocking for a DNS lookup or a connect would show as
a gap of seconds.
"""
import json
import os
import queue
import select
import socket
import subprocess
import threading
import time

import pytest

import mp
from mp import free_port
from mqttbroker import MOSQUITTO, Broker, Sub, paho

SCRIPT = os.path.join(mp.ROOT, "host_tests", "mpy", "scripts", "mqtt_client.py")
STALL_MS = 150  # a blocked loop stalls for seconds (connect 5 s, DNS 2 s); this allows for a busy host

if not MOSQUITTO or paho is None:
    print("\nMQTT client tests skip: %s (run `make mqtt-broker` as root)" % (
        "no mosquitto broker" if not MOSQUITTO else "no paho-mqtt"))
    pytestmark = pytest.mark.skip(reason="no mosquitto" if not MOSQUITTO else "no paho-mqtt")


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


class MpClient:
    """The MicroPython program; events() are its JSON lines."""

    def __init__(self, **cfg):
        cfg.setdefault("id", "pb-%d" % (time.monotonic_ns() % 100000))
        cfg.setdefault("host", "127.0.0.1")
        self.cfg = cfg
        self.p = subprocess.Popen([mp.micropython_bin(), "-X", "heapsize=" + mp.HEAP, SCRIPT, json.dumps(cfg)],
                                  cwd=mp.ROOT, env=mp.micropython_env(), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.q = queue.Queue()
        self.log = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.expect("ready")

    def _pump(self):
        for line in self.p.stdout:
            self.log.append(line)
            try:
                self.q.put(json.loads(line))
            except ValueError:
                self.q.put({"ev": "text", "line": line})

    def send(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()

    def expect(self, ev, timeout=10, **match):
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            try:
                e = self.q.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError("no %s %r within %ss; output:\n%s" % (ev, match, timeout, "".join(self.log)))
            if e["ev"] == ev and all(e.get(k) == v for k, v in match.items()):
                return e

    def status(self):
        self.send(status=1)
        return self.expect("status")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(5)

    def finish(self, how="stop"):
        self.send(**{how: 1})
        done = self.expect("done")
        self.p.wait(5)
        return done


@pytest.fixture
def clients():
    made = []
    yield lambda **cfg: made.append(MpClient(**cfg)) or made[-1]
    for c in made:
        c.kill()


# ---- a broker that answers ----


def test_publish_retained_and_not(broker, clients):
    s = Sub(broker.port, "pb/t1/#")
    c = clients(port=broker.port, will=["pb/t1/status", "offline", True])
    c.expect("connect", n=1)
    c.send(pub=["pb/t1/status", "online", True])
    c.send(pub=["pb/t1/E1/state", '{"p":1,"e":"\u00e9"}', False])
    assert s.get() == ("pb/t1/status", "online", False)  # live: no retain flag for a subscriber (3.3.1.3)
    assert s.get() == ("pb/t1/E1/state", '{"p":1,"e":"\u00e9"}', False)
    late = Sub(broker.port, "pb/t1/#")  # a new subscriber gets only the retained one
    assert late.get() == ("pb/t1/status", "online", True)
    late.none()
    st = c.status()
    assert (st["connected"], st["sent"], st["dropped"], st["reconnects"], st["last_error"]) == (True, 2, 0, 0, "")
    assert c.finish()["sock"] is True
    s.none()  # stop() sends DISCONNECT: no last will
    s.close()
    late.close()


def test_subscribe_receive_and_oversized(broker, clients):
    c = clients(port=broker.port, subs=["pb/t2/set/#"], max_in=64)
    c.expect("connect", n=1)
    p = Sub(broker.port, "unused/x")
    time.sleep(0.3)  # the SUBSCRIBE goes out right after the CONNACK
    p.publish("pb/t2/set/current", "16000")
    assert c.expect("msg")["topic"] == "pb/t2/set/current"
    p.publish("pb/t2/other", "no")
    p.publish("pb/t2/set/big", "x" * 1000)  # longer than max_in: read past, counted
    p.publish("pb/t2/set/enable", "0")
    m = c.expect("msg")
    assert (m["topic"], m["payload"]) == ("pb/t2/set/enable", "0")
    c.send(sub="pb/t2/late")  # subscribing while connected sends it at once
    time.sleep(0.3)
    p.publish("pb/t2/late", "yes")
    m = c.expect("msg")
    assert (m["topic"], m["payload"]) == ("pb/t2/late", "yes")
    st = c.status()
    assert (st["received"], st["skipped"], st["connected"]) == (3, 1, True)
    p.close()


def test_credentials(tmp_path, clients):
    b = Broker(tmp_path, users={"pbctl": "s3cret:pw"}).start()
    try:
        ok = clients(port=b.port, user="pbctl", password="s3cret:pw")
        ok.expect("connect", n=1)
        bad = clients(port=b.port, user="pbctl", password="wrong", backoff_ms=200, backoff_max_ms=400)
        anon = clients(port=b.port)
        time.sleep(1.5)
        for c in (bad, anon):
            st = c.status()
            assert st["connected"] is False
            assert st["last_error"] == "connack 5: not authorized", st
            assert st["reconnects"] == 0
        assert ok.status()["connected"] is True
    finally:
        b.stop()


def test_last_will_when_killed_or_cancelled(broker, clients):
    s = Sub(broker.port, "pb/t4/+/status")
    for how in ("kill", "cancel"):
        c = clients(port=broker.port, will=["pb/t4/%s/status" % how, "offline", True], keepalive=30)
        c.expect("connect", n=1)
        c.send(pub=["pb/t4/%s/status" % how, "online", True])
        assert s.get() == ("pb/t4/%s/status" % how, "online", False)
        if how == "kill":
            c.kill()  # the process dies; its kernel closes the socket
        else:
            assert c.finish("cancel")["sock"] is True  # run() cancelled: the socket closed, no DISCONNECT
        assert s.get() == ("pb/t4/%s/status" % how, "offline", False)
    late = Sub(broker.port, "pb/t4/+/status")
    assert sorted([late.get(), late.get()]) == [("pb/t4/cancel/status", "offline", True),
                                                ("pb/t4/kill/status", "offline", True)]
    s.close()
    late.close()


def test_broker_restart(broker, clients):
    c = clients(port=broker.port, subs=["pb/t5/cmd"], backoff_ms=200, backoff_max_ms=1000)
    c.expect("connect", n=1)
    broker.stop()
    assert c.expect("down")["last_error"] in ("closed by broker", "[Errno 104] ECONNRESET")
    c.send(pub=["pb/t5/state", "queued while away", True])  # kept in the buffer
    time.sleep(1.5)
    st = c.status()
    assert st["connected"] is False and st["last_error"] == "[Errno 111] ECONNREFUSED", st
    assert st["gap_ms"] < STALL_MS, st
    broker.start()
    c.expect("connect", n=2, timeout=5)  # on_connect again
    late = Sub(broker.port, "pb/t5/state")
    assert late.get() == ("pb/t5/state", "queued while away", True)  # sent once the broker was back
    late.publish("pb/t5/cmd", "1")  # the subscription was sent again on the new connection
    assert c.expect("msg")["payload"] == "1"
    st = c.status()
    assert (st["reconnects"], st["sent"], st["last_error"]) == (1, 1, ""), st
    late.close()


class Proxy:
    """127.0.0.1:port -> broker; freeze() stops forwarding on the connections open now, without closing them."""

    def __init__(self, target, port=0):
        self.target = target
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.pairs = []  # [client, upstream, frozen]
        self.run = True
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def freeze(self):
        for p in self.pairs:
            p[2] = True

    def _loop(self):
        while self.run:
            socks = [self.ls] + [s for p in self.pairs if not p[2] for s in p[:2]]
            r, _, _ = select.select(socks, [], [], 0.05)
            for s in r:
                if s is self.ls:
                    a, _ = s.accept()
                    self.pairs.append([a, socket.create_connection(("127.0.0.1", self.target)), False])
                    continue
                for p in self.pairs:
                    if s in p[:2] and not p[2]:
                        d = s.recv(4096)
                        other = p[1] if s is p[0] else p[0]
                        if d:
                            other.sendall(d)
                        else:
                            other.close()
                            s.close()
                            self.pairs.remove(p)
                        break

    def close(self):
        self.run = False
        self.t.join(2)
        for p in self.pairs:
            p[0].close()
            p[1].close()
        self.ls.close()


def test_half_open_connection_detected_and_replaced(broker, clients):
    px = Proxy(broker.port)
    try:
        ka = 2
        c = clients(port=px.port, keepalive=ka, subs=["pb/t6/cmd"], backoff_ms=100, backoff_max_ms=200)
        c.expect("connect", n=1)
        time.sleep(2.5)  # a few pings answered: a live idle connection stays up
        st = c.status()
        assert st["connected"] is True and st["reconnects"] == 0, st
        t0 = time.time()
        px.freeze()
        assert c.expect("down", timeout=2 * ka)["last_error"] == "no reply (keepalive)"
        took = time.time() - t0
        assert took <= 1.5 * ka + 0.3, took
        c.expect("connect", n=2, timeout=3)  # a new connection through the proxy
        p = Sub(broker.port, "unused/x")
        p.publish("pb/t6/cmd", "after")
        assert c.expect("msg")["payload"] == "after"
        st = c.status()
        assert st["reconnects"] == 1 and st["gap_ms"] < STALL_MS, st
        p.close()
    finally:
        px.close()


# ---- no broker: bounded buffer, no stall ----


def test_flood_without_broker_is_bounded_and_heap_flat(tmp_path, clients):
    port = free_port()  # nothing listens there yet: connections are refused
    b = Broker(tmp_path)
    c = clients(port=port, buf_size=2048, backoff_ms=100, backoff_max_ms=1000)
    time.sleep(0.5)
    free0 = c.status()["free"]
    c.send(flood=["pb/t7/state", 500, 40])
    ok = c.expect("flood")["ok"]
    per = 2 + 2 + len("pb/t7/state") + 40  # 55 bytes a packet
    assert ok == 2048 // per
    frees = []
    for _ in range(3):
        c.send(flood=["pb/t7/state", 500, 40])
        assert c.expect("flood")["ok"] == 0
        frees.append(c.status()["free"])
    st = c.status()
    assert st["dropped"] == 2000 - ok and st["sent"] == 0 and st["connected"] is False
    assert st["last_error"] == "[Errno 111] ECONNREFUSED"
    assert max(frees) - min(frees) <= 256, frees  # heap flat while dropping
    assert free0 - min(frees) <= 3000, (free0, frees)  # nothing grows past the fixed buffer
    # the broker, and its subscriber, before the client can reach it (a proxy on
    # the client's port): the queued messages cannot come before the subscription
    b.start()
    proxy = None
    try:
        s = Sub(b.port, "pb/t7/#")
        proxy = Proxy(b.port, port)
        c.expect("connect", n=1, timeout=5)
        got = [s.get() for _ in range(ok)]
        assert got == [("pb/t7/state", "x" * 40, False)] * ok
        s.none()
        assert c.status()["sent"] == ok
        s.close()
    finally:
        if proxy:
            proxy.close()
        b.stop()


def blackhole():
    """A loopback listener with a full accept queue: Linux drops further SYNs."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fill = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fill.append(s)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(1.0)
    try:
        probe.connect(("127.0.0.1", port))
        ok = False
    except socket.timeout:
        ok = True
    except OSError:
        ok = False
    probe.close()
    return ls, fill, port, ok


def test_no_stall_while_the_broker_is_unreachable(clients):
    refused = clients(port=free_port(), backoff_ms=100, backoff_max_ms=300)
    ls, fill, port, ok = blackhole()
    try:
        if not ok:
            pytest.skip("a full accept queue does not drop SYNs on this host's loopback")
        hole = clients(port=port, backoff_ms=100, backoff_max_ms=300)
        time.sleep(6.5)  # more than one connect timeout (5 s)
        st = hole.status()
        assert st["connected"] is False and st["last_error"] == "connect timeout", st
        assert st["gap_ms"] < STALL_MS, st
        st = refused.status()
        assert st["last_error"] == "[Errno 111] ECONNREFUSED" and st["gap_ms"] < STALL_MS, st
    finally:
        for s in fill:
            s.close()
        ls.close()


# ---- names: our DNS query ----

DNS_IP = "127.0.0.153"  # a loopback address of its own: port 53 there is ours


def dns_server(answer):
    """A UDP DNS server on DNS_IP:53: A records for *.pbctl.test -> answer (None: never replies)."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind((DNS_IP, 53))
    except OSError as e:
        u.close()
        pytest.skip("cannot bind a DNS server on %s:53 (%s; needs root)" % (DNS_IP, e))
    u.settimeout(0.1)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                q, a = u.recvfrom(512)
            except socket.timeout:
                continue
            if answer is None:
                continue
            end = q.index(b"\x00", 12) + 5
            name = q[12 : end - 4]
            if name.endswith(b"\x05pbctl\x04test\x00"):
                r = (q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:end]
                     + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton(answer))
            else:  # NXDOMAIN
                r = q[:2] + b"\x81\x83\x00\x01\x00\x00\x00\x00\x00\x00" + q[12:end]
            u.sendto(r, a)

    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def close():
        stop.set()
        t.join(2)
        u.close()

    return close


def test_broker_by_name_through_dns(broker, clients):
    close = dns_server("127.0.0.1")
    try:
        c = clients(host="broker.pbctl.test", port=broker.port, dns=DNS_IP)
        c.expect("connect", n=1)
        s = Sub(broker.port, "pb/t9/x")
        c.send(pub=["pb/t9/x", "by name", False])
        assert s.get() == ("pb/t9/x", "by name", False)
        s.close()
        bad = clients(host="nobroker.example", port=broker.port, dns=DNS_IP, backoff_ms=100, backoff_max_ms=300)
        time.sleep(1)
        st = bad.status()
        assert st["last_error"] == "dns: no address" and st["connected"] is False, st
    finally:
        close()


def test_silent_dns_does_not_stall(clients):
    close = dns_server(None)
    try:
        c = clients(host="broker.pbctl.test", port=free_port(), dns=DNS_IP, backoff_ms=100, backoff_max_ms=300)
        time.sleep(3)  # more than one DNS timeout (2 s)
        st = c.status()
        assert st["last_error"] == "dns timeout" and st["connected"] is False, st
        assert st["gap_ms"] < STALL_MS, st
    finally:
        close()


def test_publishing_does_not_cut_the_back_off_short(clients):
    # a "broker" that accepts and closes at once: every connect attempt is counted
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    ls.settimeout(0.1)
    attempts = []
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                a, _ = ls.accept()
            except socket.timeout:
                continue
            attempts.append(time.time())
            a.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        c = clients(port=ls.getsockname()[1], backoff_ms=1000, backoff_max_ms=1000)
        time.sleep(0.2)
        t0 = time.time()
        for _ in range(10):
            c.send(flood=["pb/t8/state", 5, 10])
            time.sleep(0.2)
        n = len([a for a in attempts if a >= t0])
        # back-off of 500..1000 ms: at most 5 attempts in 2 s (one per publish would be 50)
        assert 1 <= n <= 5, n
        st = c.status()
        assert st["last_error"] in ("closed by broker", "[Errno 104] ECONNRESET"), st  # RST: our CONNECT unread
        assert st["dropped"] == 0 and st["connected"] is False, st
    finally:
        stop.set()
        t.join(2)
        ls.close()
