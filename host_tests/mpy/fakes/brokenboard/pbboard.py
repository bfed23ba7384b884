"""A board module that breaks safemode.check() itself (no FLASH): boot.py must
go on all the same (host_tests/board/test_esp32_boot.py)."""
leds = []


def led():
    return None
