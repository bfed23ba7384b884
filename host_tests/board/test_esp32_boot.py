"""Boot never bricks: firmware/boot.py + main.py + pbctl/board/safemode.py, and
a corrupt configuration at boot.

The board's start-up is played under MicroPython the way the ESP32 port does
it (mpy/scripts/board_start.py): boot.py, then main.py, each from source in
one globals dict, an exception printed and the next file run, then the REPL.
The board module and pbctl are fakes put ahead on the module path
(mpy/fakes/bootboard/: the board with a flash directory, a BOOT button
pressed after a given time, an LED that records its levels; pbctl with run()
that says so, or crashes, and the real package's parts), safemode.py,
boot.py and main.py are the real ones. The corrupt-configuration tests run
the real firmware (Sim).
"""
import json
import os
import subprocess

import pytest

import mp
from simrun import Sim


# What the ESP32 port does after reset (ports/esp32/main.c: pyexec boot.py, main.py, then the REPL).


@pytest.fixture
def board_dir(tmp_path):
    """(the fake board's module directories, its flash)."""
    flash = tmp_path / "flash"
    flash.mkdir()
    return [mp.fakes("bootboard")], flash


def run(board_dir, args, **env):
    """MicroPython with the fake board's modules first on the path; returns its output."""
    dirs, flash = board_dir
    e = mp.micropython_env(*dirs)
    e["FAKE_FLASH"] = str(flash)
    e.update(env)
    r = subprocess.run([mp.micropython_bin(), "-X", "heapsize=" + mp.HEAP] + args, cwd=mp.ROOT, env=e,
                       capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    return out


def reset(board_dir, **env):
    """One power-up of the fake board; returns its output."""
    out = run(board_dir, [mp.script("board_start.py"), mp.ROOT], **env)
    assert "REPL" in out, out
    return out


def repl(board_dir, line):
    """One line at the board's REPL."""
    return run(board_dir, ["-c", line])


def count(board_dir):
    p = board_dir[1] / "bootfails"
    return p.read_text() if p.exists() else None


SAFE = "pbctl: safe mode (%s): the controller is not started. To start it: " \
       "from pbctl.board import safemode; safemode.leave(); machine.reset()"


def test_normal_boot_starts_the_controller_and_counts_the_start(board_dir):
    out = reset(board_dir)
    assert "PBCTL RUN" in out and "safe mode" not in out and "TRACEBACK" not in out, out
    assert "(safemode loaded: False)" in out  # boot.py dropped it: no heap for it while the controller runs
    assert count(board_dir) == "1"  # not yet marked good
    assert "REPL leds=[0]" in out  # no BOOT button on this board: the LED is only switched off


def test_three_failed_starts_then_safe_mode_then_try_again(board_dir):
    for n in (1, 2, 3):
        out = reset(board_dir, FAKE_CRASH="1")
        assert "PBCTL RUN" in out and "TRACEBACK main.py: MemoryError('start-up crash',)" in out, out
        assert count(board_dir) == str(n)
    out = reset(board_dir, FAKE_CRASH="1")
    assert "PBCTL RUN" not in out and SAFE % "3 failed starts" in out, out
    assert "REPL leds=[1]" in out  # on: safe mode
    assert count(board_dir) == "0"  # the next reset tries again
    out = reset(board_dir)
    assert "PBCTL RUN" in out and count(board_dir) == "1"


def test_a_good_start_clears_the_count(board_dir):
    reset(board_dir, FAKE_CRASH="1")
    reset(board_dir, FAKE_CRASH="1")
    assert count(board_dir) == "2"
    repl(board_dir, "from pbctl.board import safemode; safemode.good()")
    assert count(board_dir) is None
    reset(board_dir, FAKE_CRASH="1")
    reset(board_dir, FAKE_CRASH="1")
    out = reset(board_dir)
    assert "PBCTL RUN" in out and count(board_dir) == "3"  # three in a row again before safe mode


def test_safemode_file_until_leave(board_dir):
    flash = board_dir[1]
    repl(board_dir, "from pbctl.board import safemode; safemode.enter()")
    assert (flash / "safemode").exists()
    for _ in range(2):
        out = reset(board_dir)
        assert "PBCTL RUN" not in out and SAFE % "/safemode exists" in out, out
    assert count(board_dir) is None  # safe mode on purpose is no failed start
    repl(board_dir, "from pbctl.board import safemode; safemode.leave()")
    assert not (flash / "safemode").exists()
    out = reset(board_dir)
    assert "PBCTL RUN" in out and "safe mode" not in out, out


def test_boot_button_pressed_while_the_led_is_lit(board_dir):
    out = reset(board_dir, FAKE_PRESS_MS="300")
    assert "PBCTL RUN" not in out and SAFE % "BOOT button" in out, out
    assert "REPL leds=[1, 1]" in out  # lit for the window, stays lit in safe mode


def test_boot_button_pressed_too_late(board_dir):
    out = reset(board_dir, FAKE_PRESS_MS="1500")  # after the 1 s window
    assert "PBCTL RUN" in out and "safe mode" not in out, out
    assert "REPL leds=[1, 0]" in out  # lit for the window, then off


def test_unwritable_flash_still_starts(board_dir):
    out = reset(board_dir, FAKE_FLASH="/nonexistent-pbctl-flash")
    assert "PBCTL RUN" in out and "pbctl: /nonexistent-pbctl-flash/bootfails: OSError" in out, out


def test_nothing_in_boot_py_stops_the_boot(board_dir):
    # a board module that breaks safemode.check() itself (FLASH missing)
    board_dir[0].insert(0, mp.fakes("brokenboard"))
    out = reset(board_dir)
    assert "pbctl: boot.py: AttributeError(" in out and "PBCTL RUN" in out, out


def test_main_py_without_boot_py_starts_the_controller(board_dir):
    # the host (make sim, e2e) runs main.py alone: no safe-mode check, no count
    out = repl(board_dir, "exec(open(%r).read(), {'__name__': '__main__'})"
               % os.path.join(mp.ROOT, "firmware", "main.py"))
    assert "PBCTL RUN" in out, out
    assert count(board_dir) is None


# ---- a corrupt configuration at boot: the real firmware still serves /cnf ----

class boot_with(Sim):
    """The firmware started on a flash holding these files; its log shows no traceback."""

    def __init__(self, files):
        super().__init__()
        for name, text in files.items():
            with open(os.path.join(self.flash, name), "w") as f:
                f.write(text)

    def __exit__(self, *a):
        super().__exit__(*a)
        log = "".join(self.fw_lines)
        assert "Traceback" not in log.replace("KeyboardInterrupt", "") and "MemoryError" not in log, log


def test_corrupt_config_boots_the_factory_configuration():
    with boot_with({"pbctl.json": '{"params": {"max_tot', "pbctl.bak": "\x00\x00"}) as s:
        st, p = s.get("cmd=get_params")
        assert st == 200
        assert p["max_total_current"] == 32000 and p["title"] == "cFos Power Brain"
        assert [d["dev_id"] for d in p["devices"]] == ["E1", "M1", "M2"]
        st, info = s.get("cmd=get_dev_info")
        assert st == 200 and [d["dev_id"] for d in info["devices"]] == ["E1", "M1", "M2"]


def test_invalid_config_values_fall_back_to_defaults():
    bad = {"params": {"max_total_current": "lots", "title": "mine"},
           "devices": [["evse_powerbrain", "E1", {"address": "evse", "id": 1, "max_charging_cur": -5}]]}
    with boot_with({"pbctl.json": json.dumps(bad)}) as s:
        st, p = s.get("cmd=get_params")
        assert st == 200 and p["max_total_current"] == 32000 and p["title"] == "cFos Power Brain"
        assert [d["dev_id"] for d in p["devices"]] == ["E1", "M1", "M2"]
        assert "pbctl: bad configuration in %s/pbctl.json (ConfigError), using defaults\n" % s.flash in s.fw_lines


def test_corrupt_config_falls_back_to_the_previous_copy():
    good = {"params": {"max_total_current": 20000, "title": "previous"}}
    with boot_with({"pbctl.json": "{", "pbctl.bak": json.dumps(good)}) as s:
        st, p = s.get("cmd=get_params")
        assert st == 200 and p["max_total_current"] == 20000 and p["title"] == "previous"
        assert p["devices"] == []
