"""Boot never bricks: firmware/boot.py + main.py + safemode.py, and a corrupt
configuration at boot.

The board's start-up is played under MicroPython the way the ESP32 port does
it: boot.py, then main.py, each from source in one globals dict, an exception
printed and the next file run, then the REPL. The board module and pbctl are
fakes put ahead on the module path (the board: a flash directory, a BOOT
button pressed after a given time, an LED that records its levels; pbctl:
run() that says so, or crashes), safemode.py, boot.py and main.py are the
real ones. The corrupt-configuration tests run the real firmware (Sim).
"""
import json
import os
import subprocess

import pytest

import mp
from simrun import Sim

FAKE_BOARD = r'''
import os
import time

FLASH = os.getenv("FAKE_FLASH")
leds = []


class _Led:
    def value(self, v=None):
        leds.append(v)


class _Button:
    """Pressed (low) from FAKE_PRESS_MS after the first look at it on."""

    def __init__(self, press_ms):
        self.press_ms = press_ms
        self.t0 = None

    def value(self):
        if self.t0 is None:
            self.t0 = time.ticks_ms()
        return 0 if time.ticks_diff(time.ticks_ms(), self.t0) >= self.press_ms else 1


def led():
    return _Led()


if os.getenv("FAKE_PRESS_MS"):
    def safe_pin():
        return _Button(int(os.getenv("FAKE_PRESS_MS")))
'''

FAKE_PBCTL = r'''
import os
import sys


def run():
    print("PBCTL RUN (safemode loaded: %s)" % ("safemode" in sys.modules))
    if os.getenv("FAKE_CRASH"):
        raise MemoryError("start-up crash")
'''

# What the ESP32 port does after reset (ports/esp32/main.c: pyexec boot.py, main.py, then the REPL).
BOARD_START = r'''
import sys

ROOT = sys.argv[1]
g = {"__name__": "__main__"}
for name in ("boot.py", "main.py"):
    try:
        with open(ROOT + "/firmware/" + name) as f:
            src = f.read()
        exec(src, g)
    except Exception as e:
        print("TRACEBACK %s: %r" % (name, e))
import board

print("REPL leds=%s" % board.leds)
'''


@pytest.fixture
def board_dir(tmp_path):
    d = tmp_path / "mods"
    d.mkdir()
    (d / "board.py").write_text(FAKE_BOARD)
    (d / "pbctl.py").write_text(FAKE_PBCTL)
    (d / "board_start.py").write_text(BOARD_START)
    flash = tmp_path / "flash"
    flash.mkdir()
    return d, flash


def run(board_dir, args, **env):
    """MicroPython with the fake board's modules first on the path; returns its output."""
    d, flash = board_dir
    e = mp.micropython_env(str(d))
    e["FAKE_FLASH"] = str(flash)
    e.update(env)
    r = subprocess.run([mp.micropython_bin(), "-X", "heapsize=" + mp.HEAP] + args, cwd=mp.ROOT, env=e,
                       capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    return out


def reset(board_dir, **env):
    """One power-up of the fake board; returns its output."""
    out = run(board_dir, [str(board_dir[0] / "board_start.py"), mp.ROOT], **env)
    assert "REPL" in out, out
    return out


def repl(board_dir, line):
    """One line at the board's REPL."""
    return run(board_dir, ["-c", line])


def count(board_dir):
    p = board_dir[1] / "bootfails"
    return p.read_text() if p.exists() else None


SAFE = "pbctl: safe mode (%s): the controller is not started. To start it: " \
       "import safemode; safemode.leave(); machine.reset()"


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
    repl(board_dir, "import safemode; safemode.good()")
    assert count(board_dir) is None
    reset(board_dir, FAKE_CRASH="1")
    reset(board_dir, FAKE_CRASH="1")
    out = reset(board_dir)
    assert "PBCTL RUN" in out and count(board_dir) == "3"  # three in a row again before safe mode


def test_safemode_file_until_leave(board_dir):
    flash = board_dir[1]
    repl(board_dir, "import safemode; safemode.enter()")
    assert (flash / "safemode").exists()
    for _ in range(2):
        out = reset(board_dir)
        assert "PBCTL RUN" not in out and SAFE % "/safemode exists" in out, out
    assert count(board_dir) is None  # safe mode on purpose is no failed start
    repl(board_dir, "import safemode; safemode.leave()")
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
    d, _ = board_dir
    # a board module that breaks safemode.check() itself (FLASH missing)
    (d / "board.py").write_text("leds = []\n\n\ndef led():\n    return None\n")
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
        assert "pbctl: bad configuration in %s/pbctl.json, using defaults\n" % s.flash in s.fw_lines


def test_corrupt_config_falls_back_to_the_previous_copy():
    good = {"params": {"max_total_current": 20000, "title": "previous"}}
    with boot_with({"pbctl.json": "{", "pbctl.bak": json.dumps(good)}) as s:
        st, p = s.get("cmd=get_params")
        assert st == 200 and p["max_total_current"] == 20000 and p["title"] == "previous"
        assert p["devices"] == []
