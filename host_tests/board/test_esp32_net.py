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


def test_password():
    pw = wifi.make_password(lambda n: bytes(range(n)))
    assert pw == "abcdefghijkm"  # byte b -> one of 32 characters
    assert len(set(wifi.make_password(lambda n: bytes(range(256))[:n], 256))) == 32
    import os

    pw = wifi.make_password(os.urandom)
    assert 8 <= len(pw) <= 63  # WPA2
    assert all(c in wifi._PW_CHARS for c in pw)
    for bad in "l1o0IO":
        assert bad not in wifi._PW_CHARS


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
    assert s["ap_cfg"] == {"ssid": "pbctl-B2C3", "key": s["password"], "security": 3}  # WPA2-PSK
    assert 8 <= len(s["password"]) <= 63
    assert s["connect_calls"] == [] and s["state"] == "off"
    # the password is shown on the REPL (and only there)
    assert "setup access point pbctl-B2C3, password %s: http://192.168.4.1/cnf" % s["password"] in res["output"]


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
    assert wifi.save_creds(flash, "", None) == {}  # forget them
    assert not (tmp_path / "wifi.json").exists() and wifi.load_creds(flash) == {}


@pytest.mark.parametrize("ssid, pw, msg", [
    ("x" * 33, "secret12", "ssid: 1..32 bytes"),
    ("ü" * 17, "secret12", "ssid: 1..32 bytes"),  # 34 bytes in UTF-8
    ("home", "short", "password: 8..63 characters (WPA2), or empty for an open network"),
    ("home", "p" * 64, "password: 8..63 characters (WPA2), or empty for an open network"),
    ("home", 12345678, "password: 8..63 characters (WPA2), or empty for an open network"),
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
