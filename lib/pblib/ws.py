# ws: a WebSocket client (RFC 6455) for MicroPython's asyncio, sized for OCPP-J on an ESP32.
#
# Client(max_msg, timeout_ms, ping_ms, tx_size) owns two buffers, allocated once and kept over reconnects:
# - the receive buffer, bytearray(max_msg + 140): the handshake reply, then the frames as they come; a
#   message's payload is gathered at its start (fragments joined in place, control frames in between
#   answered), so a message is handed out as a memoryview of it, valid until the next recv();
#   a message longer than max_msg fails the connection with close code 1009;
# - the send buffer, bytearray(tx_size): frames are masked through it piece by piece, so a message of
#   any length costs no copy (a str goes out through memoryview(str) on MicroPython).
#
# Every await on I/O is bounded by timeout_ms: connect, handshake, each write, the rest of a frame once it
# has begun, the answer to our keepalive ping (sent after ping_ms of silence; any byte received counts as
# life), the close handshake. A dead peer therefore ends recv() within ping_ms + timeout_ms.
# One task calls recv() (it answers pings and a close from the server), any task may send(); frames
# never interleave. TLS (wss://): `ssl` is an ssl.SSLContext; by default one from
# ssl.SSLContext(PROTOCOL_TLS_CLIENT), which on MicroPython encrypts but does not verify the server
# (verify_mode CERT_NONE: a board has no CA store); to authenticate the server, pass a context with
# verify_mode = ssl.CERT_REQUIRED and load_verify_locations(cadata=...). The server name goes out as SNI.
# Not done: extensions (permessage-deflate is declined by not offering it), UTF-8 validation of text
# messages (the OCPP layer's JSON decoding rejects bad UTF-8), redirects, proxies. DNS (getaddrinfo)
# blocks: on a board use an IP or a local name.
#
# The pure parts (parse_url, accept_key, head, mask, frame_len) also run under CPython.
# RAM: as in httpd, few functions, docs as comments, the socket modules imported where used.
import asyncio
import time

from micropython import const

TEXT = const(1)
BINARY = const(2)
CLOSE = const(8)
PING = const(9)
PONG = const(10)


class WSError(Exception):
    # the server refused the upgrade or answered it wrongly; status: its HTTP status (0: not HTTP's fault)
    def __init__(self, message, status=0):
        super().__init__(message)
        self.status = status


def parse_url(url):
    # "ws://host[:port][/path]" or "wss://..." -> (tls, host, port, path); ValueError if it is not one.
    # Printable ASCII only (the path goes into the request line as it is), no user info, no fragment;
    # an IPv6 literal in brackets.
    b = url.encode()
    tls = url.startswith("wss://")
    if not b or min(b) <= 32 or max(b) >= 127 or "#" in url or not (tls or url.startswith("ws://")):
        raise ValueError("bad url")
    s = url[6 if tls else 5 :]
    i = s.find("/")
    path = "/"
    if i >= 0:
        path = s[i:]
        s = s[:i]
    port = ""
    if s.startswith("["):
        i = s.find("]")
        port = s[i + 1 :]
        host = s[1:i]
        if i < 0 or port and port[0] != ":":
            raise ValueError("bad url")
        port = port[1:]
    else:
        host, _, port = s.partition(":")
    if not host or "@" in s or port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError("bad url")
    return tls, host, int(port) if port else 443 if tls else 80, path


def accept_key(key):
    # the Sec-WebSocket-Accept a server must answer to Sec-WebSocket-Key key
    import binascii
    import hashlib

    return str(binascii.b2a_base64(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())[:-1],
               "ascii")


def head(buf, op, n, key):
    # the head of a final, masked frame (opcode op, n payload bytes, 4-byte mask key) into buf; returns its
    # length: 6, 8 or 14
    buf[0] = 0x80 | op
    i = 2
    if n < 126:
        buf[1] = 0x80 | n
    elif n < 65536:
        buf[1] = 0xFE
        buf[2] = n >> 8
        buf[3] = n & 255
        i = 4
    else:
        buf[1] = 0xFF
        for i in range(9, 1, -1):
            buf[i] = n & 255
            n >>= 8
        i = 10
    buf[i : i + 4] = key
    return i + 4


def mask(dst, di, src, si, n, key, k):
    # dst[di:di+n] = src[si:si+n] XOR the mask key, its byte k (mod 4) first; also unmasks
    for i in range(n):
        dst[di + i] = src[si + i] ^ key[(k + i) & 3]


def frame_len(buf, i, n):
    # the frame head at buf[i:n] -> (head length, payload length); (0, 0) while more bytes are needed
    if n - i < 2:
        return 0, 0
    k = buf[i + 1] & 127
    h = 2 if k < 126 else 4 if k == 126 else 10
    if buf[i + 1] & 128:
        h += 4
    if n - i < h:
        return 0, 0
    if k == 126:
        k = buf[i + 2] << 8 | buf[i + 3]
    elif k == 127:
        k = 0
        for j in range(i + 2, i + 10):
            k = k << 8 | buf[j]
    return h, k


class Client:
    def __init__(self, max_msg=4096, timeout_ms=10000, ping_ms=30000, tx_size=256, bufs=None):
        # bufs: (receive, send) bytearrays allocated by the caller (reserved early, while the heap still
        # has large holes): then max_msg = len(receive) - 140 and tx_size = len(send)
        if bufs is None:
            bufs = (bytearray(max_msg + 140), bytearray(max(tx_size, 32)))
        self.bufs = bufs
        self.max_msg = len(bufs[0]) - 140
        self.timeout_ms = timeout_ms
        self.ping_ms = ping_ms  # silence before our keepalive ping; 0: none (a dead peer then goes unnoticed)
        self._buf = bufs[0]  # + a control frame and a frame head after a full message
        self._mv = memoryview(self._buf)
        self._tx = bufs[1]
        self._wbusy = False  # a frame is being written (the next waits: frames never interleave)
        self._wfree = asyncio.Event()
        self._sock = self._s = None
        self._reading = False
        self.opcode = 0  # TEXT or BINARY: the kind of the message recv() returned last
        self.close_code = 0  # the close code received (or sent first), 1006: the connection ended without one
        self.last_error = ""
        self.rx = self.tx = self.pings = 0  # messages received, messages sent, keepalive pings sent

    async def connect(self, url, protocol="ocpp1.6", user=None, password=None, headers=(), ssl=None):
        # Opens the connection and makes the upgrade handshake, asking for subprotocol protocol (None: none)
        # and insisting on it; password: HTTP Basic auth as user:password (OCPP security profile 1);
        # headers: more (name, value) pairs. Raises ValueError (bad url or header), OSError (network,
        # timeout) or WSError (refused: .status 401 for a wrong password; or a wrong answer).
        if self._s:
            raise OSError("ws: already open")
        tls, host, port, path = parse_url(url)
        import binascii
        import os
        import socket

        key = str(binascii.b2a_base64(os.urandom(16))[:-1], "ascii")
        h = "[%s]" % host if ":" in host else host
        if port != (443 if tls else 80):
            h += ":%d" % port
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (path, h, key))
        if protocol:
            req += "Sec-WebSocket-Protocol: %s\r\n" % protocol
        if password is not None:
            h = binascii.b2a_base64(("%s:%s" % (user or "", password)).encode())[:-1]
            req += "Authorization: Basic %s\r\n" % str(h, "ascii")
        for k, v in headers:
            if "\n" in k or "\r" in k or ":" in k or "\n" in v or "\r" in v:
                raise ValueError("bad header")
            req += "%s: %s\r\n" % (k, v)
        req = (req + "\r\n").encode()
        buf = self._buf
        mv = self._mv
        sock = None
        try:
            a = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            sock = socket.socket(a[0], a[1], a[2])
            sock.setblocking(False)
            # TCP_NODELAY (IPPROTO_TCP 6, TCP_NODELAY 1 in Linux and lwIP; the unix port names neither): a
            # message goes out in pieces, Nagle would hold the second until the first is acknowledged
            sock.setsockopt(6, 1, 1)
            try:
                sock.connect(a[-1])
            except OSError as e:
                import errno

                if e.errno != errno.EINPROGRESS:
                    raise
            if tls:
                if ssl is None:
                    import ssl as m

                    ssl = m.SSLContext(m.PROTOCOL_TLS_CLIENT)
                sock = ssl.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
                sock.setblocking(False)
            s = asyncio.StreamReader(sock)  # (MicroPython's Stream reads and writes; typeshed's only reads)
            s.write(req)  # type: ignore[attr-defined]  # (TLS: the handshake runs inside this write's drain)
            await asyncio.wait_for_ms(s.drain(), self.timeout_ms)  # type: ignore[attr-defined]
            # the reply's head (the first frames may follow in the same read: they stay in the buffer)
            t = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            n = 0
            end = -1
            while end < 0:
                if n == len(buf):
                    raise WSError("ws: reply head too large")
                k = time.ticks_diff(t, time.ticks_ms())
                if k <= 0:
                    raise OSError("ws: handshake timeout")
                try:
                    k = await asyncio.wait_for_ms(s.readinto(mv[n:]), k)
                except asyncio.TimeoutError:
                    continue
                if k == 0:
                    raise OSError("ws: closed in handshake")
                if k:
                    n += k
                    end = buf.find(b"\r\n\r\n", 0, n)
            try:
                lines = str(mv[:end], "utf-8").split("\r\n")
                k = lines[0].split(" ")
                got = len(k) > 1 and k[0].startswith("HTTP/1.") and k[1].isdigit()
            except Exception:  # not UTF-8
                got = False
            if not got:
                raise WSError("ws: bad reply")
            if k[1] != "101":
                raise WSError("ws: http " + k[1], int(k[1]))
            got = 0  # bits: upgrade, connection, accept, protocol
            for k in lines[1:]:
                k, _, v = k.partition(":")
                k = k.strip().lower()
                v = v.strip()
                if k == "upgrade" and v.lower() == "websocket":
                    got |= 1
                elif k == "connection" and "upgrade" in v.lower():
                    got |= 2
                elif k == "sec-websocket-accept":
                    if v != accept_key(key):
                        raise WSError("ws: wrong accept key")
                    got |= 4
                elif k == "sec-websocket-protocol":
                    if v != protocol:
                        raise WSError("ws: wrong subprotocol")
                    got |= 8
                elif k == "sec-websocket-extensions":
                    raise WSError("ws: extension not asked for")
            if got & 7 != 7:
                raise WSError("ws: not an upgrade")
            if protocol and not got & 8:
                raise WSError("ws: subprotocol not accepted")
        except BaseException as x:  # (a CancelledError too: the socket is ours to close)
            if sock:
                sock.close()
            if isinstance(x, asyncio.TimeoutError):
                raise OSError("ws: timeout")
            raise
        self._in = end + 4
        self._end = n
        self._msg = self._op = 0
        self._done = self._closing = False
        self._ask_t = None  # when we sent a ping or our close: an answer is due within timeout_ms
        self._rx_t = time.ticks_ms()
        self.close_code = 0
        self._sock = sock
        self._s = s

    async def send(self, data, op=TEXT):
        # One message in one frame: data a str (sent as UTF-8) or bytes-like; op TEXT or BINARY (the
        # control frames go through here too). OSError when the connection is not open (or closing) or
        # the write fails or times out (the connection is then dropped: a frame may be half out).
        import os

        src = memoryview(data)  # (MicroPython: a str too, without a copy)
        n = len(src)
        key = os.urandom(4)
        tx = self._tx
        while self._wbusy:
            await self._wfree.wait()
        s = self._s
        if s is None or self._closing:
            raise OSError("ws: not open")
        if op == CLOSE:
            self._closing = True  # no data frame after it
            self._ask_t = time.ticks_ms()  # the server's close is due from now
        self._wbusy = True
        try:
            i = head(tx, op, n, key)
            j = 0
            mv = memoryview(tx)
            while True:
                k = min(n - j, len(tx) - i)
                mask(tx, i, src, j, k, key, j)
                s.write(mv[: i + k])  # (asyncio's Stream writes at once what the socket takes)
                if s.out_buf:  # the rest is copied there: wait until the socket has taken it
                    await asyncio.wait_for_ms(s.drain(), self.timeout_ms)
                j += k
                i = 0
                if j >= n:
                    break
        except BaseException as e:  # timeout, reset, or cancelled with a frame half out: drop the connection
            self._drop("ws: write failed")
            raise OSError(self.last_error) if isinstance(e, asyncio.TimeoutError) else e
        finally:
            self._wbusy = False
            self._wfree.set()
            self._wfree.clear()  # (woken writers are scheduled already)
        if op < 8:
            self.tx += 1

    async def recv(self):
        # The next data message: a memoryview into the receive buffer, valid until the next recv() (its
        # kind in self.opcode), or None once the connection has ended (close_code and last_error say how).
        # Answers pings, keeps the connection alive, completes the close handshake. One task at a time.
        if self._s is None:
            return None
        self._reading = True
        try:
            m = await self._recv()
            if m is None:
                self._drop("")
            return m
        except Exception as e:  # OSError from the socket (reset, closed by a failed write), MemoryError
            self._drop("ws: " + (str(e) or type(e).__name__))
        finally:
            self._reading = False

    async def _recv(self):
        buf = self._buf
        mv = self._mv
        if self._done:  # the last message has been handed out: its space is free again
            self._done = False
            self._msg = 0
        while True:
            h, n = frame_len(buf, self._in, self._end)
            if not h:
                if not await self._fill(self._end > self._in or self._op):
                    return None
                continue
            b = buf[self._in]
            op = b & 15
            why = 0
            if b & 0x70 or buf[self._in + 1] & 0x80:
                why = 1002  # reserved bits (no extension was agreed), or a masked frame from the server
            elif op >= 8:
                if op > 10 or n > 125 or not b & 0x80 or op == CLOSE and n == 1:
                    why = 1002
            elif op > 2 or (op == 0) != (self._op != 0):
                why = 1002  # not a data opcode; a continuation without a start, or a start inside a message
            elif self._msg + n > self.max_msg:
                why = 1009
            if why:  # fail the connection: a close frame with the code, then wait for the server to end it
                self.last_error = "ws: message too big" if why == 1009 else "ws: protocol error"
                self.close_code = why
                try:
                    await self.send(why.to_bytes(2, "big"), CLOSE)
                except OSError:
                    pass
                await self._drain(self.timeout_ms)
                return None
            # the payload goes right after the message gathered so far
            i = self._in + h
            k = self._end - i
            m = self._msg
            if i != m:
                mv[m : m + k] = mv[i : self._end]
            self._in = m
            self._end = m + k
            while self._end - m < n:
                if not await self._fill(True):
                    return None
            if op < 8:
                if op:
                    self._op = op
                m += n
                self._msg = self._in = m
                if b & 0x80:
                    op = self._op
                    self._op = 0
                    if self._closing:  # data after our close frame is dropped
                        self._msg = 0
                        continue
                    self.opcode = op
                    self._done = True
                    self.rx += 1
                    return mv[:m]
                continue
            self._in = m + n  # a control frame: its space is used again by the next payload
            if op == PING and not self._closing:
                await self.send(mv[m : m + n], PONG)
            elif op == CLOSE:
                k = buf[m] << 8 | buf[m + 1] if n else 1005
                self.close_code = k
                if not self._closing:  # echo it (its code and reason; none when it had none)
                    try:
                        await self.send(mv[m : m + n], CLOSE)
                    except OSError:
                        pass
                await self._drain(min(self.timeout_ms, 250))  # (a TLS server may wait for us to close)
                return None

    async def _fill(self, busy):
        # reads more into the buffer; False once the connection has ended (EOF, or silence: see the top).
        # busy: a frame or a message is under way, the rest is due within timeout_ms
        buf = self._buf
        if self._end == len(buf):  # room after the message so far (there always is some: see the checks)
            k = self._end - self._in
            self._mv[self._msg : self._msg + k] = self._mv[self._in : self._end]
            self._in = self._msg
            self._end = self._msg + k
        while True:
            now = time.ticks_ms()
            t = self.timeout_ms - time.ticks_diff(now, self._rx_t)
            if self._ask_t is not None:
                t = self.timeout_ms - time.ticks_diff(now, self._ask_t)
            elif not busy and not self._closing:
                t = 60000
                if self.ping_ms:
                    t = self.ping_ms - time.ticks_diff(now, self._rx_t)
                    if t <= 0:
                        await self.send(b"", PING)
                        self.pings += 1
                        self._ask_t = time.ticks_ms()
                        continue
            if t <= 0:
                self.last_error = "ws: no answer"
                return False
            k = self._sock.readinto(self._mv[self._end :])  # what is there already (None: nothing)
            if k is None:
                try:
                    k = await asyncio.wait_for_ms(self._s.readinto(self._mv[self._end :]), t)
                except asyncio.TimeoutError:
                    continue
            if k == 0:
                if not self._closing:
                    self.last_error = "ws: connection lost"
                return False
            if k:
                self._end += k
                self._rx_t = time.ticks_ms()
                self._ask_t = None
                return True

    async def _drain(self, ms):
        # after the close frames: read and drop until the server closes the connection, ms at most
        # (closing with unread input would make the kernel send a reset, which can destroy our close frame)
        t = time.ticks_add(time.ticks_ms(), ms)
        try:
            while True:
                k = time.ticks_diff(t, time.ticks_ms())
                if k <= 0 or await asyncio.wait_for_ms(self._s.readinto(self._mv), k) == 0:
                    break
        except Exception:
            pass

    def _drop(self, why):
        if self._sock:
            self._sock.close()
        self._sock = self._s = None
        if why:
            self.last_error = why
        if not self.close_code:
            self.close_code = 1006

    async def close(self, code=1000):
        # the close handshake: our close frame with code, the server's answer awaited (by the recv() task
        # if one is running, else here: data still coming is dropped), then the connection closed;
        # 2 * timeout_ms at most
        if self._s is None:
            return
        self.close_code = code
        try:
            await self.send(code.to_bytes(2, "big"), CLOSE)
        except OSError:
            pass
        if self._reading:
            t = time.ticks_add(time.ticks_ms(), 2 * self.timeout_ms)
            while self._s and time.ticks_diff(t, time.ticks_ms()) > 0:
                await asyncio.sleep_ms(10)
        elif self._s:
            self._reading = True
            try:
                await self._recv()
            except Exception:
                pass
            self._reading = False
        self._drop("")
