"""MQTT's parameters (CPython and MicroPython): pbctl.params.mqtt_url and
mqtt_params (set_params), api/info.masked (get_params, get_dev_info). The
integration's own logic: test_mqtt_link.py."""
from unitcheck import raises

from pbctl import config, devices
from pbctl import params as checks
from pbctl.api import info


def test_mqtt_url_parts():
    assert checks.mqtt_url("mqtt://h") == (None, None, "h", 1883)
    assert checks.mqtt_url("mqtt://broker.lan:1884") == (None, None, "broker.lan", 1884)
    assert checks.mqtt_url("mqtt://u@10.0.0.2") == ("u", None, "10.0.0.2", 1883)
    assert checks.mqtt_url("mqtt://u:p:w@x@h-1:65535") == ("u", "p:w@x", "h-1", 65535)
    assert checks.mqtt_url("mqtt://u:@h") == ("u", "", "h", 1883)
    for bad in ("", "h", "mqtts://h", "http://h", "mqtt://", "mqtt://:1883", "mqtt://h:", "mqtt://h:0",
                "mqtt://h:65536", "mqtt://h:+1", "mqtt://h:1x", "mqtt://h/x", "mqtt://h o", "mqtt://u:p@",
                "mqtt://h\u00e4", "mqtt://h:1:2"):
        raises(ValueError, checks.mqtt_url, bad)


def params(**kw):
    p = config.defaults(config.PARAMS)
    p.update(kw)
    return p


def test_mqtt_params_defaults():
    p = params()
    assert (p["mqtt_url"], p["mqtt_prefix"], p["mqtt_ha_discovery"]) == ("", "", True)
    checks.mqtt_params(p, params())  # empty: off, valid


def test_the_masked_password_keeps_the_stored_one_for_the_same_broker_and_user():
    old = params(mqtt_url="mqtt://u:se:cret@h:1884")
    new = params(mqtt_url="mqtt://u:***@h:1884")
    checks.mqtt_params(new, old)
    assert new["mqtt_url"] == "mqtt://u:se:cret@h:1884"
    new = params(mqtt_url="mqtt://u:***@h")
    checks.mqtt_params(new, params(mqtt_url="mqtt://u:pw@h:1883"))
    assert new["mqtt_url"] == "mqtt://u:pw@h:1883"
    for url in ("mqtt://v:***@h:1884", "mqtt://u:***@g:1884", "mqtt://u:***@h:1885", "mqtt://u:***@h"):
        e = raises(config.ConfigError, checks.mqtt_params, params(mqtt_url=url), old)
        assert (str(e), e.status) == ("bad value: mqtt_url", 400)
    # no stored password (or none at all) to keep
    raises(config.ConfigError, checks.mqtt_params, params(mqtt_url="mqtt://u:***@h"), params(mqtt_url="mqtt://u@h"))
    raises(config.ConfigError, checks.mqtt_params, params(mqtt_url="mqtt://u:***@h"), params())


def test_mqtt_prefix():
    for ok in ("a", "pbctl/fcf5-c46d-310c", "A_b-c.d/e/f", "x" * 64):
        checks.mqtt_params(params(mqtt_prefix=ok), params())
    for bad in ("/a", "a/", "a//b", "a b", "a+b", "a#", "\u00e4", "a\x00", "a$b"):
        e = raises(config.ConfigError, checks.mqtt_params, params(mqtt_prefix=bad), params())
        assert str(e) == "bad value: mqtt_prefix", bad


def test_set_params_checks_the_mqtt_fields():
    site = devices.Site(params(), [], "", {"accepted": False, "allow_usage_stats": False})
    ch = config.change_params(site, {"mqtt_url": "mqtt://u:p@h:1", "mqtt_prefix": "x/y",
                                     "mqtt_ha_discovery": False}, 8)
    assert (ch.params["mqtt_url"], ch.params["mqtt_prefix"], ch.params["mqtt_ha_discovery"]) == (
        "mqtt://u:p@h:1", "x/y", False)
    for body, field in (({"mqtt_url": "x"}, "mqtt_url"), ({"mqtt_url": 1}, "mqtt_url"),
                        ({"mqtt_url": "mqtt://" + "h" * 122}, "mqtt_url"), ({"mqtt_prefix": "a b"}, "mqtt_prefix"),
                        ({"mqtt_ha_discovery": 1}, "mqtt_ha_discovery")):
        e = raises(config.ConfigError, config.change_params, site, body, 8)
        assert str(e) == "bad value: " + field
    assert site.params["mqtt_url"] == ""  # nothing changed


def test_replies_mask_the_password():
    assert info.masked("") == ""
    assert info.masked("mqtt://h:1883") == "mqtt://h:1883"
    assert info.masked("mqtt://u@h") == "mqtt://u@h"
    assert info.masked("mqtt://u:pw@h:1") == "mqtt://u:***@h:1"
    assert info.masked("mqtt://u:p:w@x@h") == "mqtt://u:***@h"
    assert info.masked("mqtt://u:@h") == "mqtt://u:***@h"


