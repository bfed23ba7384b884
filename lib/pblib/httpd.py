# httpd: a tiny asyncio HTTP/1.1 server for the /cnf API (MicroPython, ESP32-sized heap).
#
# One request per connection (Connection: close), JSON replies, hard limits on
# everything a client controls:
# - at most max_conns connections at once, each with a head buffer
#   (bytearray(max_head): prealloc of them allocated once in Server() and
#   kept, the others only while in use); one more gets 503 "too many
#   connections" (or "out of memory" when no buffer fits the heap) and is
#   closed; the server's own accept loop drops a connection whose objects do
#   not fit the heap (counted: dropped) and goes on;
# - request line + headers are read with readinto into that buffer, never with
#   readline: more than max_head bytes or 32 header lines -> 413 "request
#   header too large";
# - stream (a callable of the app, optional): stream(path, raw query) True
#   for a POST -> its body is not read (nor max_body applied): req.body is
#   None and req.stream a Body the handler reads itself, a piece at a time
#   through the connection's head buffer (an update bundle: never whole in
#   RAM); each read bounded by read_timeout_ms; what the handler left unread
#   is read and dropped (up to read_timeout_ms) before the reply goes out;
# - the body (Content-Length only, at most max_body) is read into one
#   bytearray of exactly that size — or, up to body_buf bytes, into the one
#   body buffer kept for good (a busy heap often has no block that large); head and body must arrive within
#   read_timeout_ms of the accept, else the connection is dropped (stats:
#   timeouts); every write is bounded by the same time;
# - a handler's HTTPError becomes that status with its message as a JSON
#   string; any other handler exception becomes 500 "internal error";
# - when every slot is taken, the connection that has been reading its head
#   longest (a slow client, at least SLOW_MS) is dropped for the new one
#   (stats: evicted): trickling heads cannot keep others out;
# - at most max_conns + 4 connections have a task at all: a flood's others
#   are closed at accept (stats: dropped); vip (a callable of the app: the
#   peer's address -> bool, the clients the admin logged in from) lets a
#   client in past that, its connection waits first for a slot, and while
#   it is served no other connection is accepted (its request gets the heap);
# - admin_slot: readers (requests without an Authorization header) are
#   served in at most max_conns - 1 slots at once, the last one is kept for
#   the admin (one more reader waits up to 100 ms for its turn, then gets 503
#   "too many connections");
# - admit (a callable of the app, optional): asked before a connection is
#   served; False -> 503 "out of memory" (the app keeps a reserve of heap for
#   its own tasks: requests are shed before they run short) — at once, or,
#   when a kept head buffer is free, after the head unless it carries
#   credentials (the admin gets in).
#
# handler: async def handler(req) -> (status, obj) or (status, obj, [(name, value), ...]),
# looked up per request (Server(None, ...) and `server.handler = ...` later is fine):
# - obj JSON-able: sent as compact JSON with a Content-Length;
# - obj a generator (anything with .send) of str/bytes pieces of one JSON text:
#   Content-Type: application/json, Transfer-Encoding: chunked (a piece a
#   chunk; HTTP/1.0 clients: no length, the body ends when the connection
#   closes), each piece written and drained before the next is asked for. Its
#   first piece is taken before the head goes out, so an exception up to there
#   is still a normal error reply (an empty generator is a 500); one raised
#   later closes the connection without the last chunk: the client sees an
#   incomplete reply, never a short complete one;
# - obj a File: the file, read through the connection's head buffer (a gzip
#   one: with an ETag, and a 304 without body when If-None-Match is that).
#
# RAM: MicroPython keeps a loaded .mpy's code on the heap (tools/bench/modmem.py
# measures it, ~6.5 KB here): every function or class costs ~100-250 bytes
# besides its bytecode, every str/bytes constant longer than 10 characters 64+
# bytes (shorter str constants are qstrs), every module global a dict slot.
# Hence few, long functions, the texts in one string, no bytes literals, and
# binascii/sys imported where used. Docs are comments, not docstrings.
# Client text is never walked character by character as str (see parse_head).
#
# The pure parts (HTTPError, File, Request, parse_head, unquote, parse_query)
# also run under CPython; Server needs MicroPython's asyncio.
import asyncio
import json
import time

from micropython import const

_SLOW_MS = const(250)  # a head still being read after this long may be dropped for a new connection
_MAX_DEPTH = const(32)  # a JSON body nested deeper is refused (413) before it is parsed

# reason phrases of the statuses the server and the firmware send (others, 200
# too, get "OK" below 400, else "Error"), then the messages of the server's own
# error replies, "|"-separated: _read and _conn refer to them by
# status << 4 | index
_TEXTS = (
    "304 Not Modified\n400 Bad Request\n401 Unauthorized\n403 Forbidden\n404 Not Found\n405 Method Not Allowed\n"
    "411 Length Required\n413 Payload Too Large\n429 Too Many Requests\n500 Internal Server Error\n"
    "502 Bad Gateway\n503 Service Unavailable\n507 Insufficient Storage\n"
    "|bad request|request header too large|method not allowed|bad percent-encoding|length required"
    "|bad content-length|request body too large|truncated body|too many connections|out of memory"
)

# the whole reply when the heap has no room even for a reply's head: a
# constant, written as it is (no allocation), so a client never gets an empty
# answer from a full heap
_OOM = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 15\r\n"
        b'Connection: close\r\n\r\n"out of memory"')


class HTTPError(Exception):
    # raise HTTPError(400, "bad count") from a handler
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class File:
    # a reply body streamed from a file in buffer-sized chunks (static assets).
    # gzip: the file is gzip data, sent as Content-Encoding: gzip with its
    # trailer (CRC-32 and size of the content) as ETag; match: the request's
    # If-None-Match, a 304 without body when it is that ETag
    def __init__(self, path, content_type, gzip=False, max_age=3600, match=None):
        self.path = path
        self.content_type = content_type
        self.gzip = gzip
        self.max_age = max_age
        self.match = match
        self.head = ""  # its head lines, once opened


class Body:
    # a streamed request body (Server.stream): read() -> the next piece, a
    # memoryview into the connection's head buffer valid until the next
    # read (no copy, no allocation); empty at the end; EOFError when the
    # client stops short of its Content-Length. left: bytes still to come.
    def __init__(self, r, w, buf, start, n, length, timeout, expect):
        self._r = r
        self._w = w
        self._mv = memoryview(buf)
        self._got = self._mv[start : start + n]  # what came with the head
        self.left = length
        self._t = timeout
        self._expect = expect

    async def read(self):
        mv = self._got
        if mv is not None:
            self._got = None
            if len(mv):
                self.left -= len(mv)
                return mv
        if self.left <= 0:
            return self._mv[:0]
        if self._expect:  # 100-continue: the body is wanted now
            self._expect = False
            self._w.write("HTTP/1.1 100 Continue\r\n\r\n".encode())
            await asyncio.wait_for_ms(self._w.drain(), self._t)
        k = await asyncio.wait_for_ms(self._r.readinto(self._mv[: min(self.left, len(self._mv))]), self._t)
        if not k:
            raise EOFError
        self.left -= k
        return self._mv[:k]


class Request:
    def __init__(self, method, path, query, headers, body, client):
        self.method = method
        self.path = path  # percent-decoded, without the query
        self.query = query  # str -> str, first occurrence wins
        self.headers = headers  # lowercase name -> str
        self.body = body  # bytes-like (from the server: a bytearray); None: streamed
        self.stream = None  # a Body (Server.stream)
        self.client = client  # peer IP or ""
        self.http10 = False  # an HTTP/1.0 request (no chunked replies)

    def auth(self):
        # (user, password) from "Authorization: Basic <base64>", or None if
        # absent or malformed (only canonical base64 of UTF-8 "user:password")
        try:
            import binascii

            t, p = self.headers["authorization"].split()
            p = p.encode()
            s = binascii.a2b_base64(p)
            if t.lower() == "basic" and binascii.b2a_base64(s)[:-1] == p:
                p, s, t = str(s, "utf-8").partition(":")
                if s:
                    return p, t
        except Exception:  # none, not two words, not base64, not UTF-8
            pass

    def json(self):
        if _too_deep(self.body, _MAX_DEPTH):
            # (a few hundred bytes of "[[[[" are thousands of objects: a
            # small body must not take the heap)
            raise HTTPError(413, _TEXTS.split("|")[7])
        try:
            return json.loads(self.body)
        except ValueError:
            raise HTTPError(400, "bad json")
        except Exception:
            # too big or too deep to parse here (MicroPython runs out of heap,
            # CPython raises RecursionError)
            raise HTTPError(413, _TEXTS.split("|")[7])


# ---- pure helpers (CPython and MicroPython) ----


def _too_deep(b, limit):
    # JSON nested more than limit arrays/objects deep (brackets in strings
    # do not count); b: bytes or a memoryview (~1 ms for 8 KB on the host)
    if b is None or len(b) <= 2 * limit:
        return False
    d = 0
    q = e = False
    for c in b:
        if q:
            if e:
                e = False
            elif c == 92:  # backslash
                e = True
            elif c == 34:
                q = False
        elif c == 34:
            q = True
        elif c == 91 or c == 123:
            d += 1
            if d > limit:
                return True
        elif c == 93 or c == 125:
            d -= 1
    return False


def parse_head(text):
    # "GET /p?q HTTP/1.1\r\nName: value\r\n..." (bare LF line ends too, blank
    # lines skipped) -> (method, path, query, {lowercase name: value}); path
    # and query still percent-encoded (query "" if none), repeated headers
    # joined with ", "; ValueError if malformed: a method not all letters, a
    # target not starting with "/", a target or header name with a control,
    # space or non-ASCII character, a header value with a control character
    # other than tab.
    # Characters are checked as bytes: on MicroPython each character taken
    # out of a str (by iterating or indexing it) becomes a qstr for good, a
    # client could fill the heap with them.
    lines = text.split("\n")
    p = lines[0].rstrip("\r").split(" ")
    b = p[1].encode() if len(p) == 3 else ""
    if (not b or b[0] != 47 or min(b) <= 32 or max(b) >= 127  # 47: "/"
            or p[2] != "HTTP/1.1" and p[2] != "HTTP/1.0" or not p[0].isalpha()):
        raise ValueError
    h = {}
    for s in lines[1:]:
        s = s.rstrip("\r")
        if s:
            k, c, v = s.partition(":")
            b = k.encode()
            if (not c or not b or min(b) <= 32 or max(b) >= 127
                    or min(s.replace("\t", " ").encode()) < 32 or "\x7f" in s):
                raise ValueError
            k = k.lower()
            v = v.strip()
            h[k] = h[k] + ", " + v if k in h else v
    s = p[1].partition("?")
    return p[0], s[0], s[2], h


def unquote(s):
    # percent-decode s as UTF-8; ValueError on bad %xx
    if "%" not in s:
        return s
    import binascii

    p = s.split("%")
    b = bytearray(p[0].encode())
    try:
        for i in range(1, len(p)):
            s = p[i]
            b += binascii.unhexlify(s[:2] if len(s) > 1 else "x")  # ValueError unless 2 hex digits
            b += s[2:].encode()
        return str(b, "utf-8")  # UnicodeError (a ValueError) if not UTF-8
    except ValueError:
        raise ValueError("percent")


def parse_query(qs):
    # "a=1&b=x+y" -> {"a": "1", "b": "x y"}; the first occurrence of a key
    # wins; a key without "=" gets ""; ValueError on bad percent-encoding (of
    # any part)
    d = {}
    for s in qs.replace("+", " ").split("&"):
        if s:
            k, _, s = s.partition("=")
            k = unquote(k)
            s = unquote(s)
            if k not in d:
                d[k] = s
    return d


def _open(f, status, hdrs):
    # a File reply: (status, f, headers, None, open file) — f.head set to its
    # head lines; a 304 (gzip ETag matching If-None-Match) without body;
    # 404 "not found" when there is no such file (or one too short for a gzip trailer)
    fh = None
    try:
        fh = open(f.path, "rb")
        n = fh.seek(0, 2)
        k = None
        if f.gzip:
            fh.seek(n - 8)
            k = '"%x"' % int.from_bytes(fh.read(8), "big")
        fh.seek(0)
        x = "Cache-Control: max-age=%d\r\n" % f.max_age
        if k:
            x += "Content-Encoding: gzip\r\nETag: %s\r\n" % k
            if k == f.match:  # 304: no body, no Content-Length (the head lines as hdrs)
                fh.close()
                return 304, f.content_type, x, None, None
        f.head = x
        return status, f, hdrs, None, fh
    except OSError:
        if fh:
            fh.close()
        return 404, "not found", None, None, None


def _ip(a):
    # the peer's address: lwIP gives (ip, port), the unix port a raw sockaddr_in
    return str(a[0]) if isinstance(a, tuple) else ".".join(map(str, a[4:8]))


# ---- the server (MicroPython asyncio) ----


class Server:
    def __init__(self, handler, max_conns=4, read_timeout_ms=3000, max_head=2048, max_body=8192, prealloc=2,
                 realm="httpd", admit=None, admin_slot=False, body_buf=0):
        # prealloc of the max_conns head buffers are allocated now, while the
        # heap is in one piece, and kept; the others only while in use
        self.handler = handler  # may be set later: it is looked up per request
        self.realm = realm  # of the WWW-Authenticate: Basic header every 401 carries
        self.timeout = read_timeout_ms
        self.max_body = max_body
        self._head = max_head
        self._free = max_conns - prealloc  # buffers that may still be allocated on demand
        self._keep = prealloc
        self._pool = []
        for _ in range(prealloc):
            self._pool.append(bytearray(max_head))
        self._tasks = []
        self._sock = self._task = None
        self._waiting = 0  # connections waiting for a buffer being released
        self._waiters = 2  # at most (each waiting one holds its objects on the heap)
        self._max = max_conns if admin_slot else 0x7FFF
        self.admit = admit
        self._heads = []  # [task, ticks_ms] of the connections reading their head, oldest first
        self._readers = 0  # requests without credentials being served
        self._claims = 0  # dropped heads' buffers promised to new connections
        self._sink = bytearray(64)  # what refused connections send is read into this and dropped
        self._body = bytearray(body_buf)  # kept for one request body at a time (body_buf bytes at most)
        self._body_used = None  # the head buffer of the connection that has it
        self.vip = None  # callable(peer ip) -> bool: a client to let in first (the app's admin)
        self.stream = None  # callable(path, raw query) -> bool: a POST body the handler reads (Body)
        self._vips = 0  # vip connections waiting for a slot
        self._vip_busy = 0  # vip connections being served: others are not accepted meanwhile
        self._live = 0  # connection tasks
        self._cap = max_conns + 4  # connection tasks at most (a vip's aside)
        # counters: requests handed to the handler, 4xx replies made by the
        # server itself, 503 "too many connections", slow clients dropped,
        # connections dropped at accept (no heap for them), slow heads dropped
        # for a new connection, connections shed (admit said no)
        self.requests = self.errors = self.refused = self.timeouts = self.dropped = self.evicted = 0
        self.shed = 0

    async def start(self, host, port, backlog=5):
        # asyncio.start_server's socket (its backlog too: more connections
        # waiting at once only raise the high-water mark of asyncio's I/O
        # queue and of _tasks, which never shrink), with our own accept loop
        import socket

        a = socket.getaddrinfo(host, port)[0][-1]
        s = socket.socket()
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(a)
        s.listen(backlog)
        self._sock = s
        self._task = asyncio.create_task(self._accept(s))

    def _accept(self, s):
        # asyncio.start_server's accept loop, but one that a full heap cannot
        # end: asyncio's task ends for good on a MemoryError while it sets up
        # a connection (then nothing would ever accept again, and the listening
        # socket, held by the dead task, keeps the port). Here that connection
        # alone is dropped (counted). A generator, like asyncio's own: it waits
        # for the socket through asyncio's I/O queue.
        import sys

        q = sys.modules["asyncio.core"]._io_queue
        while True:
            yield q.queue_read(s)
            k = None
            try:
                k, a = s.accept()
                v = self.vip is not None and self.vip(_ip(a))
                if (self._live >= self._cap or self._vip_busy) and not v:
                    # a flood: no task, no stream for more than the slots and
                    # their waiting room can use — closed at once (counted)
                    raise OSError
                if v and self.admit:
                    self.admit()  # (the app makes room: it collects when the heap is short)
                k.setblocking(False)
                for t in range(5 if v else 1):
                    try:
                        c = asyncio.StreamReader(k, {"peername": a})
                        asyncio.create_task(self._conn(c, c, v))
                        break
                    except MemoryError:
                        # the admin's connection: tried again 4 times, 20 ms
                        # apart (readers being served end and give their heap
                        # back; new connections wait in the backlog meanwhile)
                        c = None
                        if t == (4 if v else 0):
                            raise
                    yield from asyncio.sleep_ms(20)  # type: ignore[misc]  # (a generator task, as asyncio's own accept loop)
                self._live += 1
            except Exception as e:  # MemoryError, or a peer already gone (OSError)
                self.dropped += 1
                if k:
                    if isinstance(e, MemoryError):
                        self._refuse(k)
                    k.close()

    def live(self):
        """Connections being served now."""
        return self._live

    def _refuse(self, k):
        # the constant 503 on a connection that could not be set up, then what
        # the client sent read into the sink (closing with unread input makes
        # the kernel send RST, and the client would lose the reply); all
        # without waiting and without allocating
        try:
            k.setblocking(False)
            k.send(_OOM)
            for _ in range(64):
                if not k.readinto(self._sink):
                    break
        except Exception:
            pass

    async def close(self):
        if self._task:
            self._task.cancel()
            self._sock.close()
            self._task = None
        for t in self._tasks:
            t.cancel()
        for _ in range(50):  # their finally clauses run at once
            if not self._tasks:
                break
            await asyncio.sleep_ms(1)

    async def _conn(self, r, w, vip=False):
        # one connection: a head buffer (or a refusal), the request, the
        # handler, the reply; the buffer goes back to the pool at the end
        task = asyncio.current_task()
        buf = fh = obj = None
        reader = False
        try:
            self._tasks.append(task)
            why = 10  # out of memory
            low = self.admit is not None and not self.admit()
            if not low or vip:
                buf, why = await self._slot(vip)
                if buf and vip:
                    vip = 2  # (being served: see _vip_busy)
                    self._vip_busy += 1
            elif self._pool:
                buf = self._pool.pop()  # (a kept buffer costs no heap: the head says if it is the admin's)
            else:
                self.shed += 1
            if buf:
                head = [task, time.ticks_ms()]
                self._heads.append(head)
                try:
                    req = await asyncio.wait_for_ms(self._read(r, w, buf, 0), self.timeout)
                except MemoryError:
                    req = 503 << 4 | 10  # out of memory
                finally:
                    self._heads.remove(head)
                if req is None:  # the client went away
                    return
                if not isinstance(req, int) and "authorization" not in req.headers:
                    if low:
                        self.shed += 1
                        req = 503 << 4 | 10  # out of memory: only the admin gets in now
                    else:
                        for _ in range(0 if self._vip_busy else 20):  # wait up to 100 ms for a reader's turn
                            if self._readers < self._max - 1:
                                break
                            await asyncio.sleep_ms(5)
                        if self._readers >= self._max - 1:
                            req = 503 << 4 | 9  # the last slot is the admin's
                        else:
                            reader = True
                            self._readers += 1
            else:
                self.refused += 1
                req = 503 << 4 | why
            early = isinstance(req, int)
            if early:  # an error reply before the request was read in full
                status = req >> 4
                obj = _TEXTS.split("|")[req & 15]
                b = None
                hdrs = [("Allow", "GET, POST")] if status == 405 else None
                if status < 500:
                    self.errors += 1
            else:
                self.requests += 1
                if vip == 2 and not reader:  # (the admin's) the readers being served finish first (none starts now): the heap is its
                    for _ in range(200):
                        if not self._readers:
                            break
                        await asyncio.sleep_ms(5)
                status, obj, hdrs, b = await self._call(req)
                if req.stream and req.stream.left > 0:
                    # the rest of a streamed body the handler did not want (an
                    # error): read and dropped, bounded, so the client reads
                    # the reply instead of a reset
                    try:
                        t0 = time.ticks_ms()
                        while req.stream.left > 0 and time.ticks_diff(time.ticks_ms(), t0) < self.timeout:
                            await req.stream.read()
                    except Exception:
                        pass
            if isinstance(obj, File):
                status, obj, hdrs, b, fh = _open(obj, status, hdrs)
            await self._send(w, status, obj, hdrs, b, fh, buf, early or req.http10)
            if early:
                # read on for a moment: closing with unread input makes the
                # kernel send RST, and some clients then lose the reply. The
                # slot is free meanwhile (its buffer goes back now): what is
                # read goes into one small sink all such connections share
                self._give(buf)
                buf = None
                try:
                    await asyncio.wait_for_ms(self._read(r, w, self._sink, 1), 50)
                except asyncio.TimeoutError:
                    pass
        except asyncio.TimeoutError:
            self.timeouts += 1
        except Exception as e:  # a dead peer (OSError) or worse: drop this connection only
            # (a full heap, MemoryError, is no bug: the connection just ends)
            if not isinstance(e, (OSError, MemoryError)):
                import sys

                sys.print_exception(e)
        finally:
            if reader:
                self._readers -= 1
            if fh:
                fh.close()
            if hasattr(obj, "close"):  # a reply cut short: its generator's finally clauses run now
                try:
                    obj.close()
                except Exception:
                    pass
            # no yield between close and freeing the slot: a client that read
            # our reply to EOF finds its slot free when it reconnects
            try:
                await w.wait_closed()  # (MicroPython's Stream.close() does nothing)
            except Exception:
                pass
            if task in self._tasks:
                self._tasks.remove(task)
            self._live -= 1
            if vip == 2:
                self._vip_busy -= 1

            self._give(buf)

    def _give(self, buf):
        # a head buffer back: kept (prealloc of them), or let go (and the kept
        # body buffer with it, if its connection had it)
        if buf is not None and self._body_used is buf:
            self._body_used = None
        if buf:
            if len(self._pool) < self._keep:
                self._pool.append(buf)
            else:
                self._free += 1

    async def _slot(self, vip=False):
        # (head buffer or None, why not: 9 too many connections, 10 out of memory)
        buf, why = self._take()
        if buf:
            return buf, 0
        # every slot is taken. A client that reconnects at once may find its
        # last connection still closing: its buffer is back within a few ms,
        # so two connections may wait 10 ms for that. Then (or at once, while
        # they wait) the slowest head — reading for _SLOW_MS or more — is
        # dropped for this connection (trickling heads cannot keep others
        # out) and it waits up to 50 ms for that buffer; with no slow head to
        # drop, the others are refused at once (each waiting one holds its
        # objects on the heap). A vip (a client of the app's choice: the
        # admin's) always waits, up to a second, and nobody else takes a
        # buffer meanwhile.
        waiter = vip or self._waiting < self._waiters
        if vip:
            self._vips += 1
        elif waiter:
            self._waiting += 1
        claim = 0  # a dropped head's buffer is this connection's (no other takes it meanwhile)
        try:
            for i in range(200 if vip else 10):
                if not claim and (i == 2 or not waiter and i == 0):
                    if self._evict():
                        claim = 1
                        self._claims += 1
                    elif not waiter:
                        return None, why
                if i or waiter:
                    await asyncio.sleep_ms(5)
                buf, why = self._take(claim, vip)
                if buf:
                    return buf, 0
        finally:
            if vip:
                self._vips -= 1
            elif waiter:
                self._waiting -= 1
            if claim:
                self._claims -= 1
        return None, why

    def _evict(self):
        # drop the slowest head (reading for _SLOW_MS or more) for a new
        # connection; False if there is none
        for h in self._heads:  # oldest first
            if h[1] is not None and time.ticks_diff(time.ticks_ms(), h[1]) >= _SLOW_MS:
                h[0].cancel()
                h[1] = None  # (not chosen again while it ends)
                self.evicted += 1
                return True
        return False

    def _take(self, claim=0, vip=False):
        # a free head buffer now: a kept one, or a new one while fewer than
        # max_conns are out, but not one claimed by another connection (claim:
        # this connection has one) or while a vip waits (unless vip); (None,
        # 9 or 10) if none
        if self._vips and not vip:
            return None, 9
        free = self._claims - claim  # buffers coming back for others
        if len(self._pool) > free:
            return self._pool.pop(), 0
        if self._free - max(0, free - len(self._pool)) > 0:
            try:
                buf = bytearray(self._head)
                self._free -= 1
                return buf, 0
            except MemoryError:
                return None, 10  # out of memory: say so, it is not the connection cap
        return None, 9

    async def _call(self, req):
        # the handler's (status, obj, headers, first piece of the body): the
        # body is made now (a generator: its first piece), while an error is
        # still an error reply (HTTPError: its status, anything else 500)
        b = None
        try:
            a = await self.handler(req)
            obj = a[1]
            if hasattr(obj, "send"):
                b = next(obj)
            elif not isinstance(obj, File):
                b = json.dumps(obj, separators=(",", ":"))
                obj = None
            return a[0], obj, a[2] if len(a) > 2 else None, b
        except HTTPError as e:
            return e.status, e.message, e.headers, None
        except MemoryError:  # (the first piece of a reply, made here): no room now, no bug
            return 503, _TEXTS.split("|")[10], None, None
        except Exception as e:
            import sys

            sys.print_exception(e)
            return 500, "internal error", None, None

    async def _send(self, w, status, obj, hdrs, b, fh, buf, plain):
        # the reply: its head, then the pieces of its body: b, then from fh (a
        # file, read through buf) or obj (a generator: chunked unless plain);
        # obj a str with b None: an error message. Every write is bounded by
        # the read timeout.
        try:
            a, b, obj, fh = self._reply_head(status, obj, hdrs, b, fh, plain)
        except MemoryError:  # no room for the head: the constant reply instead
            a, b, obj, fh = _OOM, None, None, None
        chunked = obj is not None and not plain
        while a is not None:
            w.write(a)
            if w.out_buf:  # the socket did not take it all: wait for it, bounded
                await asyncio.wait_for_ms(w.drain(), self.timeout)
            else:
                await asyncio.sleep_ms(0)  # (others' turn between pieces; no task, no garbage)
            a = b
            b = None
            if a is None:
                if fh:
                    a = memoryview(buf)[: fh.readinto(buf)] or None
                elif obj:
                    a = next(obj, None)
                    if isinstance(a, str):
                        a = a.encode()
                    if chunked:  # a chunk: its size line, then it and its line end (no copy of it)
                        if not a:  # the end: the last (empty) chunk, nothing more to ask for
                            a = b"0\r\n\r\n"
                            obj = None
                        else:
                            w.write(b"%x\r\n" % len(a))
                            b = b"\r\n"

    def _reply_head(self, status, obj, hdrs, b, fh, plain):
        # the reply's head (with a small body or first piece in the same
        # segment): (head, rest of the first piece, generator, file)
        a = "application/json"
        x = ""  # head lines after Content-Length
        n = -1  # Content-Length: none for a generator
        if fh:
            n = fh.seek(0, 2)
            fh.seek(0)
            a = obj.content_type
            x = obj.head
            obj = None
        if b is None and not fh and status != 304:  # an error message
            b = json.dumps(obj, separators=(",", ":"))
            obj = None
        if isinstance(b, str):
            b = b.encode()
        if obj is None and not fh:
            n = len(b) if b else 0
        if status == 304:  # (obj: the file's content type, hdrs: its head lines)
            a = obj
            obj = None
            x = hdrs
            hdrs = None
        chunked = obj is not None and not plain
        if n >= 0:
            x = "Content-Length: %d\r\n" % n + x
        elif chunked:
            x = "Transfer-Encoding: chunked\r\n" + x
            b = b"%x\r\n%s\r\n" % (len(b), b) if b else b
        for k, v in hdrs or ():
            x += "%s: %s\r\n" % (k, v)
        if status == 401 and "www-" not in x.lower():
            x += 'WWW-Authenticate: Basic realm="%s"\r\n' % self.realm
        k = _TEXTS.find("%d " % status)
        k = _TEXTS[k : _TEXTS.find("\n", k)] if k >= 0 else "%d %s" % (status, "Error" if status >= 400 else "OK")
        a = ("HTTP/1.1 %s\r\nContent-Type: %s\r\n%sConnection: close\r\n\r\n" % (k, a, x)).encode()
        x = None
        if b and len(b) <= 1024:
            a += b  # a small body (or first piece) in one segment with the head
            b = None
        return a, b, obj, fh

    async def _read(self, r, w, buf, drain):
        # head and body -> Request, an error code (status << 4 | index of the
        # message in _TEXTS) for an error reply, or None when the client went
        # away without sending anything. drain: just read until EOF.
        mv = memoryview(buf)
        n = 0
        e = 0
        while e < 3:  # e: the end of the head, just past its first blank line
            if n >= len(buf):
                return 413 << 4 | 2  # request header too large
            try:
                k = await r.readinto(mv[n:])
            except OSError:  # the connection closed under us (evicted, or the server stopping):
                return None  # gone, as a client that left (never a task's unretrieved exception)
            if k == 0:
                return 400 << 4 | 1 if n else None  # bad request
            if k and not drain:  # (None: nothing to read after all)
                n += k
                e = buf.find("\n\r\n".encode(), 0, n) + 3  # 2: none
                k = buf.find("\n\n".encode(), 0, e if e > 2 else n)  # bare LF line ends
                if k >= 0:
                    e = k + 2
        try:
            k = str(mv[:e], "utf-8")
            # at most 32 header lines: a head of hundreds of tiny headers
            # needs a large header dict, which the heap may not have in one piece
            if k.count("\n") > 34:
                return 413 << 4 | 2  # request header too large
            method, path, qs, h = parse_head(k)
        except ValueError:
            return 400 << 4 | 1  # bad request
        if method != "GET" and method != "POST":
            return 405 << 4 | 3  # method not allowed
        if "transfer-encoding" in h:
            return 411 << 4 | 5  # length required
        k = h.get("content-length", "0")
        if len(k) > 9 or not k.isdigit():
            return 400 << 4 | 6  # bad content-length
        k = int(k)
        if self.stream and method == "POST" and self.stream(path, qs):
            try:
                path = unquote(path)
                req = Request(method, path, parse_query(qs), h, None, _ip(w.get_extra_info("peername")))
            except ValueError:
                return 400 << 4 | 4  # bad percent-encoding
            req.stream = Body(r, w, buf, e, min(n - e, k), k, self.timeout, "expect" in h)
            return req
        if k > self.max_body:
            return 413 << 4 | 7  # request body too large
        if k and k <= len(self._body) and not self._body_used:
            # the kept body buffer (a busy heap may have no block this large):
            # this connection's until it ends (_conn gives it back)
            self._body_used = buf
            body = memoryview(self._body)[:k]
        else:
            body = bytearray(k)
        n = min(n - e, k)
        body[:n] = mv[e : e + n]
        if n < k:
            if "expect" in h:  # 100-continue, the only expectation there is
                w.write("HTTP/1.1 100 Continue\r\n\r\n".encode())
                await w.drain()
            mv = memoryview(body)
            while n < k:
                e = await r.readinto(mv[n:])
                if e == 0:
                    return 400 << 4 | 8  # truncated body
                if e:
                    n += e
        try:  # the query, then a form body: the first occurrence of a name wins
            path = unquote(path)
            if "urlencoded" in h.get("content-type", "").lower():
                qs += "&" + str(body, "utf-8")
            qs = parse_query(qs)
        except ValueError:
            return 400 << 4 | 4  # bad percent-encoding
        req = Request(method, path, qs, h, body, _ip(w.get_extra_info("peername")))
        k = buf.find("\n".encode())  # the request line ends "HTTP/1.x\r\n" (or bare "\n")
        req.http10 = buf[k - 2 if buf[k - 1] == 13 else k - 1] == 48
        return req
