"""A stand-in for the ESP32's network module: one radio, networks that come and go.

world["nets"]: ssid -> password of the networks in reach; world["scan"]: what
WLAN.scan() finds, as the ESP32 port returns it (ssid, bssid, channel, RSSI,
security, hidden). FAKE_WIFI (JSON: {"nets": {...}, "scan": [[ssid, channel,
rssi, security], ...]}) sets the world a firmware run starts with
(host_tests/e2e/test_wifi_setup.py)."""
import time

STA_IF = 0
AP_IF = 1
AUTH_WPA2_PSK = 3
# WLAN.status() values of the ESP32 port
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
world = {}
log = []
_ifs = {}


def reset():
    world.update({"nets": {"home": "secret"}, "up": True, "delay_ms": 80, "hostname": None, "scan": [],
                  "scans": 0})
    del log[:]
    _ifs.clear()


def _from_env():
    import os

    w = os.getenv("FAKE_WIFI")
    if w:
        import json

        w = json.loads(w)
        world["nets"] = w.get("nets", {})
        world["scan"] = [(s.encode(), b"\x24\x6f\x28\x00\x00" + bytes([i]), ch, rssi, sec, False)
                         for i, (s, ch, rssi, sec) in enumerate(w.get("scan", ()))]


reset()
_from_env()


def hostname(name=None):
    if name is None:
        return world["hostname"]
    world["hostname"] = name


def WLAN(i):
    w = _ifs.get(i)
    if w is None:
        w = _ifs[i] = _Wlan(i)
    return w


class _Wlan:
    def __init__(self, i):
        self.i = i
        self.on = False
        self.cfg = {"mac": bytes([0x24, 0x6F, 0x28, 0xA1, 0xB2, 0xC3 + i])}
        self.target = None
        self.t = 0
        self.linked = False

    def active(self, v=None):
        if v is None:
            return self.on
        self.on = bool(v)
        log.append(["active", self.i, self.on, time.ticks_ms()])

    def config(self, *a, **kw):
        if a:
            return self.cfg[a[0]]
        self.cfg.update(kw)

    def connect(self, ssid, pw):
        if not self.on:
            raise OSError("not active")
        log.append(["connect", ssid, pw, time.ticks_ms()])
        self.target = (ssid, pw)
        self.t = time.ticks_ms()

    def disconnect(self):
        self.target = None
        self.linked = False

    def isconnected(self):
        if not self.target or not world["up"] or world["nets"].get(self.target[0]) != self.target[1]:
            if self.linked:
                self.linked = False
                self.target = None  # lost: the next connect() starts over
            return False
        if time.ticks_diff(time.ticks_ms(), self.t) >= world["delay_ms"]:
            self.linked = True
        return self.linked

    def status(self):
        if self.isconnected():
            return STAT_GOT_IP
        if not self.target:
            return STAT_IDLE
        if time.ticks_diff(time.ticks_ms(), self.t) < world["delay_ms"]:
            return STAT_CONNECTING
        pw = world["nets"].get(self.target[0])
        return STAT_NO_AP_FOUND if pw is None or not world["up"] else STAT_WRONG_PASSWORD

    def scan(self):
        if not self.on:
            raise OSError("not active")
        world["scans"] += 1
        log.append(["scan", time.ticks_ms()])
        return list(world["scan"])

    def ifconfig(self):
        return ("192.168.1.50", "255.255.255.0", "192.168.1.1", "192.168.1.1")
