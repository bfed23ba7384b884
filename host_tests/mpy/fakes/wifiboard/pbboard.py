"""The HOST board (boards/HOST/pbboard.py) and what an ESP32 board says on top:
WIFI (pbctl/board/onboard.py starts the WiFi task, the status LED, the good-start
mark) and a status LED that records its transitions. For
host_tests/board/test_esp32_onboard.py."""
import time as _time

with open(__file__.rsplit("/", 5)[0] + "/boards/HOST/pbboard.py") as _f:  # (the repository's root)
    exec(_f.read())
del _f

WIFI = True
led_log = []  # [level, ticks_ms] at every change


class _Led:
    def value(self, v):
        if not led_log or led_log[-1][0] != v:
            led_log.append([v, _time.ticks_ms()])


def led():
    return _Led()
