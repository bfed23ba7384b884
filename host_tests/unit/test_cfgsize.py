"""The configuration's size budget (pbctl/cfgsize.py; CPython and MicroPython):
what a device counts, and which changes past the budget are refused."""
import json

from pbctl import cfgsize, config


class Dev:
    def __init__(self, is_evse, cfg):
        self.is_evse = is_evse
        self.cfg = cfg


class Site:
    def __init__(self, devices):
        self.devices = devices


def _rule(k):
    return {"days": 127, "mode": 2, "current": 10000 + k, "enabled": True, "udur": 600, "time": 480, "dur": 600,
            "expr": "x" * 32, "input": "i" * 16, "price_level": 0, "solar": 1000}


def test_weight_is_about_the_json_text():
    for v in ("", "abc", 7, True, None, [], {}, [1, "a"], {"a": [1, 2], "bb": {"c": "d"}},
              {"name": "n" * 32, "charging_rules": [_rule(k) for k in range(4)], "users": ["u" * 16] * 8}):
        n = len(json.dumps(v))
        w = cfgsize.weight(v)
        # never less than the text, at most a few bytes more a value (separators, a number's digits)
        assert n <= w <= n + 8 * (1 + len(json.dumps(v).split(","))), (v, n, w)


def test_a_device_counts_its_text_and_its_kind():
    e = config.defaults(config.table("evse_powerbrain"))
    m = config.defaults(config.table("meter_powerbrain"))
    assert cfgsize.device(True, e) == cfgsize.weight(e) + 650
    assert cfgsize.device(False, m) == cfgsize.weight(m) + 260
    big = dict(e)
    big["charging_rules"] = [_rule(k) for k in range(4)]
    assert cfgsize.device(True, big) - cfgsize.device(True, e) >= len(json.dumps(big["charging_rules"]))
    old = Dev(True, e)
    assert cfgsize.total([old, Dev(False, m)]) == cfgsize.device(True, e) + cfgsize.device(False, m)
    assert cfgsize.total([old], [(old, big)]) == cfgsize.device(True, big)  # a device's new configuration counts


def _refused(new, site, budget):
    try:
        cfgsize.check(new, site, budget)
    except config.ConfigError as e:
        assert (e.status, str(e)) == (400, "configuration too large")
        return True
    return False


def test_only_a_change_that_grows_past_the_budget_is_refused():
    e = config.defaults(config.table("evse_powerbrain"))
    site = Site([Dev(True, e)])
    now = cfgsize.total(site.devices)
    assert not _refused(now + 100, site, now + 100)  # at the budget: taken
    assert _refused(now + 101, site, now + 100)  # past it: refused
    assert not _refused(now + 101, site, 0)  # no budget (a board without one)
    # a configuration already past the budget (an older version's) may shrink or stay
    assert not _refused(now, site, now - 500)
    assert not _refused(now - 1, site, now - 500)
    assert _refused(now + 1, site, now - 500)
