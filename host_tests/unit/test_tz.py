"""pblib.tz: POSIX TZ strings, local time across both DST changes (CPython and MicroPython)."""
import micropython
from unitcheck import raises

from pblib import tz

EU = "CET-1CEST,M3.5.0,M10.5.0/3"
SYD = "AEST-10AEDT,M10.1.0,M4.1.0/3"  # southern hemisphere: DST over the new year
CHILE = "<-04>4<-03>,M9.1.6/24,M4.1.6/24"  # quoted names, transitions at 24:00


def utc(y, mo, d, h=0, mi=0, s=0):
    return tz.days(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def wm(z, t):
    """(weekday 0 = Monday, minute of day) of UTC time t in zone z."""
    lt = z.local(t)
    return (lt // 86400 + 5) % 7, lt % 86400 // 60


def test_days_and_year():
    assert tz.days(2000, 1, 1) == 0
    assert tz.days(2000, 3, 1) == 60  # 2000 is a leap year
    assert tz.days(1970, 1, 1) == -10957
    assert tz.days(2025, 3, 30) == 9220
    for y in (1999, 2000, 2001, 2024, 2025, 2100):
        assert tz.year(tz.days(y, 1, 1)) == y
        assert tz.year(tz.days(y, 1, 1) - 1) == y - 1
        assert tz.year(tz.days(y, 12, 31)) == y
        assert tz.year(tz.days(y, 2, 28) + 1) == y


def test_utc_and_fixed():
    z = tz.Zone("UTC0")
    assert z.dst is None and z.std == 0
    assert wm(z, utc(2025, 3, 30, 1, 0)) == (6, 60)  # a Sunday
    assert wm(z, 0) == (5, 0)  # 2000-01-01: a Saturday
    assert tz.Zone("JST-9").local(0) == 9 * 3600
    assert tz.Zone("<+0530>-5:30").local(0) == 5 * 3600 + 1800
    assert tz.Zone("EST5").local(0) == -5 * 3600
    assert tz.Zone("<-0330>+3:30:15").local(0) == -(3 * 3600 + 1815)


def test_europe_spring_forward_skips_an_hour():
    z = tz.Zone(EU)
    assert wm(z, utc(2025, 3, 30, 0, 59)) == (6, 119)  # 01:59 CET
    assert wm(z, utc(2025, 3, 30, 1, 0)) == (6, 180)  # 03:00 CEST: 02:00..02:59 never happen
    assert z.local(utc(2025, 3, 30, 0, 59, 59)) == utc(2025, 3, 30, 1, 59, 59)
    assert z.local(utc(2025, 3, 30, 1)) == utc(2025, 3, 30, 3)
    seen = set()
    for m in range(0, 240):
        seen.add(wm(z, utc(2025, 3, 29, 23) + 60 * m)[1])
    assert not [m for m in range(120, 180) if m in seen]


def test_europe_fall_back_repeats_an_hour():
    z = tz.Zone(EU)
    assert wm(z, utc(2025, 10, 26, 0, 30)) == (6, 150)  # 02:30 CEST
    assert wm(z, utc(2025, 10, 26, 0, 59)) == (6, 179)
    assert wm(z, utc(2025, 10, 26, 1, 0)) == (6, 120)  # 02:00 CET again
    assert wm(z, utc(2025, 10, 26, 1, 30)) == (6, 150)  # 02:30 a second time
    assert wm(z, utc(2025, 10, 26, 2, 0)) == (6, 180)
    assert wm(z, utc(2025, 7, 1, 12)) == (1, 14 * 60)  # summer: UTC+2, a Tuesday
    assert wm(z, utc(2025, 1, 1, 12)) == (2, 13 * 60)  # winter: UTC+1, a Wednesday
    # the last Sunday of the month, in other years (2024: March 31, October 27)
    assert z.local(utc(2024, 3, 31, 1)) - utc(2024, 3, 31, 1) == 7200
    assert z.local(utc(2024, 3, 31, 0, 59)) - utc(2024, 3, 31, 0, 59) == 3600
    assert z.local(utc(2024, 10, 27, 0, 59)) - utc(2024, 10, 27, 0, 59) == 7200
    assert z.local(utc(2024, 10, 27, 1)) - utc(2024, 10, 27, 1) == 3600


def test_southern_hemisphere():
    z = tz.Zone(SYD)
    # DST ends 2025-04-06 03:00 AEDT (16:00 UTC the day before): 02:00..02:59 twice
    assert wm(z, utc(2025, 4, 5, 15, 30)) == (6, 150)  # 02:30 AEDT, Sunday
    assert wm(z, utc(2025, 4, 5, 16, 0)) == (6, 120)  # 02:00 AEST
    assert wm(z, utc(2025, 4, 5, 16, 30)) == (6, 150)  # 02:30 again
    # DST starts 2025-10-05 02:00 AEST (16:00 UTC the day before): 02:00..02:59 skipped
    assert wm(z, utc(2025, 10, 4, 15, 59)) == (6, 119)
    assert wm(z, utc(2025, 10, 4, 16, 0)) == (6, 180)
    # over the new year: DST
    assert z.local(utc(2025, 12, 31, 12, 0)) - utc(2025, 12, 31, 12) == 11 * 3600
    assert z.local(utc(2026, 1, 1, 12, 0)) - utc(2026, 1, 1, 12) == 11 * 3600
    assert z.local(utc(2025, 7, 1)) - utc(2025, 7, 1) == 10 * 3600


def test_chile_24h_and_quoted_names():
    z = tz.Zone(CHILE)
    # ends Saturday 2025-04-05 24:00 -03 = 2025-04-06 03:00 UTC
    assert z.local(utc(2025, 4, 6, 2, 59)) - utc(2025, 4, 6, 2, 59) == -3 * 3600
    assert z.local(utc(2025, 4, 6, 3, 0)) - utc(2025, 4, 6, 3) == -4 * 3600
    # starts Saturday 2025-09-06 24:00 -04 = 2025-09-07 04:00 UTC
    assert z.local(utc(2025, 9, 7, 3, 59)) - utc(2025, 9, 7, 3, 59) == -4 * 3600
    assert z.local(utc(2025, 9, 7, 4, 0)) - utc(2025, 9, 7, 4) == -3 * 3600


def test_julian_forms():
    # Jn: day n of 365 (Feb 29 never counted): J60 is March 1 in every year
    z = tz.Zone("AAA3BBB,J60/0,J300/0")
    for y in (2024, 2025):
        assert z.local(utc(y, 3, 1, 2, 59)) - utc(y, 3, 1, 2, 59) == -3 * 3600
        assert z.local(utc(y, 3, 1, 3, 0)) - utc(y, 3, 1, 3) == -2 * 3600
    # n: zero-based, Feb 29 counted: day 59 is Feb 29 in 2024, March 1 in 2025
    z = tz.Zone("AAA3BBB2,59/0,300/0")
    assert z.local(utc(2024, 2, 29, 3)) - utc(2024, 2, 29, 3) == -2 * 3600
    assert z.local(utc(2024, 2, 29, 2, 59)) - utc(2024, 2, 29, 2, 59) == -3 * 3600
    assert z.local(utc(2025, 3, 1, 3)) - utc(2025, 3, 1, 3) == -2 * 3600
    # a DST name without rules: the US rules (second Sunday of March, first of November)
    z = tz.Zone("EST5EDT")
    assert z.local(utc(2025, 3, 9, 6, 59)) - utc(2025, 3, 9, 6, 59) == -5 * 3600
    assert z.local(utc(2025, 3, 9, 7)) - utc(2025, 3, 9, 7) == -4 * 3600
    assert z.local(utc(2025, 11, 2, 5, 59)) - utc(2025, 11, 2, 5, 59) == -4 * 3600
    assert z.local(utc(2025, 11, 2, 6)) - utc(2025, 11, 2, 6) == -5 * 3600


def test_week_five_is_the_last():
    # M2.5.0: the last Sunday of February (2024: the 25th; 2026: the 22nd)
    z = tz.Zone("AAA0BBB,M2.5.0/0,M11.1.0/0")
    assert z.local(utc(2024, 2, 25)) - utc(2024, 2, 25) == 3600
    assert z.local(utc(2024, 2, 24, 23, 59)) - utc(2024, 2, 24, 23, 59) == 0
    assert z.local(utc(2026, 2, 22)) - utc(2026, 2, 22) == 3600


def test_invalid_strings():
    for s in ("", "UTC", "U0", "CET", "CET-", "CET-25", "CET-1CEST,M3.5.0", "CET-1CEST,M13.5.0,M10.5.0",
              "CET-1CEST,M3.6.0,M10.5.0", "CET-1CEST,M3.5.7,M10.5.0", "CET-1CEST,M3.0.0,M10.5.0",
              "CET-1CEST,J0,J300", "CET-1CEST,366,300", "CET-1CEST,M3.5.0/168,M10.5.0", "CET-1x",
              "CET-1CEST,M3.5.0,M10.5.0/3x", "<+05>", "<+0>-5", "<+05!>-5", "CET-1:60", "Äxy-1", 5, None):
        raises(ValueError, tz.Zone, s)


def test_local_allocates_nothing():
    zs = [tz.Zone(s) for s in (EU, SYD, CHILE, "UTC0")]
    ts = [utc(2025, 3, 30, 1), utc(2025, 10, 26, 1, 30), utc(2026, 1, 1)]
    for z in zs:  # the year's transitions computed once, outside the lock
        z.local(ts[0])
    out = 0
    micropython.heap_lock()
    try:
        for z in zs:
            for t in ts:
                out += z.local(t) % 86400
    finally:
        micropython.heap_unlock()
    assert out > 0
