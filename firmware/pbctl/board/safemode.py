"""Safe mode: the board boots to a free REPL without starting the controller.

boot.py calls check() at every reset and keeps this module loaded only in
safe mode; main.py starts the controller unless it finds it loaded with a
`reason`. A boot is in safe mode when
- the BOOT button (GPIO0, board.safe_pin()) is pressed while the LED is lit
  for WINDOW_MS after reset. Pressed *at* reset it would not work: GPIO0 low
  while the chip leaves reset starts the ROM's flash download mode instead;
- the file /safemode exists (enter() makes it, leave() removes it);
- the last MAX_FAILS starts did not come up: /bootfails counts the starts
  not yet marked good, and the firmware marks a start good (good()) once
  its control loop has run for GOOD_MS (onboard.py). A start that raises,
  hangs or is reset by the watchdog before that leaves the count up; after
  MAX_FAILS of them in a row the next boot is in safe mode and the count
  starts over, so a power cycle or machine.reset() after it tries again.
In safe mode the LED stays on and the watchdog is never started (once
running it cannot be stopped, not even from the REPL). Everything here
catches its own errors: a full or broken flash means a normal start.

    >>> from pbctl.board import safemode
    >>> safemode.enter()    # from the next reset on: safe mode until leave()
    >>> safemode.leave()    # and machine.reset(): the controller starts again
"""
import time

MAX_FAILS = 3
WINDOW_MS = 1000
GOOD_MS = 30000
FLAG = "/safemode"
COUNT = "/bootfails"

reason = None  # why this boot is in safe mode; None: start the controller


def _path(name):
    import pbboard as board

    return board.FLASH + name


def check():
    """Decide at boot (boot.py); returns the reason for safe mode or None."""
    global reason
    import pbboard as board

    led = board.led() if hasattr(board, "led") else None
    reason = _button(board, led) or _flag() or _count()
    if led:
        led.value(1 if reason else 0)
    if reason:
        print("pbctl: safe mode (%s): the controller is not started. To start it: "
              "from pbctl.board import safemode; safemode.leave(); machine.reset()" % reason)
    return reason


def _button(board, led):
    if not hasattr(board, "safe_pin"):
        return None
    pin = board.safe_pin()
    if led:
        led.value(1)  # "press BOOT now for safe mode"
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < WINDOW_MS:
        if not pin.value():
            return "BOOT button"
        time.sleep_ms(10)
    return None


def _flag():
    import os

    try:
        os.stat(_path(FLAG))
        return FLAG + " exists"
    except OSError:
        return None


def _count():
    path = _path(COUNT)
    try:
        with open(path) as f:
            n = int(f.read())
    except (OSError, ValueError):
        n = 0
    if n >= MAX_FAILS:
        _write(path, "0")
        return "%d failed starts" % n
    _write(path, str(n + 1))
    return None


def _write(path, text):
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:  # a full flash must not stop the boot
        print("pbctl: %s: %r" % (path, e))


def good():
    """This start came up: the failed-start count goes back to none, and a
    version installed over HTTP is kept (pbslot.good)."""
    import os
    import sys

    try:
        os.remove(_path(COUNT))
    except OSError:
        pass
    try:
        import pbslot

        pbslot.good(_path(""))
        del sys.modules["pbslot"]
    except Exception as e:  # (ImportError: no pbslot.py on this board)
        print("pbctl: pbslot:", repr(e))


def enter():
    """Safe mode from the next reset on, until leave()."""
    _write(_path(FLAG), "")


def leave():
    """No safe mode at the next reset (and no failed starts counted)."""
    import os

    for name in (FLAG, COUNT):
        try:
            os.remove(_path(name))
        except OSError:
            pass
