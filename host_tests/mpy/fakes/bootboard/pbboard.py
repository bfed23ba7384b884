"""A board for the boot tests (host_tests/board/test_esp32_boot.py): its flash
is FAKE_FLASH, its LED records every level (leds), its BOOT button (only with
FAKE_PRESS_MS) reads pressed from FAKE_PRESS_MS after the first look at it on."""
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
