"""tools/check.py, the ESP32-API type check (`make check`).

The checker itself: code using what only CPython or the unix port has fails,
code using the ESP32's API passes. And the firmware uses no module, function
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

BAD = '''\
import time
import json
import machine
import board
import termios
import select
from typing import Any

a = time.monotonic()
b = json.dumps({}, indent=2)
u = machine.UART(2, baudrate=9600, bogus=1)
c = board.TTY
d = select.epoll()
x = int.from_bytes(b"\\x01", "big", signed=True)
y = "{a}".format_map({"a": 1})
'''

GOOD = '''\
import gc
import json
import os
import sys
import time

import asyncio
import board
import machine
import network
import ntptime
from micropython import const

_X = const(3)


async def main():
    t = time.ticks_ms()
    await asyncio.sleep_ms(10)
    await asyncio.wait_for_ms(asyncio.sleep_ms(1), 100)
    u = board.uart()
    u.write(b"\\x01")
    print(u.txdone(), time.ticks_diff(time.ticks_ms(), t), gc.mem_free(), os.urandom(4))
    w = machine.WDT(timeout=10000)
    w.feed()
    s = network.WLAN(network.STA_IF)
    s.active(True)
    s.connect("ssid", "key")
    ntptime.settime()
    print(json.dumps({}, separators=(",", ":")), board.DE, time.gmtime()[:6])
    try:
        pass
    except Exception as e:
        sys.print_exception(e)
'''


def test_host_only_calls_fail(tmp_path):
    p = tmp_path / "bad.py"
    p.write_text(BAD)
    code, out = check.run([str(p)])
    assert code != 0, out
    for line, what in ((5, 'module named "termios"'), (9, 'no attribute "monotonic"'),
                       (10, 'argument "indent"'), (11, 'argument "bogus"'),
                       (12, 'no attribute "TTY"'),  # boards/HOST has it, the ESP32 board not
                       (13, 'no attribute "epoll"'), (7, "typing is not on the ESP32"),
                       (14, "signed="), (15, "format_map")):
        assert re.search(r"bad\.py:%d: error: .*%s" % (line, re.escape(what)), out), (line, what, out)


def test_esp32_calls_pass(tmp_path):
    p = tmp_path / "good.py"
    p.write_text(GOOD)
    code, out = check.run([str(p)])
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


def test_host_shims_are_not_checked():
    files = check.targets()
    assert "boards/ESP32_GENERIC/board.py" in files
    assert not [f for f in files if "HOST" in f or "shim" in f or f.endswith("manifest.py")]
