"""WiFi on the board: station mode with the configured network, an access
point for first setup, NTP time. Nothing here blocks the event loop for long.

    n = wifi.Net({"ssid": "home", "password": "..."})   # credentials: a dict
    asyncio.create_task(n.run())

- Station: WLAN.connect() returns at once on the ESP32; run() then polls
  isconnected() between asyncio sleeps, so the control loop and HTTP go on
  while the WiFi (re)connects. A lost connection is seen within CHECK_MS and
  connected again; an attempt that has not succeeded after CONNECT_MS is
  started over.
- Access point for first setup: with no credentials, or when the station has
  been down for AP_AFTER_MS, the board opens a WPA2 access point
  "pbctl-XXXX" (the last 4 hex digits of its MAC) with a random password that
  is made once per boot and printed on the REPL only; the API is then at
  http://192.168.4.1/cnf. It closes once the station is connected. While it
  is open the station is tried every RETRY_MS only: each attempt takes the
  radio off the access point's channel for a moment.
- NTP: once connected the RTC is set from NTP (ntptime), again every
  NTP_EVERY_MS, and after NTP_RETRY_MS when it failed. ntptime waits for its
  reply for up to ntptime.timeout (1 s here) plus the DNS lookup: the one
  pause of the event loop, a few times a day. The RTC keeps UTC.

- Credentials: /wifi.json on the board's flash ({"ssid": ..., "password": ...}),
  written by `pbctl.wifi(ssid, password)` at the REPL and read at start-up
  (onboard.py). **Decision:** not in the controller's configuration
  (pbctl.json): the vendor's API has no WiFi fields, so no get_params reply
  can ever carry the password, and only someone at the USB port can move
  the controller to another network (not a client on the LAN or on the
  setup access point); resetting the configuration keeps the network.

`network`, `ntptime`, `json` and `os` are imported inside the functions, so
the module imports on the host (its pure parts are tested there; the rest
against fakes of `network` and `ntptime` under MicroPython).
"""
import time

import asyncio

AP_PREFIX = "pbctl-"
AP_URL = "http://192.168.4.1/cnf"  # the ESP32's access-point address
_PW_CHARS = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 characters, none to misread (l/1, o/0)


def ap_ssid(mac):
    """The setup access point's name: "pbctl-" + the last 4 hex digits of the MAC."""
    return "%s%02X%02X" % (AP_PREFIX, mac[-2], mac[-1])


CREDS = "/wifi.json"


def load_creds(flash):
    """The station's credentials from flash + CREDS; {} when none or unreadable."""
    import json

    try:
        with open(flash + CREDS) as f:
            c = json.load(f)
        if isinstance(c.get("ssid"), str) and isinstance(c.get("password"), str):
            return {"ssid": c["ssid"], "password": c["password"]}
    except OSError:  # none stored
        return {}
    except (ValueError, AttributeError):  # not JSON, not an object
        pass
    print("pbctl: %s unreadable, no WiFi credentials" % CREDS)
    return {}


def save_creds(flash, ssid, password):
    """Check and store new credentials (temp file + rename); ssid "" forgets them.

    Returns the credentials; ValueError says what is wrong with them."""
    import os

    path = flash + CREDS
    if not ssid:
        try:
            os.remove(path)
        except OSError:
            pass
        return {}
    if not isinstance(ssid, str) or len(ssid.encode()) > 32:
        raise ValueError("ssid: 1..32 bytes")
    if not isinstance(password, str) or not (password == "" or 8 <= len(password) <= 63):
        raise ValueError("password: 8..63 characters (WPA2), or empty for an open network")
    import json

    creds = {"ssid": ssid, "password": password}
    with open(path + ".tmp", "w") as f:
        json.dump(creds, f)
    os.rename(path + ".tmp", path)
    return creds


def repl(app, ssid=None, password=None):
    """pbctl.wifi(): show the WiFi (never the station's password); with an
    ssid, store new credentials and connect with them now."""
    import pbboard as board

    n = getattr(app, "net", None)
    if ssid is not None:
        creds = save_creds(board.FLASH, ssid, password or "")
        if n is not None:
            n.set_creds(creds)
    c = n.creds if n is not None else load_creds(board.FLASH)
    print("WiFi %s: network %s" % (n.state if n is not None else "not started on this board",
                                   repr(c.get("ssid")) if c else "not set (pbctl.wifi(ssid, password))"))
    if n is None:
        return
    if n.ip:
        print("  http://%s/cnf, %d connects, %d losses" % (n.ip, n.connects, n.losses))
    if n.synced_ms is not None:
        print("  time from NTP %d s ago" % (time.ticks_diff(time.ticks_ms(), n.synced_ms) // 1000))
    if n.ap is not None and n.ap.active():
        print("  setup access point %s, password %s: %s" % (n.ap_ssid, n.ap_password, AP_URL))


def make_password(rnd, n=12):
    """A WPA2 password (8..63 characters) from rnd(n) random bytes (os.urandom)."""
    return "".join(_PW_CHARS[b & 31] for b in rnd(n))


class Net:
    # ms; class attributes so a test can shorten them on one instance
    POLL_MS = 250  # while connecting
    CHECK_MS = 5000  # while connected
    CONNECT_MS = 20000
    RETRY_MS = 60000  # while the access point is open
    AP_AFTER_MS = 120000
    NTP_EVERY_MS = 21600000  # 6 h
    NTP_RETRY_MS = 60000

    def __init__(self, creds=None, hostname="pbctl", ntp_host=None):
        self.creds = creds or {}  # {"ssid": ..., "password": ...}
        self.hostname = hostname
        self.ntp_host = ntp_host  # None: ntptime's default (pool.ntp.org)
        self.sta = None
        self.ap = None
        self.state = "off"  # "connecting", "up", "down"
        self.ip = None
        self.dns = None  # the DNS server the network gave (pblib.mqtt resolves with it, without blocking)
        self.ap_ssid = None
        self.ap_password = None
        self.connects = 0
        self.losses = 0
        self.synced_ms = None  # ticks_ms of the last good NTP sync
        self._ntp_try_ms = None
        self._changed = False

    def set_creds(self, creds):
        """New credentials (from the configuration): connect with them now."""
        self.creds = creds or {}
        self._changed = True

    async def run(self):
        import network

        try:
            network.hostname(self.hostname)
        except (OSError, ValueError) as e:
            print("pbctl: hostname:", repr(e))
        sta = self.sta = network.WLAN(network.STA_IF)
        sta.active(True)
        down_ms = time.ticks_ms()  # since when the station is not connected
        tried_ms = None  # last connect() call
        while True:
            now = time.ticks_ms()
            if self._changed:
                self._changed = False
                if sta.isconnected():
                    sta.disconnect()
                self.state = "down"
                down_ms = now
                tried_ms = None
            if sta.isconnected():
                if self.state != "up":
                    self.state = "up"
                    self.connects += 1
                    cf = sta.ifconfig()
                    self.ip = cf[0]
                    self.dns = cf[3]
                    print("pbctl: WiFi %s connected: http://%s/cnf" % (self.creds.get("ssid"), self.ip))
                    self.access_point(False)
                self.sync_time(now)
                await asyncio.sleep_ms(self.CHECK_MS)
                continue
            if self.state == "up":
                self.state = "down"
                self.losses += 1
                self.ip = None
                down_ms = now
                tried_ms = None
                print("pbctl: WiFi lost, reconnecting")
            ssid = self.creds.get("ssid")
            if not ssid or time.ticks_diff(now, down_ms) >= self.AP_AFTER_MS:
                self.access_point(True)
            wait = self.RETRY_MS if self.ap and self.ap.active() else self.CONNECT_MS
            if ssid and (tried_ms is None or time.ticks_diff(now, tried_ms) >= wait):
                tried_ms = now
                self.state = "connecting"
                try:
                    sta.disconnect()  # ends an attempt still under way
                    sta.connect(ssid, self.creds.get("password") or "")
                except OSError as e:
                    print("pbctl: WiFi connect:", repr(e))
            await asyncio.sleep_ms(self.POLL_MS)

    def access_point(self, on):
        """Open (printing its name and password) or close the setup access point."""
        import network

        ap = self.ap
        if not on:
            if ap and ap.active():
                ap.active(False)
                print("pbctl: setup access point closed")
            return
        if ap is None:
            ap = self.ap = network.WLAN(network.AP_IF)
        if ap.active():
            return
        if not self.ap_password:
            import os

            self.ap_password = make_password(os.urandom)
        mac = self.sta.config("mac") if self.sta else ap.config("mac")
        self.ap_ssid = ap_ssid(mac)
        ap.config(ssid=self.ap_ssid, key=self.ap_password, security=network.AUTH_WPA2_PSK)
        ap.active(True)
        print("pbctl: setup access point %s, password %s: %s" % (self.ap_ssid, self.ap_password, AP_URL))

    def sync_time(self, now):
        """Set the RTC from NTP when due; returns True when it was set now."""
        if self.synced_ms is not None and time.ticks_diff(now, self.synced_ms) < self.NTP_EVERY_MS:
            return False
        if self._ntp_try_ms is not None and time.ticks_diff(now, self._ntp_try_ms) < self.NTP_RETRY_MS:
            return False
        import ntptime

        self._ntp_try_ms = now
        ntptime.timeout = 1
        if self.ntp_host:
            ntptime.host = self.ntp_host
        try:
            ntptime.settime()
        except Exception as e:  # OSError (no reply, DNS) or ntptime's own on a bad reply
            print("pbctl: NTP:", repr(e))
            return False
        self.synced_ms = time.ticks_ms()
        print("pbctl: time from NTP: %04d-%02d-%02d %02d:%02d:%02d UTC" % time.gmtime()[:6])
        return True
