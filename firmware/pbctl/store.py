"""Atomic JSON persistence on flash (API.md §10).

save(): write `<name>.tmp`, move the current file to `<name>.bak`, rename the
temp file into place. Every step is a rename (atomic on littlefs and POSIX),
so a power cut at any point leaves a complete old or new copy: load() tries
the main file, then the temp file (complete only if it parses; then it is
renamed into place), then the backup, then gives up (the caller falls back
to defaults). A failed save raises StoreError (the file system's OSError:
flash full or broken); the copies on flash are then as before. A list file
(write(lines=True), each()) holds one item a line, so that it is written and
read an item at a time (the users: never all in RAM).
"""
import json
import os

from micropython import const

_LINE = const(1024)  # a list file's line buffer (grown for a longer line)


def exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _remove(p):
    try:
        os.remove(p)
    except OSError:
        pass


def _loads(mv):
    # MicroPython's json parses a memoryview in place; CPython's needs bytes
    try:
        return json.loads(mv)
    except TypeError:
        return json.loads(bytes(mv))


def _write(f, mv):
    # MicroPython's text file takes a buffer as it is; CPython's needs str
    try:
        f.write(mv)
    except TypeError:
        f.write(str(mv, "utf-8"))


def _shift(buf, k, n):
    # buf[:n - k] = buf[k:n] without a temporary copy of the rest (a slice
    # would be one more block of up to a line's size, on a fragmented heap
    # the allocation that fails): in pieces that do not overlap
    mv = memoryview(buf)
    dst = 0
    while k < n:
        m = min(n - k, k - dst)
        mv[dst : dst + m] = mv[k : k + m]
        dst += m
        k += m
    return dst


def _has(buf, j, want):
    for w in want:
        if buf.find(w, 0, j) >= 0:
            return True
    return False


class StoreError(Exception):
    pass


class Store:
    def __init__(self, directory, name="pbctl", lend=None):
        # lend: who lends each() its line buffer (app.App: take_line/give_line),
        # kept from boot, so that reading a 2 KB user needs no block that large
        self.lend = lend
        self.path = directory + "/" + name + ".json"
        self.tmp = directory + "/" + name + ".tmp"
        self.bak = directory + "/" + name + ".bak"
        self.loaded_from = None

    def load(self):
        """The newest complete copy as a dict, or None."""
        for p in (self.path, self.tmp, self.bak):
            try:
                with open(p) as f:
                    self.loaded_from = p  # (what a MemoryError while it is parsed was about)
                    d = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(d, dict):
                if p == self.tmp:
                    # a save cut between its renames: finish it now, or the next
                    # save would overwrite the newest copy while writing its temp
                    # file (a cut then left only the backup: two saves back)
                    try:
                        os.rename(self.tmp, self.path)
                        p = self.path
                    except OSError:
                        pass
                self.loaded_from = p
                return d
        self.loaded_from = None
        return None

    def save(self, obj):
        self.write((obj,))

    def write(self, items, lines=False):
        """Save obj (items = (obj,)), or a list file (lines: a JSON array with
        one item a line, written item by item: never all in RAM); atomic like save."""
        try:
            with open(self.tmp, "w") as f:
                sep = "[\n"
                for x in items:
                    if lines:
                        f.write(sep)
                        sep = ",\n"
                    if isinstance(x, memoryview):  # a line as each(raw=True) gave it: copied as it is
                        _write(f, x)
                    else:
                        json.dump(x, f)
                if lines:
                    f.write("[\n]\n" if sep == "[\n" else "\n]\n")
            if exists(self.path):
                _remove(self.bak)
                os.rename(self.path, self.bak)
            os.rename(self.tmp, self.path)
        except OSError as e:
            raise StoreError(repr(e))

    def each(self, strict=False, want=None, raw=False):
        """The items of the newest complete list file (write(lines=True)), one at
        a time, parsed; a copy is complete when it ends with its "]" (a save cut
        short does not: then the one before). strict: a line that does not
        parse raises ValueError (else that item is skipped). want: a line that
        contains none of these bytes is not parsed (a user is ~9 KB parsed on
        the 64-bit host): skipped, or with raw given as a memoryview of the
        line, valid until the next item (write() copies it as it is)."""
        for p in (self.path, self.tmp, self.bak):
            try:
                f = open(p, "rb")
            except OSError:
                continue
            with f:
                try:
                    f.seek(f.seek(0, 2) - 2)
                    if f.read(2) != b"]\n":
                        continue
                    f.seek(0)
                except (OSError, ValueError):
                    continue
                if p == self.tmp:  # a save cut between its renames: finish it (see load)
                    try:
                        os.rename(self.tmp, self.path)
                        p = self.path
                    except OSError:
                        pass
                self.loaded_from = p
                # lines are read into one buffer and parsed from it: no string
                # per line (a line's string, grown as it is read, and the
                # holes it leaves would scatter what is kept over the heap)
                kept = self.lend.take_line() if self.lend else None
                buf = kept or bytearray(_LINE)
                try:
                    yield from self._items(f, buf, strict, want, raw)
                finally:  # (a reader that stops early closes this generator: users(), change_user)
                    if kept:
                        self.lend.give_line(kept)
            return

    def _items(self, f, buf, strict, want, raw):
        n = 0  # bytes in buf
        while True:
            k = f.readinto(memoryview(buf)[n:])
            n += k or 0
            e = buf.find(b"\n", 0, n)
            if e < 0:
                if not k:
                    return  # the end ("]\n" was seen above)
                if n == len(buf):  # a line longer than the buffer: a larger one
                    buf = buf + bytearray(_LINE)
                continue
            j = e - 1 if e and buf[e - 1] == 44 else e  # without its ","
            item = None
            if j <= 1 and buf[0] in b"[]":
                pass  # the array's own "[" or "]"
            elif want is not None and not _has(buf, j, want):
                if raw:
                    yield memoryview(buf)[:j]
            else:
                try:
                    item = _loads(memoryview(buf)[:j])
                except ValueError:
                    if strict:
                        raise
                    # (a line broken on flash: that item is gone, not the others)
            n = _shift(buf, e + 1, n)
            if item is not None:
                yield item
