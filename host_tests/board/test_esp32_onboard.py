"""The start-up on a board with WiFi (pbctl/board/onboard.py, pbctl.main) and aiorepl.

The real firmware (Sim: .mpy modules, the simulated bus) runs with a board
module that is the HOST shim plus what an ESP32 board says (WIFI, a status
LED that records its transitions: mpy/fakes/wifiboard/pbboard.py), the fakes
of `network` and `ntptime` (mpy/fakes/esp32/), and a stand-in for
micropython-lib's aiorepl (mpy/fakes/aiorepl/) that types the lines of
mpy/scripts/onboard_repl.txt at the REPL beside the running controller, as a
person with mpremote would. Without aiorepl (the host, every other e2e test)
the firmware runs as before.
"""
import json
import os
import re
import time

import pytest

import mp
from simrun import ADMIN, HEAP, Sim, heap_bytes


# micropython-lib's aiorepl.task() reads lines from the console and runs them in
# __main__'s globals; this one takes its lines from a file (FAKE_REPL).


def heap_with_code(build):
    """The firmware's data budget (simrun.HEAP, as in every e2e run: there the
    code runs from a ROMFS image, as on a board with a ROMFS partition or a
    frozen firmware) plus its code: here the .mpy files are loaded onto the
    heap (the fakes must be on the module path, which a ROMFS image is not) —
    loaded, a module costs about 1.5 times its file's size."""
    code = 0
    for top, _, names in os.walk(build):
        code += sum(os.path.getsize(os.path.join(top, n)) for n in names if n.endswith(".mpy"))
    return "%dk" % (heap_bytes(HEAP) // 1024 + (code * 3 // 2 + 1023) // 1024)


@pytest.fixture(scope="module")
def board_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("onboard")
    # MicroPython puts main.py's directory first on the module path: a copy of
    # the firmware's main.py alone in one, so that the module path is the fake
    # board, the fakes of `network`, `ntptime` and aiorepl, then the firmware
    # precompiled as in every e2e test
    with open(os.path.join(mp.ROOT, "firmware", "main.py")) as f:
        (d / "main.py").write_text(f.read())
    build = mp.build()
    path = [mp.fakes("wifiboard"), mp.fakes("esp32"), mp.fakes("aiorepl"), build, ".frozen"]
    s = Sim(main=str(d / "main.py"), fw_env={"FAKE_REPL": mp.script("onboard_repl.txt"),
                                             "MICROPYPATH": ":".join(path)}, heap=heap_with_code(build))
    s.start()
    try:
        served = [s.get("cmd=get_dev_info")[0]]
        for _ in range(200):  # until the REPL lines are done, /cnf keeps serving
            if "aiorepl: done\n" in s.fw_lines:
                break
            served.append(s.get("cmd=get_dev_info")[0])
            time.sleep(0.1)
        raw = s.request("cmd=get_params")[2]
        yield {"sim": s, "out": "".join(s.fw_lines), "served": served, "params_raw": raw}
    finally:
        s.stop()


def test_aiorepl_is_started_beside_the_controller(board_run):
    out = board_run["out"]
    assert "aiorepl: started" in out and "aiorepl: done" in out, out
    assert "REPL error" not in out.replace("REPL error: ValueError('password: 8..63", ""), out
    assert set(board_run["served"]) == {200} and len(board_run["served"]) >= 20
    assert out.index("pbctl: serving http://127.0.0.1:") < out.index("aiorepl: started")
    # a REPL helper at the aiorepl prompt sees the running controller
    status = out[out.index("REPL 8>\n"):].splitlines()
    assert re.fullmatch(r"max_total_current 32000 mA, lb_enabled True, cycle \d+ ms, \d+ cycles, heap free \d+",
                        status[1]), status
    assert status[3].split()[:2] == ["E1", "Wallbox"] and status[3].endswith("no vehicle"), status


def test_first_setup_access_point_and_credentials_from_the_repl(board_run):
    out = board_run["out"]
    assert "pbctl: setup access point pbctl-B2C3: http://192.168.4.1/\n" in out, out
    # pbctl.wifi() before any credentials: no network, the access point and its password (README's)
    first = out[out.index("REPL 2>\n"):out.index("REPL 3>\n")]
    assert first == ("REPL 2>\nWiFi off: network not set (pbctl.wifi(ssid, password))\n"
                     "  setup access point pbctl-B2C3, password pbctl-setup: http://192.168.4.1/\n")
    bad = out[out.index("REPL 3>\n"):out.index("REPL 4>\n")]
    assert bad == ("REPL 3>\nREPL error: ValueError('password: 8..63 characters (WPA2), "
                   "or empty for an open network',)\n")
    # stored, connected at once, the access point closed, the clock set
    with open(os.path.join(board_run["sim"].flash, "wifi.json")) as f:
        assert json.load(f) == {"ssid": "home", "password": "secret12"}
    after = out[out.index("REPL 4>\n"):]
    assert "pbctl: WiFi home connected: http://192.168.1.50/\n" in after
    assert "pbctl: setup access point closed\n" in after
    assert re.search(r"pbctl: time from NTP: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n", after)
    last = out[out.index("REPL 6>\n"):out.index("REPL 7>\n")]
    assert re.fullmatch(r"REPL 6>\nWiFi up: network 'home'\n  http://192\.168\.1\.50/, 1 connects, 0 losses\n"
                        r"  time from NTP [23] s ago\n", last), last


def test_wifi_loss_is_reconnected_while_the_controller_goes_on(board_run):
    out = board_run["out"]
    assert "REPL timeout" not in out, out
    lost = out[out.index("REPL 9>\n"):]
    before, after = [int(n) for n in re.findall(r"CYCLES (\d+)\n", lost)]
    assert after - before >= 2, lost  # cycle_time 1 s: the control loop went on while WiFi reconnected
    assert "pbctl: WiFi lost, reconnecting\n" in lost
    assert lost.index("pbctl: WiFi lost") < lost.index("REPL 11>") < lost.index("REPL 13>")
    assert lost.index("REPL 13>") < lost.index("pbctl: WiFi home connected")
    last = lost[lost.index("REPL 15>\n"):]
    assert "WiFi up: network 'home'\n  http://192.168.1.50/, 2 connects, 1 losses\n" in last, last
    assert set(board_run["served"]) == {200}  # /cnf answered all along


def test_the_station_password_is_never_shown(board_run):
    assert "secret12" not in board_run["out"]
    assert b"secret12" not in board_run["params_raw"]
    assert b"wifi" not in board_run["params_raw"].lower()


def test_status_led_on_while_the_access_point_is_open_then_slow_blink(board_run):
    out = board_run["out"]
    log = eval(re.search(r"LEDLOG (\[.*\])\n", out).group(1))
    levels = [v for v, _ in log]
    times = [t for _, t in log]
    # off until the control loop's first cycle (the LED looks once a second), then on: the access
    # point is open (no bus fault: the simulator answers), on until the station is up (~1.6 s)
    # and through the first half of the slow blink, then the slow blink
    assert levels[:2] == [0, 1] and times[1] - times[0] <= 1300, log
    assert times[2] - times[1] >= 1400, log
    assert len(log) >= 4, log
    for (v0, t0), (v1, t1) in zip(log[2:], log[3:]):
        assert v0 != v1 and 800 <= t1 - t0 <= 1300, log  # 1 s on, 1 s off


def test_a_start_is_marked_good_once_the_loop_has_run(tmp_path):
    r = mp.run([mp.script("mark_good.py")], env={"PBCTL_FLASH": str(tmp_path)}, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][0][7:])
    assert res == {"no_cycle_yet": "2", "hung": "2", "running": None, "task_done": True}


def test_admin_still_works_with_wifi(board_run):
    st, body = board_run["sim"].request("cmd=set_params", ADMIN, b'{"title": "garage"}', "POST",
                                        {"Content-Type": "application/json"})[:2]
    assert st == 200 and body == "ok"


def test_aiorepl_started_on_any_board_where_it_imports():
    # the plain HOST board (no WiFi): aiorepl on the module path is started all the same
    # (the .mpy build on the module path, "mpy" mode: a ROMFS image has only the firmware)
    with Sim(module_dirs=[mp.fakes("aiorepl")], fw_env={"FAKE_REPL": mp.script("aiorepl_app.txt")}, mode="mpy",
             heap=heap_with_code(mp.build())) as s:
        for _ in range(100):
            if "aiorepl: done\n" in s.fw_lines:
                break
            time.sleep(0.05)
        assert s.get("cmd=get_dev_info")[0] == 200
    out = "".join(s.fw_lines)
    assert "aiorepl: started\nREPL 0>\nAPP True\naiorepl: done\n" in out, out
    assert "WiFi" not in out and "access point" not in out

