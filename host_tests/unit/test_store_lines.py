"""List files read a line at a time (CPython and MicroPython): store.each's
want/raw (a line without what is looked for is not parsed, or comes as it is)
and the line buffer lent by the app (app.App.take_line/give_line)."""
import json
import os

from pbctl import store, userlist


def _dir():
    d = "/tmp/pbctl-unit-store-%s" % "".join("%02x" % b for b in os.urandom(4))
    os.mkdir(d)
    return d


def _clean(d):
    for n in os.listdir(d):
        os.remove(d + "/" + n)
    os.rmdir(d)


class Lender:
    def __init__(self, n):
        self.line = bytearray(n)
        self.kept = self.line
        self.takes = 0

    def take_line(self):
        b = self.line
        self.line = None
        self.takes += 1
        return b

    def give_line(self, b):
        self.line = b


USERS = [{"id": "u%d" % k, "name": "n" * k, "rfids": [{"id": "%d" % (4700 + k)}]} for k in range(1, 5)]


def test_want_parses_only_lines_holding_it():
    d = _dir()
    try:
        st = store.Store(d, "users")
        st.write(USERS, True)
        assert list(st.each()) == USERS
        assert list(st.each(False, userlist.quoted("u3"))) == [USERS[2]]
        assert list(st.each(False, userlist.quoted("4702", "u4"))) == [USERS[1], USERS[3]]
        assert list(st.each(False, [])) == []
        # raw: the others as memoryviews of their lines, valid until the next item
        got = [("raw", json.loads(bytes(x))) if isinstance(x, memoryview) else ("parsed", x)
               for x in st.each(False, userlist.quoted("u2"), True)]
        assert got == [("raw", USERS[0]), ("parsed", USERS[1]), ("raw", USERS[2]), ("raw", USERS[3])], got
    finally:
        _clean(d)


def test_a_rewrite_copies_the_other_lines_as_they_are():
    d = _dir()
    try:
        st = store.Store(d, "users")
        st.write(USERS, True)
        with open(st.path) as f:
            before = f.read()
        new = dict(USERS[1], name="changed")
        st.write((new if isinstance(x, dict) else x for x in st.each(False, userlist.quoted("u2"), True)), True)
        assert list(st.each()) == [USERS[0], new, USERS[2], USERS[3]]
        with open(st.path) as f:
            after = f.read()
        b, a = before.split("\n"), after.split("\n")
        assert a[:2] + a[3:] == b[:2] + b[3:] and a[2] != b[2], (before, after)  # (line 0 is "[")
    finally:
        _clean(d)


def test_the_lent_buffer_goes_back_whole_read_cut_short_or_outgrown():
    d = _dir()
    try:
        lend = Lender(64)
        st = store.Store(d, "users", lend)
        st.write(USERS + [{"id": "long", "name": "x" * 200}], True)  # a line longer than the buffer
        it = st.each()
        assert next(it) == USERS[0] and lend.line is None  # lent while it reads
        assert len(list(it)) == 4 and lend.line is lend.kept  # back after the end, though outgrown
        it = st.each()
        next(it)
        it.close()  # a reader that stops early (userlist.user)
        assert lend.line is lend.kept
        it = st.each()
        next(it)
        assert list(store.Store(d, "users", lend).each()) == USERS + [{"id": "long", "name": "x" * 200}]
        it.close()  # a second reader meanwhile had a buffer of its own
        assert lend.line is lend.kept and lend.takes == 4
        assert userlist.user(d, "u2", lend) == USERS[1] and lend.line is lend.kept
        assert userlist.user(d, "nobody", lend) is None and lend.line is lend.kept
    finally:
        _clean(d)
