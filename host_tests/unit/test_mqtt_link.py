"""MQTT's topic and payload logic (CPython and MicroPython): integrations/mqtt.py
(settings, command payloads, state hash, coalesced commands) and
integrations/mqtt_ha.py (discovery configs). The parameters: test_mqtt_params.py."""
import json

from pbctl import devices
from pbctl.integrations import mqtt, mqtt_ha


def params(**kw):
    # (not config.defaults: that module and this one do not fit in 96 KB together as .mpy)
    p = {"mqtt_url": "", "mqtt_prefix": "", "mqtt_ha_discovery": True}
    p.update(kw)
    return p


def cfg(**kw):
    c = {"name": "", "max_charging_cur": 16000, "soft_meter": 0, "address": "evse", "id": 1, "invert": False}
    c.update(kw)
    return c


def test_settings():
    assert mqtt.settings(params()) is None
    assert mqtt.settings(params(mqtt_url="mqtt://h")) == ("h", 1883, None, None, "", True)
    assert mqtt.settings(params(mqtt_url="mqtt://u@h:1", mqtt_prefix="p", mqtt_ha_discovery=False)) == (
        "h", 1, "u", None, "p", False)
    assert mqtt.settings(params(mqtt_url="mqtt://u:p:w@x@h")) == ("h", 1883, "u", "p:w@x", "", True)


def test_command_payloads():
    for p, v in ((b"0", 0), (b"16000", 16000), (b"10000.0", 10000), (b"10000.99", 10000), (b" 6000\n", 6000),
                 (b"80000", 80000), (b"80000.9", 80000), (b"6000.", 6000), (b"000100", 100)):
        assert mqtt.milliamps(p) == v, p
    for p in (b"", b"-1", b"80001", b"1e4", b"abc", b"1,5", b".5", b"1.x", b"0x10", b"+5", b"1 2", b"9" * 40):
        assert mqtt.milliamps(p) is None, p
    assert (mqtt.onoff(b"1"), mqtt.onoff(b"0"), mqtt.onoff(b" 1 ")) == (1, 0, 1)
    for p in (b"", b"2", b"on", b"ON", b"true", b"01"):
        assert mqtt.onoff(p) is None, p


def evse(dev_id="E1"):
    return devices.new_device("evse_powerbrain", dev_id, cfg(), 0)


def _set(x, i, v):
    x[i] = v


def test_the_state_hash_sees_what_the_state_shows():
    e = evse()
    h = mqtt.state_hash(e)
    assert mqtt.state_hash(e) == h
    for change in (lambda: setattr(e, "power", 1), lambda: _set(e.cur, 2, 100),
                   lambda: setattr(e, "energy", 5), lambda: setattr(e, "state", 3),
                   lambda: setattr(e, "limit", 6000), lambda: setattr(e, "paused", True),
                   lambda: setattr(e, "user", "u1"), lambda: setattr(e, "ov_flags", "C"),
                   lambda: _set(e.caps, 1, 8000), lambda: _set(e.enables, 1, 0),
                   lambda: setattr(e, "model", "x"), lambda: setattr(e.stats, "errors", 1)):
        change()
        h2 = mqtt.state_hash(e)
        assert h2 != h
        h = h2
    m = devices.new_device("meter_powerbrain", "M1", cfg(), 0)
    h = mqtt.state_hash(m)
    m.export = 7
    assert mqtt.state_hash(m) != h
    e.energy = 10 ** 9  # large values: still a small int
    assert 0 <= mqtt.state_hash(e) < 1 << 20


class FakeControl:
    def __init__(self, room=16):
        self.req = []
        self.settled = 0
        self.room = room

    def _q(self, r):
        if len(self.req) - self.settled >= self.room:
            raise ValueError("busy")  # (control.Busy)
        self.req.append(r)
        return len(self.req)

    def cap(self, dev_id, source, ma):
        return self._q(("cap", dev_id, source, ma))

    def enable(self, dev_id, source, on):
        return self._q(("enable", dev_id, source, on))


class FakeApp:
    serial = "abcd-0123-ef45"

    def __init__(self, devs, ctl):
        self.site = devices.Site(params(), devs, "", {})
        self.control = ctl


def link(app, pre="pb"):
    # a Link without its tasks: the command path only
    lk = object.__new__(mqtt.Link)
    lk.app = app
    lk.pre = pre
    lk.ha = True
    lk.bad = lk.commands = 0
    lk._want = {}
    lk._seq = 0
    lk._all = lk._disc = False
    return lk


def test_commands_become_requests_coalesced_per_pass():
    m = devices.new_device("meter_powerbrain", "M1", cfg(), 0)
    ctl = FakeControl()
    lk = link(FakeApp([evse("E1"), evse("E2"), m], ctl))
    lk._message("pb/E1/set/current", b"10000.5")
    assert ctl.req == [("cap", "E1", 1, 10000)]  # nothing in flight: at once
    # until that pass: the newest value per EVSE and command waits
    for t, p in (("pb/E1/set/current", b"7000"), ("pb/E1/set/current", b"8000"), ("pb/E2/set/enable", b"0"),
                 ("pb/E1/set/enable", b"0"), ("pb/E1/set/enable", b"1")):
        lk._message(t, p)
    assert len(ctl.req) == 1 and lk.commands == 6
    ctl.settled = 1
    lk._hand_over()
    assert sorted(ctl.req[1:]) == [("cap", "E1", 1, 8000), ("enable", "E1", 1, True), ("enable", "E2", 1, False)]
    lk._hand_over()  # nothing new
    assert len(ctl.req) == 4
    # bad: counted, nothing queued
    for t, p in (("pb/E1/set/current", b"x"), ("pb/E1/set/enable", b"on"), ("pb/M1/set/current", b"6000"),
                 ("pb/E9/set/current", b"6000"), ("pb/E1/set/phase", b"1"), ("pbx/E1/set/current", b"6000"),
                 ("pb/E1/x/set/current", b"6000"), ("pb/E1/set/current/x", b"6000")):
        lk._message(t, p)
    assert (lk.bad, lk.commands, lk._want) == (8, 6, {})
    # Home Assistant came back: everything again
    lk._message("homeassistant/status", b"offline")
    assert (lk._all, lk._disc) == (False, False)
    lk._message("homeassistant/status", b"online")
    assert (lk._all, lk._disc) == (True, True)


def test_a_full_request_queue_keeps_the_commands_for_the_next_pass():
    ctl = FakeControl(room=1)
    lk = link(FakeApp([evse("E1"), evse("E2")], ctl))
    lk._message("pb/E1/set/current", b"6000")
    ctl.settled = 1
    lk._message("pb/E1/set/enable", b"0")  # the queue takes it
    lk._message("pb/E2/set/current", b"9000")  # in flight: waits
    ctl.settled = 2
    ctl.room = 0
    lk._hand_over()  # busy: kept
    assert lk._want == {"E2": [9000, -1]} and len(ctl.req) == 2
    ctl.room = 16
    lk._hand_over()
    assert ctl.req[-1] == ("cap", "E2", 1, 9000) and lk._want == {}


def test_discovery_configs():
    e = evse("E1")
    e.cfg["name"] = "Garage"
    e.cfg["max_charging_cur"] = 32000
    lk = link(FakeApp([e], FakeControl()), "home/pb")
    out = list(mqtt_ha.configs(lk, "E1", True, e))
    node = "pbctl_abcd-0123-ef45_E1"
    assert [t for t, _ in out] == ["homeassistant/%s/%s/%s/config" % (c, node, k) for c, k in (
        ("sensor", "power"), ("sensor", "energy"), ("sensor", "current_l1"), ("sensor", "current_l2"),
        ("sensor", "current_l3"), ("sensor", "limit"), ("sensor", "state"), ("number", "current"),
        ("switch", "enable"))]
    got = dict((t.split("/")[3], json.loads(p)) for t, p in out)
    dev = {"identifiers": [node], "name": "Garage", "manufacturer": "pbctl", "model": "evse_powerbrain",
           "serial_number": "E1"}
    common = {"state_topic": "home/pb/E1/state", "availability_topic": "home/pb/status", "device": dev}
    want = dict(common, name="energy", unique_id=node + "_energy", value_template="{{ value_json.total_energy }}",
                unit_of_measurement="Wh", device_class="energy", state_class="total_increasing")
    assert got["energy"] == want
    want = dict(common, name="current l2", unique_id=node + "_current_l2",
                value_template="{{ value_json.current_l2 / 1000 }}", unit_of_measurement="A",
                device_class="current", state_class="measurement")
    assert got["current_l2"] == want
    want = dict(common, name="current", unique_id=node + "_current",
                value_template="{{ value_json.mqtt_current / 1000 }}", unit_of_measurement="A",
                device_class="current", command_topic="home/pb/E1/set/current",
                command_template="{{ (value * 1000) | int }}", min=0, max=32, step=1, mode="box")
    assert got["current"] == want
    want = dict(common, name="enable", unique_id=node + "_enable", value_template="{{ value_json.mqtt_enable }}",
                command_topic="home/pb/E1/set/enable", payload_on="1", payload_off="0", state_on="1", state_off="0")
    assert got["enable"] == want
    assert got["state"]["value_template"].startswith("{{ ['unknown','waiting for EV',")
    m = devices.new_device("meter_powerbrain", "M3", cfg(), 0)
    m.model = "cFos Power Brain S0,1.0,1.2.3,x"
    out = list(mqtt_ha.configs(lk, "M3", False, m))
    assert [t.split("/")[3] for t, _ in out] == ["power", "import", "export", "current_l1", "current_l2",
                                                 "current_l3"]
    c = json.loads(out[0][1])
    assert (c["device"]["name"], c["device"]["model"], c["value_template"]) == (
        "M3", "cFos Power Brain S0", "{{ value_json.power_w }}")
    # removal: the same topics, empty payloads
    assert list(mqtt_ha.configs(lk, "M3", False, None)) == [(t, "") for t, _ in out]
