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
# - the body (Content-Length only, at most max_body) is read into one
#   bytearray of exactly that size; head and body must arrive within
#   read_timeout_ms of the accept, else the connection is dropped (stats:
#   timeouts); every write is bounded by the same time;
# - a handler's HTTPError becomes that status with its message as a JSON
#   string; any other handler exception becomes 500 "internal error".
#
# handler: async def handler(req) -> (status, obj) or (status, obj, [(name, value), ...]),
# looked up per request (Server(None, ...) and `server.handler = ...` later is fine):
# - obj JSON-able: sent as compact JSON with a Content-Length;
# - obj a generator (anything with .send) of str/bytes pieces of one JSON text:
#   Content-Type: application/json, no Content-Length (the body ends when the
#   connection closes), each piece written and drained before the next is
#   asked for. Its first piece is taken before the head goes out, so an
#   exception up to there is still a normal error reply (an empty generator is
#   a 500); one raised later just closes the connection (logged), the client
#   gets a truncated document;
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


class Request:
    def __init__(self, method, path, query, headers, body, client):
        self.method = method
        self.path = path  # percent-decoded, without the query
        self.query = query  # str -> str, first occurrence wins
        self.headers = headers  # lowercase name -> str
        self.body = body  # bytes-like (from the server: a bytearray)
        self.client = client  # peer IP or ""

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
        try:
            return json.loads(self.body)
        except ValueError:
            raise HTTPError(400, "bad json")
        except Exception:
            # too big or too deep to parse here (MicroPython runs out of heap,
            # CPython raises RecursionError)
            raise HTTPError(413, _TEXTS.split("|")[7])


# ---- pure helpers (CPython and MicroPython) ----


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


# ---- the server (MicroPython asyncio) ----


class Server:
    def __init__(self, handler, max_conns=4, read_timeout_ms=3000, max_head=2048, max_body=8192, prealloc=2):
        # prealloc of the max_conns head buffers are allocated now, while the
        # heap is in one piece, and kept; the others only while in use
        self.handler = handler  # may be set later: it is looked up per request
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
        self._waiting = 0  # a connection is waiting for a buffer being released
        # counters: requests handed to the handler, 4xx replies made by the
        # server itself, 503 "too many connections", slow clients dropped,
        # connections dropped at accept (no heap for them)
        self.requests = self.errors = self.refused = self.timeouts = self.dropped = 0

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
                k.setblocking(False)
                c = asyncio.StreamReader(k, {"peername": a})
                asyncio.create_task(self._conn(c, c))
            except Exception:  # MemoryError, or a peer already gone (OSError)
                self.dropped += 1
                if k:
                    k.close()

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

    async def _conn(self, r, w):
        buf = None
        why = 9  # too many connections
        if self._pool:
            buf = self._pool.pop()
        elif self._free > 0:
            try:
                buf = bytearray(self._head)
                self._free -= 1
            except MemoryError:
                why = 10  # out of memory: say so, it is not the connection cap
        if buf is None and not self._waiting:
            # a client that reconnects at once may find its last connection
            # still closing: its buffer is back within a few ms (50 ms at most).
            # One connection waits so; in a flood the others are refused at once
            # (each waiting one holds its objects on the heap)
            self._waiting = 1
            for _ in range(10):
                await asyncio.sleep_ms(5)
                if self._pool:
                    buf = self._pool.pop()
                    break
            self._waiting = 0
        task = asyncio.current_task()
        self._tasks.append(task)
        fh = hdrs = b = None
        try:
            if buf:
                try:
                    req = await asyncio.wait_for_ms(self._read(r, w, buf, 0), self.timeout)
                except MemoryError:
                    req = 503 << 4 | 10  # out of memory
                if req is None:  # the client went away
                    return
            else:
                self.refused += 1
                req = 503 << 4 | why
            early = isinstance(req, int)
            if early:  # an error reply before the request was read in full
                status = req >> 4
                obj = _TEXTS.split("|")[req & 15]
                if status < 500:
                    self.errors += 1
                if status == 405:
                    hdrs = [("Allow", "GET, POST")]
            else:
                self.requests += 1
                try:
                    a = await self.handler(req)
                    status = a[0]
                    obj = a[1]
                    if len(a) > 2:
                        hdrs = a[2]
                    # the body now (a generator: its first piece), while an error is still a 500
                    if hasattr(obj, "send"):
                        b = next(obj)
                    elif not isinstance(obj, File):
                        b = json.dumps(obj, separators=(",", ":"))
                        obj = None
                except HTTPError as e:
                    status = e.status
                    obj = e.message
                    hdrs = e.headers
                except Exception as e:
                    import sys

                    sys.print_exception(e)
                    status = 500
                    obj = "internal error"
                    hdrs = None
                a = req = None
            # the reply: a = its head, then the pieces of its body: b, then
            # from fh (a file) or obj (a generator)
            a = "application/json"
            x = ""  # head lines after Content-Length
            n = -1  # Content-Length: none for a generator
            if isinstance(obj, File):
                try:
                    fh = open(obj.path, "rb")
                    n = fh.seek(0, 2)
                    k = None
                    if obj.gzip:
                        fh.seek(n - 8)
                        k = '"%x"' % int.from_bytes(fh.read(8), "big")
                    fh.seek(0)
                    a = obj.content_type
                    x = "Cache-Control: max-age=%d\r\n" % obj.max_age
                    if k:
                        x += "Content-Encoding: gzip\r\nETag: %s\r\n" % k
                        if k == obj.match:  # 304: no body, no Content-Length
                            status = 304
                            fh.close()
                            fh = None
                            obj = 0
                            b = ""
                            n = -1
                except OSError:  # no such file (or one too short for a gzip trailer)
                    if fh:
                        fh.close()
                        fh = None
                    status = 404
                    obj = "not found"
                    hdrs = None
            if b is None and not fh:  # an error message
                b = json.dumps(obj, separators=(",", ":"))
                obj = None
            if isinstance(b, str):
                b = b.encode()
            if obj is None:
                n = len(b)
            if n >= 0:
                x = "Content-Length: %d\r\n" % n + x
            for k, v in hdrs or ():
                x += "%s: %s\r\n" % (k, v)
            if status == 401 and "www-" not in x.lower():
                x += 'WWW-Authenticate: Basic realm="cnf"\r\n'
            k = _TEXTS.find("%d " % status)
            k = _TEXTS[k : _TEXTS.find("\n", k)] if k >= 0 else "%d %s" % (status, "Error" if status >= 400 else "OK")
            a = ("HTTP/1.1 %s\r\nContent-Type: %s\r\n%sConnection: close\r\n\r\n" % (k, a, x)).encode()
            x = None
            if b and len(b) <= 1024:
                a += b  # a small body (or first piece) in one segment with the head
                b = None
            while a is not None:
                w.write(a)
                await asyncio.wait_for_ms(w.drain(), self.timeout)
                a = b
                b = None
                if a is None:
                    if fh:
                        a = memoryview(buf)[: fh.readinto(buf)] or None
                    elif obj:
                        a = next(obj, None)
                        if isinstance(a, str):
                            a = a.encode()
            if early:
                # read on for a moment: closing with unread input makes the
                # kernel send RST, and some clients then lose the reply
                try:
                    await asyncio.wait_for_ms(self._read(r, w, buf or bytearray(64), 1), 50)
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
            if fh:
                fh.close()
            # no yield between close and freeing the slot: a client that read
            # our reply to EOF finds its slot free when it reconnects
            try:
                await w.wait_closed()  # (MicroPython's Stream.close() does nothing)
            except Exception:
                pass
            self._tasks.remove(task)
            if buf:
                if len(self._pool) < self._keep:
                    self._pool.append(buf)
                else:
                    self._free += 1

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
            k = await r.readinto(mv[n:])
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
        if k > self.max_body:
            return 413 << 4 | 7  # request body too large
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
        k = w.get_extra_info("peername")  # lwIP: (ip, port); unix port: a raw sockaddr_in
        return Request(method, path, qs, h, body, str(k[0]) if isinstance(k, tuple) else ".".join(map(str, k[4:8])))
