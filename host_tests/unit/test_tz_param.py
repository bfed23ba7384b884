"""Param tz (CPython and MicroPython): set_params validates it, the control
task feeds the balancer's charging rules local weekday and minute from it."""
from unitcheck import raises

from pblib import tz

from pbctl import config, control, devices


def site(**kw):
    p = config.defaults(config.PARAMS)
    p.update(kw)
    return devices.Site(p, [], "", {"accepted": False, "allow_usage_stats": False})


def test_default_and_validation():
    s = site()
    assert s.params["tz"] == "UTC0"
    ch = config.change_params(s, {"tz": "CET-1CEST,M3.5.0,M10.5.0/3"}, 8)
    assert ch.params["tz"] == "CET-1CEST,M3.5.0,M10.5.0/3"
    for bad in ("", "CET", "CET-1CEST,M3.5.0", 1, None, "X" * 65, "<+05>-5" + "a" * 60):
        e = raises(config.ConfigError, config.change_params, s, {"tz": bad}, 8)
        assert str(e) == "bad value: tz" and e.status == 400, bad
    assert s.params["tz"] == "UTC0"  # nothing changed


class Clock(control.Control):
    def __init__(self, s, t):
        super().__init__(s, None, "/nonexistent", 1)
        self.t = t

    def utc(self):
        return self.t


def test_rules_get_local_weekday_and_minute():
    import time

    if not hasattr(time, "ticks_ms"):
        return  # control.py runs on MicroPython only: this test runs under host_tests/mpy/test_micropython_units.py
    s = site(tz="CET-1CEST,M3.5.0,M10.5.0/3")
    c = Clock(s, tz.days(2025, 3, 30) * 86400 + 3600 - 60)  # 00:59 UTC, 01:59 CET, a Sunday
    c.configure()
    assert (c.lb.weekday, c.lb.minute) == (6, 119)
    c.t += 60  # 01:00 UTC: 03:00 CEST
    c.configure()
    assert (c.lb.weekday, c.lb.minute) == (6, 180)
    z = c.zone
    c.t = tz.days(2025, 10, 26) * 86400 + 3600 + 1800  # 01:30 UTC: 02:30 CET (the second time)
    c.configure()
    assert (c.lb.weekday, c.lb.minute) == (6, 150)
    assert c.zone is z  # parsed once
    s.params = dict(s.params)
    s.params["tz"] = "UTC0"  # a new tz: parsed again
    c.configure()
    assert (c.lb.weekday, c.lb.minute) == (6, 90) and c.zone is not z
    s.params["tz"] = "broken"  # (config never lets one in) UTC
    c.configure()
    assert (c.lb.weekday, c.lb.minute) == (6, 90)
