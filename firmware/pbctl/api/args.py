"""Query-argument parsing the commands share (API.md: the 400 "bad value: NAME"
replies). On demand, like the commands (cnf.py on RAM); `need` stays in cnf.py,
which uses it for `cmd` itself."""
from pblib.httpd import HTTPError

from pbctl.api.cnf import need


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
    """An integer query value in lo..hi; a decimal fraction is dropped toward
    zero ("10000.0" is 10000: clients build values from floats, INTEGRATIONS.md §1)."""
    t = text.strip() if isinstance(text, str) else ""
    s = t[1:] if t[:1] in "+-" else t
    i = s.find(".")
    if i >= 0:
        if s[i + 1 :] and not s[i + 1 :].isdigit():
            raise bad(name)
        t = t[: len(t) - len(s) + i]
        s = s[:i]
    if not s.isdigit() or len(s) > 15:
        raise bad(name)
    v = int(t)
    if not lo <= v <= hi:
        raise bad(name)
    return v


def int_param(q, name, lo, hi):
    return parse_int(need(q, name), name, lo, hi)
