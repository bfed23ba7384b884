"""Diagnostic log: a fixed-size RAM ring of text lines (API.md §7).

The ring is one preallocated bytearray (fixed RAM whatever is logged).
While logging is off, the hooks return before doing any work. Logging stops by itself `_AUTO_STOP_MS` after it started.
Callers must not log secrets (passwords, RFIDs): bus frames and balancer
decisions only.
"""
import time

from micropython import const

_AUTO_STOP_MS = const(300000)  # 5 minutes


class Ring:
    def __init__(self, size=4096):
        # 16 blocks rather than one: a busy heap rarely has 4 KB in one piece
        self._bufs = [bytearray(size // 16) for _ in range(16)]
        self._bs = size // 16
        self._size = size
        self._n = 0  # bytes written in total (position = _n % size)
        self.enabled = False
        self._since = 0

    def start(self, on):
        self.enabled = on
        self._since = time.ticks_ms()

    def active(self):
        if self.enabled and time.ticks_diff(time.ticks_ms(), self._since) > _AUTO_STOP_MS:
            self.enabled = False
        return self.enabled

    def log(self, text):
        if not self.active():
            return
        self.put(b"%d " % time.ticks_ms())
        self.put(text)
        self.put(b"\n")

    def put(self, data):
        if isinstance(data, str):
            data = data.encode()
        bufs = self._bufs
        bs = self._bs
        size = self._size
        for i in range(len(data)):
            p = (self._n + i) % size
            bufs[p // bs][p % bs] = data[i]
        self._n += len(data)

    def frame(self, slave, direction, mv):
        """rtu.Master trace hook: '<slave> tx|rx <hex bytes>'."""
        if not self.active():
            return
        self.put(b"%d %d %s " % (time.ticks_ms(), slave, direction))
        for x in mv:
            self.put(b"%02x" % x)
        self.put(b"\n")

    def lines(self):
        """The logged lines, oldest first (a partly overwritten first line is
        dropped): a generator, a line at a time — the whole ring as a list
        of strings would need several KB at once. Lines logged meanwhile are
        left out; when the writer overtakes the reader, the rest is dropped."""
        size = self._size
        bs = self._bs
        end = self._n
        start = end - size if end > size else 0
        line = bytearray()
        skip = start > 0
        for k in range(start, end):
            if self._n - size > k:
                return  # overwritten while we read
            p = k % size
            c = self._bufs[p // bs][p % bs]
            if c == 10:
                if line and not skip:
                    yield line.decode()
                line = bytearray()
                skip = False
            else:
                line.append(c)
