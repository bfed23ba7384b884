"""Query-argument parsing the commands share (API.md: the 400 "bad value: NAME"
replies). On demand, like the commands (cnf.py on RAM); `need` stays in cnf.py,
which uses it for `cmd` itself."""
from cnf import need
from httpd import HTTPError


def bad(name):
    return HTTPError(400, "bad value: " + name)


def flag(q, name):
    v = q.get(name)
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise bad(name)


def parse_int(text, name, lo, hi):
    t = text.strip() if isinstance(text, str) else ""
    s = t[1:] if t[:1] in "+-" else t
    if not s.isdigit() or len(s) > 15:
        raise bad(name)
    v = int(t)
    if not lo <= v <= hi:
        raise bad(name)
    return v


def int_param(q, name, lo, hi):
    return parse_int(need(q, name), name, lo, hi)
