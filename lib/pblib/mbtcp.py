# mbtcp: an asyncio Modbus TCP server (MicroPython, ESP32-sized heap).
#
# Interface:
#   srv = Server(handler, max_clients=4, idle_ms=60000, frame_ms=2000, rate=20)
#   await srv.start(host, port, unit, backlog=4)  # once per port; unit: the port's own device
#   await srv.close()                             # listeners and connections
#   counters: srv.requests (frames answered, exceptions included), exceptions
#   (exception replies), refused (connections over max_clients), malformed
#   (connections closed for a bad or truncated frame), timeouts (a frame or a
#   reply not through within frame_ms), idle (connections closed after idle_ms
#   without a request), throttled (requests held back by the rate budget),
#   dropped (connections the accept loop could not set up: no heap, peer gone),
#   shed (connections closed at once because admit said no).
#   srv.admit: None or a callable asked before a connection is taken (the
#   app's heap check); False closes it at once (counted: shed).
#
# handler: async def handler(unit, fn, addr, count, data, out) -> 0 or an exception code
#   unit: the request's unit id 1..247; 0 and 255 mean the port's own device
#     and are passed as `unit` of start(); 248..254 get exception 10 (gateway
#     path unavailable) without the handler;
#   fn 3: count 1..125; out: memoryview of the reply's 2*count data bytes, to be
#     filled big-endian; data None;
#   fn 6: count 1; data: memoryview of the 2 value bytes; out None;
#   fn 16: count 1..123; data: memoryview of the 2*count register bytes; out None;
#   returns 0 (the normal reply; 6 and 16 echo the request, as the protocol
#   says) or an exception code: 1 illegal function, 2 illegal data address,
#   3 illegal data value, 4 server device failure, 6 busy, 10 gateway path
#   unavailable, 11 gateway target failed to respond. A handler that raises (or
#   returns no int) gives exception 4. The handler must bound its own awaits.
#   data/out are valid until the handler returns.
#
# The server answers by itself: 1 for any other function code, 3 for a count
# out of range or a byte count that is not 2*count (fn 16), 2 when addr +
# count passes 65536. It closes the connection (malformed) when the MBAP
# header is bad (protocol id not 0, length not 2..254), the length does not
# fit the function (3 and 6: exactly 12 bytes; 16: 13 + its byte count) or the
# peer closes in the middle of a frame.
#
# Limits: at most max_clients connections over all ports; one more is closed
# at once (refused) — after up to 20 ms of waiting for a slot being released,
# as a client that closes after an error and reconnects (evcc does so) may
# find its old connection still closing. A connection is closed after idle_ms
# without a request; once a frame's first byte is in, the rest must arrive
# within frame_ms, and the reply must be taken within frame_ms. Requests on one
# connection are answered in order, one at a time; each waits in asyncio's I/O
# queue first, so a client that pipelines cannot keep the loop from other
# tasks. rate > 0: at most `rate` requests per second and connection; more wait
# for the next second (counted: throttled).
#
# RAM: one bytearray(260) per slot, allocated in Server() and kept: a frame
# is read into it (readinto straight from the socket), the reply is built in
# place and written from it. No Stream objects and no per-request coroutine
# objects of our own: the connection is a generator that waits in asyncio's
# I/O queue itself (as httpd's accept loop does). Per request only the
# handler's coroutine and the memoryview of its data are allocated. Deadlines
# are not wait_for_ms (two tasks per await) but one watchdog task per server
# that cancels the connections past theirs. Few functions, docs in comments:
# every function costs heap when loaded as .mpy.
#
# The pure parts (frame_len, check, reply) also run under CPython; Server
# needs MicroPython's asyncio.
import asyncio
import time

from micropython import const

_SIZE = const(260)  # the largest frame: 7 (MBAP) + 253 (PDU)
# slot states (Server._st)
_IDLE = const(1)  # waiting for a request: idle_ms
_BUSY = const(2)  # in a frame or writing its reply: frame_ms
_HOLD = const(3)  # in the handler or the rate wait: no deadline


def frame_len(b):
    # b[:7]: an MBAP header -> the whole frame's length (7 + PDU), 0 if malformed
    k = b[4] << 8 | b[5]  # unit id + PDU
    if b[2] or b[3] or k < 2 or k > 254:
        return 0
    return k + 6


def check(b, n):
    # b[:n]: a whole frame (n = frame_len(b)) -> 0: hand it to the handler, an
    # exception code, or -1: malformed (its length does not fit its function)
    fn = b[7]
    if fn == 3 or fn == 6:
        if n != 12:
            return -1
    elif fn == 16:
        if n < 13 or b[12] != n - 13:
            return -1
    if 247 < b[6] < 255:
        return 10  # no such path behind this gateway
    if fn != 3 and fn != 6 and fn != 16:
        return 1
    k = 1 if fn == 6 else b[10] << 8 | b[11]  # register count
    if k < 1 or k > (125 if fn == 3 else 123) or fn == 16 and b[12] != 2 * k:
        return 3
    if (b[8] << 8 | b[9]) + k > 65536:
        return 2
    return 0


def reply(b, code, count):
    # the request frame in b becomes its reply, in place -> its length. count:
    # the request's register count (fn 3: the data b[9:9 + 2 * count] is in
    # place already, over the request's address and count)
    b[4] = 0
    if code:
        b[5] = 3
        b[7] |= 0x80
        b[8] = code
        return 9
    if b[7] == 3:
        b[5] = 2 * count + 3
        b[8] = 2 * count
        return 2 * count + 9
    b[5] = 6  # 6 and 16: the first 12 bytes of the request
    return 12


class Server:
    def __init__(self, handler, max_clients=4, idle_ms=60000, frame_ms=2000, rate=20):
        self.handler = handler  # looked up per request: may be set later
        self.idle_ms = idle_ms
        self.frame_ms = frame_ms
        self.rate = rate
        # the watchdog's period: a deadline is met within a quarter of the shortest limit
        self._tick = max(10, min(250, min(idle_ms, frame_ms) // 4))
        self._bufs = [bytearray(_SIZE) for _ in range(max_clients)]
        self._st = bytearray(max_clients)  # 0 free, _IDLE, _BUSY, _HOLD
        self._dl: list = [-1] * max_clients  # deadline (ticks_ms) or -1
        self._task: list = [None] * max_clients
        self._lsn = []  # listening sockets
        self._acc = []  # their accept tasks
        self._wd = None  # the watchdog task
        self.admit = None
        self.shed = 0
        self.requests = self.exceptions = self.refused = self.malformed = 0
        self.timeouts = self.idle = self.throttled = self.dropped = 0

    async def start(self, host, port, unit, backlog=4):
        # listen on host:port; unit ids 0 and 255 there mean `unit`
        import socket

        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(socket.getaddrinfo(host, port)[0][-1])
            s.listen(backlog)
            s.setblocking(False)
        except Exception:
            s.close()
            raise
        self._lsn.append(s)
        self._acc.append(asyncio.create_task(self._accept(s, unit)))
        if not self._wd:
            self._wd = asyncio.create_task(self._watch())

    async def close(self):
        for t in self._acc:
            t.cancel()
        for s in self._lsn:
            s.close()
        self._acc = []
        self._lsn = []
        if self._wd:
            self._wd.cancel()
            self._wd = None
        me = asyncio.current_task()
        for t in self._task:
            if t and t is not me:
                t.cancel()
        for _ in range(50):  # their finally clauses run at once
            if not any(self._st):
                break
            await asyncio.sleep_ms(1)

    def _accept(self, s, unit):
        # a loop that a full heap cannot end (httpd.Server._accept says why):
        # a connection that cannot be set up is dropped, the loop goes on. A
        # generator that waits for the socket in asyncio's I/O queue.
        import sys

        core = sys.modules["asyncio.core"]  # its I/O queue and sleep_ms, as a generator uses them
        q = core._io_queue
        st = self._st
        while True:
            yield q.queue_read(s)
            k = None
            i = -1
            try:
                k, a = s.accept()
                if self.admit and not self.admit():
                    self.shed += 1
                    continue  # (finally closes it)
                for j in range(11):
                    if j:  # a slot may be on its way back: ~20 ms at most
                        yield from core.sleep_ms(2)
                    for x in range(len(st)):
                        if not st[x]:
                            i = x
                            break
                    if i >= 0:
                        break
                if i < 0:
                    self.refused += 1
                else:
                    k.setblocking(False)
                    try:  # IPPROTO_TCP, TCP_NODELAY (6, 1 in lwIP and Linux; the unix port names neither):
                        k.setsockopt(6, 1, 1)  # pipelined replies go out at once, not after the peer's delayed ACK
                    except OSError:
                        pass
                    st[i] = _IDLE
                    self._task[i] = asyncio.create_task(self._conn(k, i, unit))
                    k = None  # the connection's now
            except Exception:  # MemoryError, or a peer already gone (OSError)
                self.dropped += 1
                if i >= 0:
                    st[i] = 0
            finally:
                if k:
                    k.close()

    async def _watch(self):
        # cancels every connection past its deadline (its finally closes it)
        st = self._st
        dl = self._dl
        while True:
            await asyncio.sleep_ms(self._tick)
            try:
                now = time.ticks_ms()
                for i in range(len(st)):
                    d = dl[i]
                    if st[i] and st[i] != _HOLD and d >= 0 and time.ticks_diff(now, d) >= 0:
                        dl[i] = -1
                        if st[i] == _IDLE:
                            self.idle += 1
                        else:
                            self.timeouts += 1
                        self._task[i].cancel()
            except Exception:  # nothing here may end the watchdog
                pass

    def _conn(self, s, i, unit):
        # one client on slot i: read a frame, answer it, again. A generator
        # that waits in asyncio's I/O queue itself (see the RAM note above).
        import sys

        core = sys.modules["asyncio.core"]
        q = core._io_queue
        b = self._bufs[i]
        mv = memoryview(b)
        m7 = mv[7:]
        st = self._st
        dl = self._dl
        t0 = time.ticks_ms()  # the rate budget's second: its start and its requests
        used = 0
        try:
            while True:
                st[i] = _IDLE
                dl[i] = time.ticks_add(time.ticks_ms(), self.idle_ms)
                n = 0
                want = 7
                r = 0
                while n < want:
                    # the first read of a request always waits in the I/O
                    # queue (the other tasks' turn); later ones only when the
                    # bytes are not there yet
                    if not n or r is None:
                        yield q.queue_read(s)
                    if not n:
                        r = s.readinto(b, 7)
                    elif n == 7:
                        r = s.readinto(m7, want - 7)
                    else:
                        r = s.readinto(mv[n:want])
                    if r == 0:  # the peer closed (mid-frame: truncated)
                        if n:
                            self.malformed += 1
                        return
                    if r:
                        if not n:
                            st[i] = _BUSY
                            dl[i] = time.ticks_add(time.ticks_ms(), self.frame_ms)
                        n += r
                        if want == 7 and n == 7:
                            want = frame_len(b)
                            if not want:
                                self.malformed += 1
                                return
                code = check(b, n)
                if code < 0:
                    self.malformed += 1
                    return
                if self.rate:
                    now = time.ticks_ms()
                    if time.ticks_diff(now, t0) >= 1000:
                        t0 = now
                        used = 0
                    used += 1
                    if used > self.rate:
                        self.throttled += 1
                        st[i] = _HOLD
                        yield from core.sleep_ms(1000 - time.ticks_diff(now, t0))
                        t0 = time.ticks_ms()
                        used = 1
                count = b[10] << 8 | b[11]
                if not code:
                    st[i] = _HOLD
                    u = b[6]
                    if u == 0 or u == 255:
                        u = unit
                    fn = b[7]
                    a = b[8] << 8 | b[9]
                    try:
                        if fn == 3:
                            code = yield from self.handler(u, 3, a, count, None, mv[9 : 9 + 2 * count])
                        elif fn == 6:
                            code = yield from self.handler(u, 6, a, 1, mv[10:12], None)
                        else:
                            code = yield from self.handler(u, 16, a, count, mv[13:n], None)
                        if type(code) is not int or code < 0 or code > 255:
                            code = 4
                    except Exception as e:
                        if not isinstance(e, MemoryError):
                            sys.print_exception(e)
                        code = 4
                self.requests += 1
                if code:
                    self.exceptions += 1
                n = reply(b, code, count)
                st[i] = _BUSY
                dl[i] = time.ticks_add(time.ticks_ms(), self.frame_ms)
                off = 0
                while off < n:
                    r = s.write(b, off, n - off)
                    if r:
                        off += r
                    else:
                        yield q.queue_write(s)
        except Exception as e:  # a peer gone (OSError) or worse: this connection only
            if not isinstance(e, (OSError, MemoryError)):
                sys.print_exception(e)
        finally:
            dl[i] = -1
            self._task[i] = None
            st[i] = 0
            s.close()
