"""pbctl/board/wifi.py: the pure parts under CPython; the WiFi/NTP task under
MicroPython's asyncio (mpy/scripts/wifi_task.py) against fakes of the ESP32's
`network` and `ntptime` (mpy/fakes/esp32/, put on the module path ahead of
everything else), with a ticker task that shows the event loop never waits
on the WiFi."""
import json

import pytest

import mp
from pbctl.board import wifi

MAC = bytes([0x24, 0x6F, 0x28, 0xA1, 0xB2, 0xC3])


def test_ap_ssid_is_pbctl_and_the_last_4_hex_digits_of_the_mac():
    assert wifi.ap_ssid(MAC) == "pbctl-B2C3"
    assert wifi.ap_ssid(b"\x00\x00\x00\x00\x0a\x01") == "pbctl-0A01"


def test_the_setup_access_point_has_the_documented_password():
    assert wifi.AP_PASSWORD == "pbctl-setup" and 8 <= len(wifi.AP_PASSWORD) <= 63  # WPA2
    assert wifi.AP_URL == "http://192.168.4.1/"


def test_scan_results_as_scan_wifi_lists_them():
    from pbctl.api import wifi as api

    found = [(b"home", b"\x01" * 6, 6, -48, 3, False), (b"home", b"\x02" * 6, 11, -70, 3, False),
             (b"cafe", b"\x03" * 6, 1, -80, 0, False), (b"", b"\x04" * 6, 1, -30, 3, True),
             (b"hidden", b"\x05" * 6, 1, -30, 3, True), (b"\xff\xfe", b"\x06" * 6, 1, -40, 3, False),
             (b"new", b"\x07" * 6, 13, -101, 6, False), (b"odd", b"\x08" * 6, 3, -60, 42, False)]
    assert api.networks(found) == [
        {"ssid": "home", "rssi": -48, "signal": 100, "security": "wpa2", "channel": 6},
        {"ssid": "odd", "rssi": -60, "signal": 80, "security": "42", "channel": 3},
        {"ssid": "cafe", "rssi": -80, "signal": 40, "security": "open", "channel": 1},
        {"ssid": "new", "rssi": -101, "signal": 0, "security": "wpa3", "channel": 13},
    ]
    many = [(b"n%02d" % i, b"\x01" * 6, 1, -50 - i, 3, False) for i in range(30)]
    assert [d["ssid"] for d in api.networks(many)] == ["n%02d" % i for i in range(20)]


@pytest.fixture(scope="module")
def res():
    r = mp.run([mp.script("wifi_task.py")], extra_dirs=(mp.fakes("esp32"),), timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, out
    data = json.loads(line[0][7:])
    data["output"] = r.stdout
    return data


def test_first_setup_opens_the_access_point(res):
    s = res["no_creds"][0]
    assert s["ap"] and s["ap_ssid"] == "pbctl-B2C3"  # the station's MAC
    assert s["ap_cfg"] == {"ssid": "pbctl-B2C3", "key": "pbctl-setup", "security": 3}  # WPA2-PSK
    assert s["password"] == "pbctl-setup"
    assert s["connect_calls"] == [] and s["state"] == "off"
    assert "pbctl: setup access point pbctl-B2C3: http://192.168.4.1/\n" in res["output"]


def test_station_connects_and_sets_the_time(res):
    s = res["good"][0]
    assert s["state"] == "up" and s["ip"] == "192.168.1.50" and s["connects"] == 1
    assert not s["ap"] and s["ap_cfg"] is None  # never opened
    assert s["connect_calls"] == [["home", "secret"]]
    assert s["synced"] and s["ntp_calls"] == 1
    assert s["hostname"] == "pbctl"


def test_router_off_then_access_point_then_back(res):
    r = res["router_off"]
    # 155 ms: still trying, no AP yet (AP_AFTER_MS = 200)
    assert r[1]["state"] == "connecting" and not r[1]["ap"]
    assert len(r[1]["connect_calls"]) == 2  # at 0 and after CONNECT_MS
    # 455 ms: AP open, station retried less often (RETRY_MS while the AP is up)
    assert r[2]["ap"] and r[2]["state"] == "connecting"
    n = len(r[2]["connect_calls"])
    assert 3 <= n <= 4, r[2]["connect_calls"]
    # router back: within a RETRY_MS the station is up and the AP closed
    assert r[4]["state"] == "up" and not r[4]["ap"] and r[4]["connects"] == 1


def test_wifi_loss_reconnects(res):
    r = res["loss"]
    assert r[0]["state"] == "up"
    assert r[1]["state"] == "connecting" and r[1]["losses"] == 1 and r[1]["ip"] is None
    assert r[2]["state"] == "up" and r[2]["connects"] == 2 and not r[2]["ap"]


def test_new_credentials_take_effect_at_once(res):
    r = res["wrong_pw"]
    assert r[0]["state"] == "connecting"
    assert r[1]["state"] == "up" and r[1]["connect_calls"][-1] == ["home", "secret"]


def test_trial_wrong_password_goes_back_to_the_old_network(res):
    t = res["trial"]
    assert t["before"]["status"] == {"state": "up", "connected": True, "ssid": "home", "ip": "192.168.1.50",
                                     "error": None, "connects": 1, "losses": 0, "ap": None}
    w = t["wrong"]
    assert w["ok"] is False and w["error"] == "wrong password"
    assert w["creds"] == {"ssid": "home", "password": "secret"}  # the old ones again
    assert w["ms"] < 300, w  # the reason ends the wait (CONNECT_MS 400)
    assert w["connect_calls"][-1] == ["home", "wrongpass"]
    n = t["nowhere"]
    assert n["ok"] is False and n["error"] == "network not found"
    assert n["creds"] == {"ssid": "home", "password": "secret"}
    assert n["state"] != "up"  # (nothing reconnected between the trials: no stale "up")
    o = t["other"]
    assert o["ok"] is True and o["state"] == "up" and o["creds"] == {"ssid": "attic", "password": "attic-pw1"}
    assert o["connect_calls"][-1] == ["attic", "attic-pw1"]
    assert t["status"]["ssid"] == "attic" and t["status"]["error"] is None and t["status"]["connected"]


def test_trial_from_the_access_point_lingers_then_closes_it(res):
    t = res["trial"]
    assert t["ap"]["status"] == {"state": "off", "connected": False, "ssid": None, "ip": None, "error": None,
                                 "connects": 0, "losses": 0, "ap": "pbctl-B2C3"}
    f = t["first"]
    assert f["ok"] is True and f["state"] == "up"
    assert f["ap"]  # still open: the phone that sent set_wifi reads the reply there
    assert t["lingered"]["ap"] is False and t["lingered"]["status"]["ap"] is None  # closed after AP_LINGER_MS


def test_ntp_failure_is_retried(res):
    first, later = res["ntp"]
    assert first["state"] == "up" and not first["synced"] and first["ntp_calls"] == 1
    assert later["synced"] and later["ntp_calls"] == 2
    assert "pbctl: NTP: OSError(110" in res["output"]


def test_the_event_loop_never_waits_on_the_wifi(res):
    # a task sleeping 5 ms at a time was never held up as long as a connection
    # takes (80 ms in the fake): nothing waits for the WiFi in a blocking call
    assert res["gap"] < 60, res["gap"]


# ---- credentials: /wifi.json (pbctl.wifi) ------------------------------------

def test_credentials_stored_and_loaded(tmp_path):
    flash = str(tmp_path)
    assert wifi.load_creds(flash) == {}  # none stored: first setup
    assert wifi.save_creds(flash, "home", "secret12") == {"ssid": "home", "password": "secret12"}
    assert json.loads((tmp_path / "wifi.json").read_text()) == {"ssid": "home", "password": "secret12"}
    assert not (tmp_path / "wifi.json.tmp").exists()  # written aside, then renamed into place
    assert wifi.load_creds(flash) == {"ssid": "home", "password": "secret12"}
    assert wifi.save_creds(flash, "café", "") == {"ssid": "café", "password": ""}  # an open network
    assert wifi.load_creds(flash) == {"ssid": "café", "password": ""}
    assert wifi.save_creds(flash, "home", "secret12", "ap-secret") == {"ssid": "home", "password": "secret12",
                                                                      "ap_password": "ap-secret"}
    assert wifi.load_creds(flash) == {"ssid": "home", "password": "secret12", "ap_password": "ap-secret"}
    assert wifi.save_creds(flash, "", None) == {}  # forget them
    assert not (tmp_path / "wifi.json").exists() and wifi.load_creds(flash) == {}


@pytest.mark.parametrize("ssid, pw, msg", [
    ("x" * 33, "secret12", "ssid: 1..32 bytes"),
    ("ü" * 17, "secret12", "ssid: 1..32 bytes"),  # 34 bytes in UTF-8
    ("home", "short", "password: 8..63 characters (WPA2), or empty for an open network"),
    ("home", "p" * 64, "password: 8..63 characters (WPA2), or empty for an open network"),
    ("home", 12345678, "password: 8..63 characters (WPA2), or empty for an open network"),
    (None, "secret12", "ssid: 1..32 bytes"),
    (5, "secret12", "ssid: 1..32 bytes"),
])
def test_bad_credentials_change_nothing(tmp_path, ssid, pw, msg):
    wifi.save_creds(str(tmp_path), "home", "secret12")
    with pytest.raises(ValueError) as e:
        wifi.save_creds(str(tmp_path), ssid, pw)
    assert str(e.value) == msg
    assert wifi.load_creds(str(tmp_path)) == {"ssid": "home", "password": "secret12"}


@pytest.mark.parametrize("junk", ["{", "[1, 2]", '{"ssid": 5, "password": "x"}', '{"ssid": "home"}', "\x00"])
def test_unreadable_credentials_are_none(tmp_path, capsys, junk):
    (tmp_path / "wifi.json").write_text(junk)
    assert wifi.load_creds(str(tmp_path)) == {}
    assert capsys.readouterr().out == "pbctl: /wifi.json unreadable, no WiFi credentials\n"
