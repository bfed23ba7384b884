# pblib.mqtt: an MQTT 3.1.1 client (QoS 0) for MicroPython's asyncio, made to
# live next to a control loop on an ESP32-sized heap.
#
# Why our own client and not a library (the README says the same):
# - peterhinch's mqtt_as (asyncio, resilient) is not on a package registry (it
#   installs with mip from its GitHub repository; the PyPI `micropython-mqtt`
#   0.7b4 is a 2020 fork of it), imports `network` and `machine` at module
#   level and runs WiFi itself (activates the STA interface, disconnects and
#   reconnects it on every outage: it would fight the firmware's WiFi task),
#   polls its socket in sleep_ms(0)/sleep_ms(5) loops, calls gc.collect(),
#   grows its input buffer to any incoming message's size and resolves the
#   broker's name with the blocking getaddrinfo; ~36 KB of source.
# - micropython-lib's umqtt.simple/umqtt.robust (PyPI micropython-umqtt.simple
#   1.3.4 of 2017; current ones install with mip only) use blocking sockets:
#   connect, every read and the robust variant's reconnect (time.sleep) stop
#   the whole interpreter, and so the control loop.
# - aiomqttc (PyPI, asyncio) is 81 KB of source, connects through
#   asyncio.open_connection (blocking getaddrinfo, a socket left open when the
#   connect is cancelled) and reads any remaining length the broker announces.
# - chumicro-mqtt is tick-driven, not asyncio, and its MicroPython build
#   installs with mip from GitHub.
# None fits the heap and the never-block rule, so: this module, written for
# this project.
#
# What it does: CONNECT (clean session, client id, user/password, keepalive,
# last will), PUBLISH QoS 0 (retain flag), SUBSCRIBE QoS 0 (filters kept and
# sent again on every connect), incoming PUBLISH -> on_message(topic str,
# payload bytes), PINGREQ/PINGRESP. One task (run) connects, serves and
# reconnects forever; a second one per connection reads.
#
# Never blocking, never unbounded:
# - DNS: a numeric IPv4 host needs no lookup. A name is resolved by our own
#   DNS query over a non-blocking UDP socket to `client.dns` (the DNS server's
#   IPv4 address, which the WiFi task knows: set it any time), bounded by
#   _DNS_MS. Only with dns None is socket.getaddrinfo used: that blocks (on
#   the ESP32 up to lwIP's DNS timeout, seconds), so the firmware should set
#   dns or use an address. The result is kept until a connect fails.
# - connect: non-blocking socket; the TCP handshake, CONNECT and CONNACK
#   together are bounded by _CONNECT_MS; the socket is closed on any failure.
# - writes: one writer (run). A packet the socket takes at once costs no
#   wait; otherwise the rest waits for the socket, bounded by _WRITE_MS.
# - reads: every packet is awaited with a deadline: 2 x (keepalive / 2) after
#   the last packet from the broker. A PINGREQ goes out keepalive/2 after the
#   last packet received (or sent), so a live broker always answers in time; a
#   half-open connection (no answer) is closed within keepalive seconds of the
#   last packet from the broker, and replaced.
# - reconnect: after any loss, exponential back-off from backoff_ms to
#   backoff_max_ms, each delay jittered to 50..100 %; it starts again from
#   backoff_ms once a connection has lived for keepalive/2.
# - outgoing: publish() only queues the encoded packet in one bytearray of
#   buf_size bytes (kept across reconnects: what was queued while the broker
#   was away goes out when it is back); a packet that does not fit is dropped
#   and counted (dropped). A packet cut off by a connection loss is sent whole
#   on the next connection.
# - incoming: packets up to max_in bytes (remaining length) are read into one
#   bytearray of that size; longer ones are read past in pieces and counted
#   (skipped).
#
# Status (plain attributes): connected, last_error ("" or the last failure's
# text), sent (publishes written), dropped, received (messages handed to
# on_message), skipped, reconnects (successful connects after the first).
#
# RAM: few functions on purpose (each costs ~100-250 bytes of heap as .mpy);
# docs are comments, not docstrings. Buffers: buf_size + max_in + 5 bytes,
# allocated once in Client(). The pure parts (put_len ... dns_answer) run on
# CPython too (host_tests/unit/test_mqtt.py); Client needs MicroPython's asyncio.
import asyncio
import time

from micropython import const

_CONNECT_MS = const(5000)  # TCP handshake + CONNECT + CONNACK
_WRITE_MS = const(5000)  # the rest of one packet the socket did not take at once
_DNS_MS = const(2000)  # one DNS query
_MAX_SUBS = const(8)
_CONNACK = ("unacceptable protocol version|identifier rejected|server unavailable|bad user name or password"
            "|not authorized|refused")


# ---- pure packet code (CPython and MicroPython) ----


def put_len(buf, off, n):
    # MQTT remaining length (1..4 byte varint, 7 bits each, low first) at
    # buf[off]; returns the offset after it
    while True:
        b = n & 127
        n >>= 7
        buf[off] = b | 128 if n else b
        off += 1
        if not n:
            return off


def get_len(buf, off):
    # -> (remaining length, offset after it); ValueError if longer than 4 bytes
    n = 0
    for i in range(4):
        b = buf[off + i]
        n |= (b & 127) << (7 * i)
        if b < 128:
            return n, off + i + 1
    raise ValueError("bad length")


def _b(x):
    return x.encode() if isinstance(x, str) else x


def connect_packet(client_id, keepalive, user=None, password=None, will=None):
    # CONNECT, clean session; will = (topic, payload, retain), QoS 0
    f = 2
    p = [_b(client_id)]
    if will:
        f |= 0x24 if will[2] else 4
        p.append(_b(will[0]))
        p.append(_b(will[1]))
    if user is not None:
        f |= 0x80
        p.append(_b(user))
    if password is not None:
        f |= 0x40
        p.append(_b(password))
    n = 10
    for x in p:
        n += 2 + len(x)
    b = bytearray(5 + n)
    b[0] = 0x10
    o = put_len(b, 1, n)
    b[o : o + 10] = b"\x00\x04MQTT\x04" + bytes((f, keepalive >> 8, keepalive & 255))
    o += 10
    for x in p:
        b[o] = len(x) >> 8
        b[o + 1] = len(x) & 255
        b[o + 2 : o + 2 + len(x)] = x
        o += 2 + len(x)
    return memoryview(b)[:o]


def subscribe_packet(pid, filters):
    # SUBSCRIBE with packet id pid, every filter at QoS 0
    n = 2
    for x in filters:
        n += 3 + len(_b(x))
    b = bytearray(5 + n)
    b[0] = 0x82
    o = put_len(b, 1, n)
    b[o] = pid >> 8
    b[o + 1] = pid & 255
    o += 2
    for x in filters:
        x = _b(x)
        b[o] = len(x) >> 8
        b[o + 1] = len(x) & 255
        b[o + 2 : o + 2 + len(x)] = x
        o += 3 + len(x)
        b[o - 1] = 0
    return memoryview(b)[:o]


def put_publish(buf, off, topic, payload, retain=False):
    # a QoS 0 PUBLISH at buf[off]; returns the offset after it, or -1 when it
    # does not fit in buf. ValueError for an empty topic or one with wildcards.
    t = _b(topic)
    p = _b(payload)
    if not t or b"+" in t or b"#" in t:
        raise ValueError("bad topic")
    n = 2 + len(t) + len(p)
    e = off + 2 + n + (n > 127) + (n > 16383) + (n > 2097151)
    if e > len(buf):
        return -1
    buf[off] = 0x31 if retain else 0x30
    o = put_len(buf, off + 1, n)
    buf[o] = len(t) >> 8
    buf[o + 1] = len(t) & 255
    buf[o + 2 : o + 2 + len(t)] = t
    buf[o + 2 + len(t) : e] = p
    return e


def parse_publish(flags, buf, n):
    # the body buf[:n] of an incoming PUBLISH (flags: its first byte) ->
    # (topic str, payload bytes); ValueError if malformed
    k = (buf[0] << 8 | buf[1]) + 2
    o = k + (2 if flags & 6 else 0)  # QoS 1/2 carry a packet id
    if o > n:
        raise ValueError("bad publish")
    return str(buf[2:k], "utf-8"), bytes(buf[o:n])


def dns_query(buf, qid, name):
    # an A query (recursion desired) for name into buf; returns its length
    buf[0:12] = bytes((qid >> 8, qid & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    o = 12
    for x in name.encode().split(b"."):
        if not 0 < len(x) < 64:
            raise ValueError("bad name")
        buf[o] = len(x)
        buf[o + 1 : o + 1 + len(x)] = x
        o += 1 + len(x)
    buf[o : o + 5] = b"\x00\x00\x01\x00\x01"
    return o + 5


def dns_answer(buf, n, qid):
    # the first IPv4 address ("a.b.c.d") in the DNS reply buf[:n] to query
    # qid; None if buf is no reply to qid; ValueError("dns: no address") for
    # an error reply or one without an A record, ValueError if malformed
    if n < 12 or buf[0] << 8 | buf[1] != qid or buf[2] & 0x80 == 0:
        return None
    k = buf[4] << 8 | buf[5]  # questions, then answers
    a = 0 if buf[3] & 15 else buf[6] << 8 | buf[7]
    o = 12
    while k + a and o < n:
        while buf[o] and buf[o] < 192:  # a name: labels up to 0, or a pointer
            o += buf[o] + 1
        o += 2 if buf[o] else 1
        if k:
            k -= 1
            o += 4
            continue
        a -= 1
        m = buf[o + 8] << 8 | buf[o + 9]
        if buf[o] << 8 | buf[o + 1] == 1 and m == 4 and o + 14 <= n:
            return "%d.%d.%d.%d" % (buf[o + 10], buf[o + 11], buf[o + 12], buf[o + 13])
        o += 10 + m
    raise ValueError("dns: no address")


def _ip(host):
    # host if it is a dotted-quad IPv4 address, else None
    p = host.split(".")
    for x in p:
        if not x.isdigit() or int(x) > 255:
            return None
    return host if len(p) == 4 else None


# ---- the client (MicroPython asyncio) ----


class Client:
    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive=60, will=None,
                 buf_size=2048, max_in=512):
        if not 0 < keepalive < 65536 or password is not None and user is None:
            raise ValueError("keepalive 1..65535 s; a password needs a user")
        self._cid = client_id
        self.host = host
        self.port = port
        self._user = user
        self._pwd = password
        self._ka = keepalive
        self._will = will  # (topic, payload, retain)
        self.dns = None  # the DNS server's IPv4 address (see above)
        self.backoff_ms = 500
        self.backoff_max_ms = 60000
        self.on_message = None  # callable(topic str, payload bytes)
        self.on_connect = None  # callable(), after every CONNACK
        self._q = bytearray(buf_size)  # queued PUBLISH packets at [_h:_t]
        self._h = self._t = 0
        self._rx = bytearray(max_in)
        self._hd = bytearray(5)  # an incoming packet's fixed header (the reader's)
        self._ctl = bytearray(2)  # PINGREQ, DISCONNECT (the writer's)
        self._subs = []
        self._nsub = 0  # filters subscribed on this connection
        self._wake = asyncio.Event()  # the writer has work: a publish, a subscription, stop()
        self._halt = asyncio.Event()  # stop(): ends the back-off (publishes must not)
        self._sock = self._rtask = self._addr = None
        self._n = 0
        self._stop = self._ever = self._out = False  # _out: the head packet is being written
        self._since = None  # ticks_ms of this connection's CONNACK
        self._rx_ms = self._tx_ms = self._ping_ms = 0
        self.connected = False
        self.last_error = ""
        self.sent = self.dropped = self.received = self.skipped = self.reconnects = 0

    def publish(self, topic, payload, retain=False):
        # queue a QoS 0 PUBLISH; False (and counted in dropped) if the buffer is full
        q = self._q
        e = put_publish(q, self._t, topic, payload, retain)
        if e < 0 and self._h and not self._out:  # move the queue to the front, then try again
            self._t -= self._h
            q[0 : self._t] = memoryview(q)[self._h : self._h + self._t]
            self._h = 0
            e = put_publish(q, self._t, topic, payload, retain)
        if e < 0:
            self.dropped += 1
            return False
        self._t = e
        self._wake.set()
        return True

    def room(self):
        # bytes a publish() may take now (so a caller can pace a burst; the
        # head packet being written is not moved)
        return len(self._q) - self._t + (0 if self._out else self._h)

    def subscribe(self, topic_filter):
        # QoS 0; kept, and sent on every connect (now too, if connected)
        if topic_filter not in self._subs:
            if len(self._subs) >= _MAX_SUBS:
                raise ValueError("too many subscriptions")
            self._subs.append(topic_filter)
            self._wake.set()

    def stop(self):
        # run() sends DISCONNECT (the broker then drops the last will), closes
        # the socket and returns. Cancelling run() instead leaves the socket
        # closed without DISCONNECT: the broker publishes the will.
        self._stop = True
        self._wake.set()
        self._halt.set()

    async def run(self):
        fails = 0
        try:
            while not self._stop:
                self._since = None
                try:
                    await self._session()
                except Exception as e:  # OSError, ValueError (protocol), MemoryError
                    self.last_error = str(e) or type(e).__name__
                finally:
                    self._close()
                if self._stop:
                    break
                if self._since is None:
                    self._addr = None  # connect failed: resolve again next time
                elif time.ticks_diff(time.ticks_ms(), self._since) >= self._ka * 500:
                    fails = 0  # it lived for a ping interval: back-off starts again
                d = min(self.backoff_max_ms, self.backoff_ms << min(fails, 16))
                fails += 1
                import random

                d = d // 2 + random.getrandbits(16) * (d - d // 2) // 65535
                try:
                    await asyncio.wait_for_ms(self._halt.wait(), d)  # stop() ends the wait
                except asyncio.TimeoutError:
                    pass
        finally:
            self._close()

    def _close(self):
        self.connected = self._out = False
        if self._rtask:
            self._rtask.cancel()
            self._rtask = None
        if self._sock:
            self._sock.close()
            self._sock = None

    async def _session(self):
        # connect, then write until the connection ends (the reader or a
        # write fails, or stop()); every wait bounded
        import socket

        if not self._addr:
            h = _ip(self.host)
            if not h and self.dns:
                try:
                    h = await asyncio.wait_for_ms(self._resolve(socket), _DNS_MS)
                except asyncio.TimeoutError:
                    raise OSError("dns timeout")
            self._addr = socket.getaddrinfo(h or self.host, self.port)[0][-1]  # blocks only for a name without dns
        s = self._sock = socket.socket()
        s.setblocking(False)
        try:
            s.connect(self._addr)
        except OSError as e:
            import errno

            if e.errno != errno.EINPROGRESS:
                raise
        try:
            await asyncio.wait_for_ms(self._handshake(s), _CONNECT_MS)
        except asyncio.TimeoutError:
            raise OSError("connect timeout")
        k = self._rx[1]
        if k:  # refused: "connack 5: not authorized"
            raise OSError("connack %d: %s" % (k, _CONNACK.split("|")[min(k, 6) - 1]))
        self.connected = True
        self.last_error = ""
        self._nsub = 0
        self._ping_ms = self._tx_ms = self._since = self._rx_ms
        if self._ever:
            self.reconnects += 1
        self._ever = True
        self._rtask = asyncio.create_task(self._reader(s))
        if self.on_connect:
            try:
                self.on_connect()
            except Exception as e:
                import sys

                sys.print_exception(e)
        iv = self._ka * 500  # ping interval, half the keepalive
        pid = 0
        q = memoryview(self._q)
        while self.connected and not self._stop:
            self._wake.clear()
            if self._nsub < len(self._subs):
                pid = pid % 65535 + 1
                await self._send(s, subscribe_packet(pid, self._subs[self._nsub :]))
                self._nsub = len(self._subs)
            while self._t > self._h and self.connected:
                n, o = get_len(self._q, self._h + 1)
                self._out = True
                await self._send(s, q[self._h : o + n])
                self._out = False
                self._h = o + n
                if self._h == self._t:
                    self._h = self._t = 0
                self.sent += 1
            # a ping is due iv after the last one, once iv has passed since
            # the last packet in or the last one out
            now = time.ticks_ms()
            d = max(iv - time.ticks_diff(now, self._ping_ms),
                    iv - max(time.ticks_diff(now, self._rx_ms), time.ticks_diff(now, self._tx_ms)))
            if d <= 0 and self.connected:
                self._ctl[0] = 0xC0
                await self._send(s, self._ctl)
                self._ping_ms = self._tx_ms
                d = iv
            if not self._wake.is_set():
                try:
                    await asyncio.wait_for_ms(self._wake.wait(), d)
                except asyncio.TimeoutError:
                    pass
        if self._stop and self.connected:
            self._ctl[0] = 0xE0
            await self._send(s, self._ctl)
        elif not self.connected:
            raise OSError(self.last_error)

    async def _handshake(self, s):
        await self._io(s, None, True)  # writable: the TCP connection is up (or failed)
        await self._send(s, connect_packet(self._cid, self._ka, self._user, self._pwd, self._will))
        if await self._recv(s) != 0x20 or self._n != 2:
            raise OSError("no connack")

    async def _reader(self, s):
        # one connection's reader: PUBLISH -> on_message, PINGRESP/SUBACK;
        # every packet due within 2 ping intervals of the one before
        lim = self._ka * 1000
        try:
            while True:
                left = lim - time.ticks_diff(time.ticks_ms(), self._rx_ms)
                try:
                    t = await asyncio.wait_for_ms(self._recv(s), max(left, 1))
                except asyncio.TimeoutError:
                    raise OSError("no reply (keepalive)")
                if t >> 4 == 3 and self._n >= 0:
                    tp, p = parse_publish(t, self._rx, self._n)
                    self.received += 1
                    if self.on_message:
                        try:
                            self.on_message(tp, p)
                        except Exception as e:
                            import sys

                            sys.print_exception(e)
                elif t == 0x90 and self._rx.find(b"\x80", 2, self._n) > 0:
                    self.last_error = "subscribe refused"
        except Exception as e:
            if self.connected:
                self.last_error = str(e) or type(e).__name__
        finally:
            self.connected = False
            self._wake.set()

    async def _recv(self, s):
        # one packet: returns its first byte; its body is self._rx[:self._n],
        # or self._n = -1 when it was longer than max_in (read past, skipped)
        h = memoryview(self._hd)
        await self._io(s, h[0:2], False)
        i = 1
        while self._hd[i] & 128:
            if i == 4:
                raise ValueError("bad length")
            i += 1
            await self._io(s, h[i : i + 1], False)
        n = get_len(self._hd, 1)[0]
        rx = memoryview(self._rx)
        self._n = n if n <= len(rx) else -1
        while n:
            k = min(n, len(rx))
            await self._io(s, rx[:k], False)
            n -= k
        if self._n < 0:
            self.skipped += 1
        self._rx_ms = time.ticks_ms()
        return self._hd[0]

    async def _send(self, s, mv):
        # all of mv into the socket: at once, or waiting for it (bounded)
        n = s.write(mv)
        if n != len(mv):
            try:
                await asyncio.wait_for_ms(self._io(s, memoryview(mv)[n or 0 :], True), _WRITE_MS)
            except asyncio.TimeoutError:
                raise OSError("write timeout")
        self._tx_ms = time.ticks_ms()

    def _io(self, s, mv, write):
        # a coroutine (a generator, as asyncio's own streams): move all of mv
        # through the non-blocking socket s, waiting for it in asyncio's I/O
        # queue; mv None: just wait until s is writable
        import sys

        q = sys.modules["asyncio.core"]._io_queue
        while True:
            if mv is not None:
                if not mv:
                    return
                n = s.write(mv) if write else s.readinto(mv)
                if n == 0 and not write:
                    raise OSError("closed by broker")
                if n:
                    mv = mv[n:]
                    continue
            yield q.queue_write(s) if write else q.queue_read(s)
            if mv is None:
                return

    def _resolve(self, socket):
        # a coroutine (a generator): self.host's IPv4 address from the DNS
        # server self.dns, one query over a non-blocking UDP socket
        import sys

        q = sys.modules["asyncio.core"]._io_queue
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.setblocking(False)
            b = self._rx
            qid = time.ticks_us() & 0xFFFF
            u.sendto(memoryview(b)[: dns_query(b, qid, self.host)], socket.getaddrinfo(self.dns, 53)[0][-1])
            while True:  # replies to other queries are ignored
                yield q.queue_read(u)
                a = dns_answer(b, u.readinto(b) or 0, qid)
                if a:
                    return a
        finally:
            u.close()
