"""tools/check.py, the ESP32-API type check (`make check`).

The checker itself: code using what only CPython or the unix port has fails,
code using the ESP32's API passes (check_samples/). And the firmware uses no module, function
or argument the ESP32 lacks. (The whole `make check` also counts mypy's
findings about the firmware's own classes; see tools/check.ini.)
The first run creates .venv-check (pip, a few seconds).
"""
import importlib.util
import os
import re

import mp

# tools/check.py, loaded by its path: "check" is too common a module name
_spec = importlib.util.spec_from_file_location("esp32check", os.path.join(mp.ROOT, "tools", "check.py"))
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)
# the checker's inputs: code using what only CPython or the unix port has, and
# code using the ESP32's API (never run, only checked)
SAMPLES = os.path.join(mp.ROOT, "host_tests", "tools", "check_samples")


def test_host_only_calls_fail():
    code, out = check.run([os.path.join(SAMPLES, "esp32_bad.py")])
    assert code != 0, out
    for line, what in ((5, 'module named "termios"'), (9, 'no attribute "monotonic"'),
                       (10, 'argument "indent"'), (11, 'argument "bogus"'),
                       (12, 'no attribute "TTY"'),  # boards/HOST has it, the ESP32 board not
                       (13, 'no attribute "epoll"'), (7, "typing is not on the ESP32"),
                       (14, "signed="), (15, "format_map")):
        assert re.search(r"esp32_bad\.py:%d: error: .*%s" % (line, re.escape(what)), out), (line, what, out)


def test_esp32_calls_pass():
    code, out = check.run([os.path.join(SAMPLES, "esp32_good.py")])
    assert code == 0, out


API = re.compile(r"Module has no attribute|Cannot find implementation or library stub|\[esp32-|\[call-arg\]"
                 r"|Unexpected keyword argument|Name .* is not defined")


def test_the_firmware_uses_only_esp32_apis():
    code, out = check.run()
    found = [ln for ln in out.splitlines() if API.search(ln)]
    assert not found, "\n".join(found)
    n = len(check.targets())
    assert code == 0, out
    assert "no issues found in %d source files" % n in out, out


def test_every_module_is_checked_and_no_host_shim():
    files = check.targets()
    assert "boards/ESP32_GENERIC/pbboard.py" in files
    # the packages' modules, sub-packages too, and boot.py / main.py
    for f in ("lib/pblib/rtu.py", "firmware/pbctl/__init__.py", "firmware/pbctl/api/cnf.py",
              "firmware/pbctl/board/safemode.py", "firmware/boot.py", "firmware/main.py"):
        assert f in files, f
    assert not [f for f in files if "HOST" in f or "shim" in f or f.endswith("manifest.py")]
