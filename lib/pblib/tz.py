# tz: local time from a POSIX TZ string (IEEE 1003.1 §8.3, TZ), integer arithmetic only.
#
#   z = Zone("CET-1CEST,M3.5.0,M10.5.0/3")   # ValueError if it is no such string
#   lt = z.local(t)      # t: UTC seconds since 2000-01-01 -> local seconds since then
#   weekday = (lt // 86400 + 5) % 7   (0 = Monday: 2000-01-01 was a Saturday)
#   minute = lt % 86400 // 60
#
# The string is parsed once into a few ints; local() allocates nothing (the
# transitions of the year last asked for are kept, recomputed when the year
# changes). Epoch 2000 (the ESP32's): a time stays a small int on the 32-bit
# board (31 bits) until 2034, where seconds since 1970 would not.
#
# Accepted: std offset [dst [offset] [,start[/time],end[/time]]]
# - names: 3+ letters, or <...> with letters, digits, + and - (e.g. <+0530>);
# - offset: [+-]hh[:mm[:ss]], hours 0..24, positive WEST of Greenwich (POSIX:
#   "CET-1" is UTC+1); the DST offset defaults to one hour less (one hour ahead);
# - start/end: Jn (1..365, February 29 never counted), n (0..365, counted), or
#   Mm.w.d (month 1..12, week 1..5 — 5 = the last —, day 0..6, 0 = Sunday);
#   /time: [+-]hh[:mm[:ss]], hours -167..167 (RFC 8536's extension), default 02:00,
#   the start in standard local time, the end in DST local time;
# - a DST name without rules gets the US rules M3.2.0,M11.1.0 (as glibc does).
# Southern zones (the start after the end in the year) work: DST then spans the
# new year.


def _name(s, i):
    n = len(s)
    if s[i : i + 1] == "<":
        j = s.find(">", i)
        if j < i + 4:
            raise ValueError
        for c in s[i + 1 : j]:
            if not (c.isalpha() or c.isdigit() or c in "+-"):
                raise ValueError
        return j + 1
    j = i
    while j < n and s[j].isalpha() and s[j] < "\x80":
        j += 1
    if j - i < 3:
        raise ValueError
    return j


def _num(s, i, hi):
    j = i
    while j < len(s) and s[j].isdigit() and j - i < 3:
        j += 1
    if j == i:
        raise ValueError
    v = int(s[i:j])
    if v > hi:
        raise ValueError
    return v, j


def _hms(s, i, hi):
    # [+-]hh[:mm[:ss]] -> (seconds, end)
    sign = 1
    if s[i : i + 1] in ("+", "-"):
        sign = -1 if s[i] == "-" else 1
        i += 1
    h, i = _num(s, i, hi)
    v = h * 3600
    for k in (60, 1):
        if s[i : i + 1] != ":":
            break
        x, i = _num(s, i + 1, 59)
        v += x * k
    return sign * v, i


def _rule(s, i):
    # ,start[/time] -> (kind, value, time, end): kind 0 Jn, 1 n, 2 Mm.w.d (value m*100+w*10+d)
    if s[i : i + 1] != ",":
        raise ValueError
    i += 1
    c = s[i : i + 1]
    if c == "J":
        v, i = _num(s, i + 1, 365)
        k = 0
        if v < 1:
            raise ValueError
    elif c == "M":
        m, i = _num(s, i + 1, 12)
        if s[i : i + 1] != ".":
            raise ValueError
        w, i = _num(s, i + 1, 5)
        if s[i : i + 1] != ".":
            raise ValueError
        d, i = _num(s, i + 1, 6)
        if m < 1 or w < 1:
            raise ValueError
        k, v = 2, m * 100 + w * 10 + d
    else:
        v, i = _num(s, i, 365)
        k = 1
    t = 7200
    if s[i : i + 1] == "/":
        t, i = _hms(s, i + 1, 167)
    return k, v, t, i


def days(y, m, d):
    """Days from 2000-01-01 to the date (proleptic Gregorian; H. Hinnant's days_from_civil)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doe = yoe * 365 + yoe // 4 - yoe // 100 + (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + doe - 730425


def year(n):
    """The year of day n (days from 2000-01-01)."""
    z = n + 730425
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    return yoe + era * 400 + (1 if doy >= 306 else 0)  # doy counts from March 1


def _day(y, k, v):
    # the day (from 2000-01-01) of a rule in year y
    if k == 1:
        return days(y, 1, 1) + v
    if k == 0:
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        return days(y, 1, 1) + v - 1 + (1 if leap and v >= 60 else 0)
    m = v // 100
    w = v // 10 % 10
    f = days(y, m, 1)
    n = (days(y + 1, 1, 1) if m == 12 else days(y, m + 1, 1)) - f  # days in the month
    x = (v % 10 - (f + 6) % 7) % 7 + (w - 1) * 7  # (f + 6) % 7: f's weekday, 0 = Sunday
    while x >= n:
        x -= 7
    return f + x


class Zone:
    def __init__(self, s):
        """Parse a POSIX TZ string (ValueError if it is none)."""
        if not isinstance(s, str) or not s:
            raise ValueError
        i = _name(s, 0)
        off, i = _hms(s, i, 24)
        self.std = -off  # seconds local standard time is ahead of UTC
        self.dst = None  # same for DST; None: no DST
        self._y = None  # the year of _a, _b
        self._a = self._b = 0  # its DST start and end, UTC
        if i < len(s):
            i = _name(s, i)
            self.dst = self.std + 3600
            if i < len(s) and s[i] != ",":
                off, i = _hms(s, i, 24)
                self.dst = -off
            if i == len(s):
                s = s + ",M3.2.0,M11.1.0"
            self._sk, self._sv, self._st, i = _rule(s, i)
            self._ek, self._ev, self._et, i = _rule(s, i)
        if i != len(s):
            raise ValueError

    def local(self, t):
        """Local seconds since 2000-01-01 of t (UTC seconds since then)."""
        if self.dst is None:
            return t + self.std
        y = year((t + self.std) // 86400)
        if y != self._y:
            self._a = _day(y, self._sk, self._sv) * 86400 + self._st - self.std
            self._b = _day(y, self._ek, self._ev) * 86400 + self._et - self.dst
            self._y = y
        a = self._a
        b = self._b
        if (a <= t < b) if a < b else not (b <= t < a):
            return t + self.dst
        return t + self.std
