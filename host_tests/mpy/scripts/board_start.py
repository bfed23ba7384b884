# What the ESP32 port does after reset (ports/esp32/main.c: pyexec boot.py,
# main.py, then the REPL): the firmware's boot.py and main.py from source, in
# one globals dict, an exception printed and the next file run; then
# "REPL leds=..." with the board's LED levels.
# Usage: micropython board_start.py ROOT. Run by host_tests/board/test_esp32_boot.py.
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
import pbboard

print("REPL leds=%s" % pbboard.leds)
