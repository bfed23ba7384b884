"""cmd=update (admin, POST): an update bundle (tools/bundle.py, `make bundle`)
streamed to flash, verified, switched to (README "Updates over HTTP").
Loaded on demand.

The bundle, read a piece at a time from the request (httpd Body: pieces of
the connection's 1.5 KB head buffer; never whole in RAM):

    pbctl-bundle 1 <board> <version> <files> <bytes>\\n
    <size> <sha256 hex> <path>\\n  then <size> bytes      (<files> times)

<bytes> counts everything after the first line. Every file goes to
FLASH/fw/new/<path> while its SHA-256 is computed; a size or hash that does
not match, a bundle cut short, one for another board, or one larger than
the flash can take (checked from its first line, before anything is
written) is refused and the staging directory removed: nothing changed.
Once every file is in and verified, fw/new is renamed to fw/s<N> and the
pointer (pbslot.py, fw.json) is switched to it, tentative; the reply
comes, then the controller restarts (board.reset()) unless restart=0. A
power cut before the pointer's rename boots the old version (fw/new or an
unreferenced slot is removed at the next update), after it the new one;
directories that neither the pointer's cur nor prev names are garbage.
"""
import os

from pblib.httpd import HTTPError

MAGIC = "pbctl-bundle"
_KEEP = 16384  # flash left free after staging (the configuration must still save)
_MAX = 1 << 20  # a bundle at most (board.UPDATE_MAX overrides)
_PATH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./"


def _entries(p):
    # [(name, is a directory)] of p
    try:
        return [(e[0], e[1] == 0x4000) for e in os.ilistdir(p)]
    except AttributeError:  # CPython (the power-cut test)
        return [(n, os.stat(p + "/" + n)[0] & 0x4000 != 0) for n in os.listdir(p)]


def rmtree(p):
    try:
        es = _entries(p)
    except OSError:
        return
    for n, d in es:
        if d:
            rmtree(p + "/" + n)
        else:
            os.remove(p + "/" + n)
    os.rmdir(p)


def _mkdir(p):
    try:
        os.mkdir(p)
    except OSError:  # (exists)
        pass


def _free(flash):
    try:
        s = os.statvfs(flash or "/")
        return s[0] * s[4]
    except (AttributeError, OSError):
        return 1 << 30


class Stage:
    """A bundle's bytes in (feed), its files staged and verified, then switched
    to (finish); abort() removes what was staged."""

    def __init__(self, flash, board, length, limit=_MAX):
        import pbslot

        self.flash = flash
        self.board = board
        self.length = length  # the request's Content-Length
        self.root = flash + "/fw"
        self.dir = self.root + "/new"
        p = pbslot.load(flash) or {}
        self.keep = (p.get("cur"), p.get("prev"))
        _mkdir(self.root)
        for n, d in _entries(self.root):  # what a cut update or a replaced version left
            if n in self.keep:
                continue
            if d:
                rmtree(self.root + "/" + n)
            else:
                os.remove(self.root + "/" + n)
        if length > limit:
            raise HTTPError(413, "bundle too large")
        self.limit = min(limit, _free(flash) - _KEEP)
        self.line = bytearray(160)
        self.ln = 0  # bytes in line
        self.version = None
        self.files = -1  # files still to come (-1: the first line not yet read)
        self.left = 0  # bytes of the current file still to come
        self.f = self.h = None
        self.sha = None

    def feed(self, mv):
        i = 0
        n = len(mv)
        while i < n:
            if self.left:
                k = min(self.left, n - i)
                self.f.write(mv[i : i + k])
                self.h.update(mv[i : i + k])
                self.left -= k
                i += k
                if not self.left:
                    self._done()
                continue
            j = i
            while j < n and mv[j] != 10:
                j += 1
            k = j - i
            if self.ln + k >= len(self.line) or self.files == 0:
                raise HTTPError(400, "bad bundle")
            self.line[self.ln : self.ln + k] = mv[i:j]
            self.ln += k
            i = j
            if j < n:  # the line is complete
                i += 1
                s = str(memoryview(self.line)[: self.ln], "utf-8")
                self.ln = 0
                self._header(s.split(" "))

    def _header(self, w):
        if self.files < 0:  # pbctl-bundle 1 <board> <version> <files> <bytes>
            if len(w) != 6 or w[0] != MAGIC or w[1] != "1" or not (w[4] + w[5]).isdigit() or not w[3]:
                raise HTTPError(400, "bad bundle")
            if w[2] != self.board:
                raise HTTPError(400, "bundle for another board")
            total = int(w[5])
            if total > self.limit:
                raise HTTPError(413, "bundle too large")
            if self.length < total + len(w[0]) + len(w[1]) + len(w[2]) + len(w[3]) + len(w[4]) + len(w[5]) + 6:
                raise HTTPError(400, "truncated bundle")
            self.version = w[3]
            self.files = int(w[4])
            if self.files < 1:
                raise HTTPError(400, "bad bundle")
            _mkdir(self.dir)
            return
        # <size> <sha256> <path>
        if len(w) != 3 or not w[0].isdigit() or len(w[1]) != 64 or not w[2] or w[2][0] == "/":
            raise HTTPError(400, "bad bundle")
        p = w[2]
        for c in p:
            if c not in _PATH:
                raise HTTPError(400, "bad bundle")
        d = self.dir
        parts = p.split("/")
        for s in parts:
            if not s or s[0] == ".":  # no "..", no empty or hidden names
                raise HTTPError(400, "bad bundle")
        for s in parts[:-1]:
            d += "/" + s
            _mkdir(d)
        import hashlib

        self.name = p
        self.sha = w[1]
        self.f = open(self.dir + "/" + p, "wb")
        self.h = hashlib.sha256()
        self.left = int(w[0])
        if not self.left:
            self._done()

    def _done(self):
        import binascii

        self.f.close()
        self.f = None
        if binascii.hexlify(self.h.digest()).decode() != self.sha:
            raise HTTPError(400, "hash mismatch: " + self.name)
        self.h = None
        self.files -= 1

    def finish(self):
        """Every file in and verified: the switch. Returns the version."""
        if self.files or self.left or self.ln:
            raise HTTPError(400, "truncated bundle")
        import pbslot

        n = 1
        for s in self.keep:
            if s and s[0] == "s" and s[1:].isdigit():
                n = max(n, int(s[1:]) + 1)
        slot = "s%d" % n
        os.rename(self.dir, self.root + "/" + slot)
        pbslot.switch(self.flash, slot, self.version)
        # the version given up by this switch (neither cur nor prev now) goes
        p = pbslot.load(self.flash)
        for s in self.keep:
            if s and s not in (p["cur"], p["prev"]):
                rmtree(self.root + "/" + s)
        return self.version

    def abort(self):
        if self.f:
            self.f.close()
            self.f = None
        rmtree(self.dir)


async def update(app, req):
    """POST the bundle (Content-Type application/octet-stream); restart=0: no restart."""
    s = req.stream
    if s is None:
        raise HTTPError(400, "bad bundle")
    if getattr(app, "updating", 0):
        raise HTTPError(409, "update in progress")
    app.updating = 1
    st = None
    try:
        b = app.board
        st = Stage(b.FLASH, b.NAME, s.left, getattr(b, "UPDATE_MAX", _MAX))
        while True:
            try:
                mv = await s.read()
            except Exception:  # EOFError, a read that timed out, a reset: the client stopped short
                raise HTTPError(400, "truncated bundle")
            if not mv:
                break
            st.feed(mv)
        v = st.finish()
        st = None
    except OSError:
        raise HTTPError(507, "flash write failed")
    finally:
        if st:
            try:
                st.abort()
            except OSError:
                pass
        app.updating = 0
    restart = req.query.get("restart") != "0" and getattr(b, "reset", None)
    if restart:
        import asyncio

        asyncio.create_task(_restart(restart))
    return {"version": v, "restart": bool(restart)}


async def _restart(reset):
    import asyncio

    await asyncio.sleep_ms(1000)  # the reply goes out first
    reset()
