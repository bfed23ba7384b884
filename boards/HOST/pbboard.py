"""Board definition for the MicroPython unix port (`make sim`, e2e tests).

The one host-only shim: the UART is the simulator's pseudo-terminal, the
RS-485 driver-enable pin a stand-in that remembers its last value, settings
come from environment variables (PBCTL_*). Excluded from the ESP32 check.
"""
import os

NAME = "HOST"
_e = os.getenv
BAUD = int(_e("PBCTL_BAUD") or 9600)
HTTP_HOST = _e("PBCTL_HTTP_HOST") or "127.0.0.1"
HTTP_PORT = int(_e("PBCTL_HTTP_PORT") or 8080)
HTTP_MAX_CONNS = int(_e("PBCTL_HTTP_MAX_CONNS") or 4)
FLASH = _e("PBCTL_FLASH") or "/tmp/pbctl-flash"
TTY = _e("PBCTL_TTY") or ""
ADMIN_PWD = _e("PBCTL_ADMIN_PWD") or ""  # preset first admin password (simulation only)
BUS_TIMEOUT_MS = int(_e("PBCTL_BUS_TIMEOUT_MS") or 100)
BUS_RETRIES = int(_e("PBCTL_BUS_RETRIES") or 1)
CLOCK_OFFSET = int(_e("PBCTL_CLOCK_OFFSET") or 0)  # s added to the host's clock (tests of local time)
GOOD_MS = int(_e("PBCTL_GOOD_MS") or 30000)  # a start is good after (safemode.GOOD_MS on a board)
CONFIG_SIZE = int(_e("PBCTL_CONFIG_SIZE") or 0)  # pbctl/cfgsize.py; tools/simrun.py derives it from the heap


class Pin:
    def __init__(self):
        self.v = 0

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


def uart():
    """The pty in PBCTL_TTY, raw, non-blocking reads (VMIN = VTIME = 0)."""
    import termios

    f = open(TTY, "r+b")
    fd = f.fileno()
    termios.setraw(fd)
    a = termios.tcgetattr(fd)
    a[6][6] = 0  # VMIN
    a[6][5] = 0  # VTIME
    termios.tcsetattr(fd, termios.TCSANOW, a)
    return f


def de_pin():
    return Pin()


def led():
    return None


def serial():
    """This controller's serial number (params.vsn.serialno, INTEGRATIONS.md §1):
    on the host derived from the flash directory, so a simulated controller
    keeps it across restarts; "xxxx-xxxx-xxxx", hex."""
    import binascii
    import hashlib

    h = binascii.hexlify(hashlib.sha256(FLASH.encode()).digest()[:6]).decode()
    return "%s-%s-%s" % (h[0:4], h[4:8], h[8:12])


def reset():
    """machine.reset() on the host: the process ends with status 75, and
    whoever started it (tools/sim.py, a test) starts it again on the same flash."""
    import sys

    sys.exit(75)
