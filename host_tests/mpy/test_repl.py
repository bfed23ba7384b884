"""REPL helpers (pbctl.status/get/set/log, pbctl/repl.py) under MicroPython,
where they run (the board's REPL), on a controller built from real device
objects (mpy/scripts/repl_status.py)."""
import json

import pytest

import mp


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    flash = tmp_path_factory.mktemp("flash")
    r = mp.run([mp.script("repl_status.py"), str(flash)], timeout=60, built=True, heap="128k")  # (.mpy code on the heap)
    assert r.returncode == 0, r.stdout + r.stderr
    text = r.stdout
    assert text.rstrip().endswith("END"), text
    return text, flash


def section(text, name):
    return text[text.index(name + "\n") + len(name) + 1:].splitlines()


def test_status_table(out):
    lines = section(out[0], "STATUS")
    assert lines[0] == "max_total_current 32000 mA, lb_enabled True, cycle 0 ms, 0 cycles, heap free 12345"
    assert lines[2].split() == ["E1", "Wallbox", "3", "15900", "15800", "15700", "16000"]
    assert lines[3].split()[:6] == ["M1", "grid", "role3", "0", "0", "0"]
    assert lines[3].endswith("com_err: modbus timeout")


def test_get_and_log(out):
    text = out[0]
    assert "GET True 32000\n" in text
    assert "LOG\nSET" in text  # no diagnostic ring yet: log() prints nothing


def test_set_is_saved_then_installed_by_the_control_task(out):
    text, flash = out
    assert "SET ok\nSAVED 20000 32000\nINSTALLED 20000 garage " in text
    with open(flash / "pbctl.json") as f:
        assert json.load(f)[0]["params"]["title"]  # (a list file: its head first) == "garage"


def test_set_refuses_bad_values_and_new_evses(out):
    text = out[0]
    assert "REFUSED ConfigError bad value: max_total_current\n" in text
    assert "REFUSED ValueError add EVSEs with cmd=set_params\n" in text
    assert "UNCHANGED 20000\n" in text
