"""pblib.tz against the system's tz database (CPython's zoneinfo): the POSIX
rule of a zone gives the same UTC offset as the database at random times of
2007..2037 (after the last rule changes of these zones)."""
import datetime
import random

import pytest

from pblib import tz

zoneinfo = pytest.importorskip("zoneinfo")

ZONES = (("Europe/Berlin", "CET-1CEST,M3.5.0,M10.5.0/3", 2007),
         ("America/New_York", "EST5EDT,M3.2.0,M11.1.0", 2007),
         ("Australia/Sydney", "AEST-10AEDT,M10.1.0,M4.1.0/3", 2008),
         ("Pacific/Auckland", "NZST-12NZDT,M9.5.0,M4.1.0/3", 2008),
         ("Asia/Kolkata", "IST-5:30", 2000),
         ("Asia/Tokyo", "JST-9", 2000))
E2000 = 946684800


@pytest.mark.parametrize("name,posix,since", ZONES)
def test_offsets_match_the_tz_database(name, posix, since):
    try:
        zi = zoneinfo.ZoneInfo(name)
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz database entry " + name)
    z = tz.Zone(posix)
    rnd = random.Random(name)
    lo = tz.days(since, 1, 1) * 86400
    hi = tz.days(2037, 12, 31) * 86400
    # random times, and each hour around every transition of the database
    ts = [rnd.randrange(lo, hi) for _ in range(3000)]
    for y in range(since, 2038):
        for m in (3, 4, 9, 10, 11):
            for d in range(1, 32, 1):
                try:
                    t0 = tz.days(y, m, d) * 86400
                except ValueError:
                    continue
                ts.extend(range(t0, t0 + 86400, 1800))
    for t in ts:
        want = int(datetime.datetime.fromtimestamp(t + E2000, zi).utcoffset().total_seconds())
        assert z.local(t) - t == want, (name, datetime.datetime.utcfromtimestamp(t + E2000))
