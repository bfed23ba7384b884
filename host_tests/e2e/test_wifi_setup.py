"""WiFi setup from the web UI (issue 18 §2, INTEGRATIONS.md §6): cmd=scan_wifi
and cmd=set_wifi through the real firmware under MicroPython, against the
simulated bus.

The board module is the HOST one plus what an ESP32 board says (WIFI:
mpy/fakes/wifiboard/pbboard.py), the radio the fake of the ESP32's `network`
(mpy/fakes/esp32/network.py) with the world of FAKE_WIFI: the networks in
reach and what a scan finds. No credentials are stored: the board starts on
its setup access point, as a new board does. The fakes must be on the module
path, which a ROMFS image is not: the .mpy files are loaded onto the heap,
which is the e2e data budget (simrun.HEAP) plus 1.5 times the code's size
(as host_tests/board/test_esp32_onboard.py does).
"""
import json
import os
import time

import pytest

import mp
from conftest import assert_clean_log
from simrun import ADMIN, HEAP, Sim, heap_bytes

PW = "home-pass-1"  # the right password: never in a reply or in the firmware's output
WRONG = "wrong-pass-2"
WORLD = {"nets": {"home": PW, "attic": "attic-pass"},
         "scan": [["attic", 1, -81, 3], ["home", 6, -52, 4], ["cafe", 11, -67, 0], ["home", 11, -75, 4],
                  ["", 3, -40, 3]]}
JSON = {"Content-Type": "application/json"}


def heap_with_code(build):
    code = 0
    for top, _, names in os.walk(build):
        code += sum(os.path.getsize(os.path.join(top, n)) for n in names if n.endswith(".mpy"))
    return "%dk" % (heap_bytes(HEAP) // 1024 + (code * 3 // 2 + 1023) // 1024)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("wifi")
    with open(os.path.join(mp.ROOT, "firmware", "main.py")) as f:
        (d / "main.py").write_text(f.read())  # alone in its directory: it comes first on the module path
    build = mp.build()
    path = [mp.fakes("wifiboard"), mp.fakes("esp32"), build, ".frozen"]
    s = Sim(main=str(d / "main.py"), fw_env={"MICROPYPATH": ":".join(path), "FAKE_WIFI": json.dumps(WORLD)},
            heap=heap_with_code(build))
    s.start()
    try:
        for _ in range(100):  # the WiFi task has run: the access point is open
            if any("setup access point" in ln for ln in s.fw_lines):
                break
            time.sleep(0.05)
        yield s
    finally:
        s.stop()
        assert_clean_log(s)


def post(sim, cmd, body, auth=ADMIN):
    st, obj, raw, _ = sim.request("cmd=" + cmd, auth, json.dumps(body).encode(), "POST", JSON, timeout=30)
    return st, obj


def wifi_json(sim):
    try:
        with open(os.path.join(sim.flash, "wifi.json")) as f:
            return json.load(f)
    except OSError:
        return None


def config(sim):
    """get_params without what changes by itself (the clock, the power figures)."""
    p = sim.get("cmd=get_params", ADMIN)[1]
    for k in ("time", "local_time", "cons_evse_power", "avail_evse_power", "max_total_evse_power"):
        del p[k]
    return p


def test_a_new_board_is_on_its_access_point(sim):
    st, info = sim.get("cmd=sys_info", ADMIN)
    assert st == 200
    assert info["wifi"] == {"state": "off", "connected": False, "ssid": None, "ip": None, "error": None,
                            "connects": 0, "losses": 0, "ap": "pbctl-B2C3"}
    assert "pbctl: setup access point pbctl-B2C3: http://192.168.4.1/\n" in sim.fw_lines


@pytest.mark.parametrize("cmd", ["scan_wifi", "set_wifi"])
def test_admin_only(sim, cmd):
    assert sim.get("cmd=" + cmd) == (401, "authentication required")
    assert post(sim, cmd, {"ssid": "home", "password": PW}, ("admin", "nope1234"))[0] == 401
    assert wifi_json(sim) is None


def test_scan_lists_the_networks_in_reach(sim):
    scans = sum(1 for ln in sim.fw_lines if "scan" in ln)
    st, obj = sim.get("cmd=scan_wifi", ADMIN)
    assert (st, obj) == (200, {"networks": [
        {"ssid": "home", "rssi": -52, "signal": 96, "security": "wpa/wpa2", "channel": 6},
        {"ssid": "cafe", "rssi": -67, "signal": 66, "security": "open", "channel": 11},
        {"ssid": "attic", "rssi": -81, "signal": 38, "security": "wpa2", "channel": 1},
    ]})
    # the scan holds the board's event loop (~2 s on the ESP32): not again within 10 s
    assert sim.get("cmd=scan_wifi", ADMIN) == (503, "busy")
    assert sum(1 for ln in sim.fw_lines if "scan" in ln) == scans


@pytest.mark.parametrize("body, err", [
    ({"password": PW}, "bad value: ssid"),
    ({"ssid": "", "password": PW}, "bad value: ssid"),
    ({"ssid": "x" * 33, "password": PW}, "bad value: ssid"),
    ({"ssid": 7, "password": PW}, "bad value: ssid"),
    ({"ssid": "home", "password": "short"}, "bad value: password"),
    ({"ssid": "home", "password": "p" * 64}, "bad value: password"),
    ({"ssid": "home", "password": 12345678}, "bad value: password"),
    ({"ssid": "home", "password": PW, "ap_password": "short"}, "bad value: ap_password"),
    (["home", PW], "bad value: ssid"),
])
def test_bad_values_change_nothing(sim, body, err):
    assert post(sim, "set_wifi", body) == (400, err)
    assert wifi_json(sim) is None
    assert sim.get("cmd=sys_info", ADMIN)[1]["wifi"]["ssid"] is None


def test_set_wifi_is_a_post(sim):
    assert sim.get("cmd=set_wifi&ssid=home&password=" + PW, ADMIN) == (405, "method not allowed")


def test_wrong_password_reports_the_failure_and_changes_nothing(sim):
    params = config(sim)
    c0 = sim.get("cmd=sys_info", ADMIN)[1]["cycles"]
    t0 = time.time()
    assert post(sim, "set_wifi", {"ssid": "home", "password": WRONG}) == (502, "wifi: wrong password")
    assert time.time() - t0 < 5  # the radio's reason ends the wait (not the 20 s bound)
    assert post(sim, "set_wifi", {"ssid": "elsewhere", "password": WRONG}) == (502, "wifi: network not found")
    assert wifi_json(sim) is None  # nothing stored
    w = sim.get("cmd=sys_info", ADMIN)[1]
    assert w["wifi"] == {"state": "down", "connected": False, "ssid": None, "ip": None,
                         "error": "network not found", "connects": 0, "losses": 0, "ap": "pbctl-B2C3"}
    assert w["cycles"] > c0  # the control loop went on meanwhile
    assert config(sim) == params


def test_right_password_connects_and_is_stored(sim):
    st, obj = post(sim, "set_wifi", {"ssid": "home", "password": PW})
    assert (st, obj) == (200, {"connected": True, "ssid": "home", "ip": "192.168.1.50"})
    assert wifi_json(sim) == {"ssid": "home", "password": PW}
    w = sim.get("cmd=sys_info", ADMIN)[1]["wifi"]
    # the access point stays open 5 minutes: the phone that sent set_wifi is on it
    assert w == {"state": "up", "connected": True, "ssid": "home", "ip": "192.168.1.50", "error": None,
                 "connects": 1, "losses": 0, "ap": "pbctl-B2C3"}
    # a failed change now goes back to the network in use, which stays stored
    assert post(sim, "set_wifi", {"ssid": "attic", "password": WRONG}) == (502, "wifi: wrong password")
    assert wifi_json(sim) == {"ssid": "home", "password": PW}
    for _ in range(40):
        w = sim.get("cmd=sys_info", ADMIN)[1]["wifi"]
        if w["connected"]:
            break
        time.sleep(0.1)
    assert (w["ssid"], w["connected"], w["connects"]) == ("home", True, 2)


def test_the_password_is_never_shown(sim):
    for q in ("cmd=get_params", "cmd=get_dev_info", "cmd=sys_info", "cmd=get_config"):
        raw = sim.request(q, ADMIN)[2]
        assert PW.encode() not in raw and WRONG.encode() not in raw, q
        assert b"attic-pass" not in raw, q
    log = "".join(sim.fw_lines)
    assert PW not in log and WRONG not in log
