"""Board definition: generic ESP32-WROOM-32 (no PSRAM) + MAX485/MAX3485 transceiver.

Wiring (3.3 V logic): UART2 TX GPIO17 -> DI, RX GPIO16 <- RO, GPIO4 -> DE and /RE
(tied together), A/B to the Power Brain's Modbus terminals, 120 ohm
termination at both ends of the bus. Status LED on GPIO2; the BOOT button
(GPIO0) asks for safe mode while the LED is lit after reset (safemode.py).
Built and tested against MicroPython v1.29 (mpy format 6.3).
"""
from machine import UART, Pin

NAME = "ESP32_GENERIC"
UART_ID = 2
TX = 17
RX = 16
DE = 4
LED = 2
SAFE_PIN = 0  # the BOOT button: low while pressed
WIFI = True  # station + setup access point + NTP (net.py, started by onboard.py)
BAUD = 9600
HTTP_HOST = "0.0.0.0"
HTTP_PORT = 80
HTTP_MAX_CONNS = 4
# the devices' configuration at most (pbctl/cfgsize.py), measured on a 32-bit
# unix build at 96k (BENCHMARKS.md, RAM): the largest configuration at 13 994
# boots, serves and runs a session on every EVSE; at 15 360 it does not
CONFIG_SIZE = 14000
FLASH = ""  # the littlefs root: /pbctl.json
BUS_TIMEOUT_MS = 100
BUS_RETRIES = 1


def uart():
    # timeout=0: reads never block; asyncio polls the UART for readiness
    return UART(UART_ID, baudrate=BAUD, bits=8, parity=None, stop=1, tx=TX, rx=RX, timeout=0, timeout_char=0,
                rxbuf=512)


def de_pin():
    return Pin(DE, Pin.OUT, value=0)


def led():
    return Pin(LED, Pin.OUT, value=0)


def safe_pin():
    return Pin(SAFE_PIN, Pin.IN, Pin.PULL_UP)


def serial():
    """This controller's serial number (params.vsn.serialno, INTEGRATIONS.md §1):
    the chip's unique id (its factory MAC), "xxxx-xxxx-xxxx", hex."""
    import binascii

    import machine

    h = binascii.hexlify(machine.unique_id()).decode()[-12:]
    return "%s-%s-%s" % (h[0:4], h[4:8], h[8:12])


def watchdog():
    """The hardware watchdog (10 s); pbctl feeds it only while the control loop is healthy."""
    from machine import WDT

    return WDT(timeout=10000)


def reset():
    """A restart (after an update: cmd=update)."""
    import machine

    machine.reset()
