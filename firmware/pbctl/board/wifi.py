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
  "pbctl-XXXX" (the last 4 hex digits of its MAC); the web UI and the API are
  then at http://192.168.4.1/. **Decision:** its password is AP_PASSWORD
  ("pbctl-setup", written in the README: a phone user has no REPL to read a
  random one from) until set_wifi stores another ("ap_password"). It closes
  once the station is connected; after a set_wifi that connected it stays
  open for AP_LINGER_MS more, so that the phone that sent it reads the
  reply (the new address) and the settings page on the access point. While
  it is open the station is tried every RETRY_MS only: each attempt takes
  the radio off the access point's channel for a moment.
- Trying new credentials (cmd=set_wifi, `trial()`): the station switches to
  them at once; connected within CONNECT_MS they are kept (the caller stores
  them), else the station goes back to the old ones. A failed attempt's
  reason is `error` (from WLAN.status(): "wrong password", "network not
  found", ...; the ESP32 retries an attempt `reconnects` times itself, then
  status() says why it failed).
- NTP: once connected the RTC is set from NTP (ntptime), again every
  NTP_EVERY_MS, and after NTP_RETRY_MS when it failed. ntptime waits for its
  reply for up to ntptime.timeout (1 s here) plus the DNS lookup: the one
  pause of the event loop, a few times a day. The RTC keeps UTC.

- Credentials: /wifi.json on the board's flash ({"ssid": ..., "password": ...,
  and "ap_password" when one was set}), written by cmd=set_wifi (once they
  connected) or `pbctl.wifi(ssid, password)` at the REPL, and read at
  start-up (onboard.py). **Decision:** not in the controller's configuration
  (pbctl.json): no get_params/get_config reply can ever carry the password
  (set_wifi, sys_info and pbctl.wifi() show the ssid only), and resetting or
  restoring the configuration keeps the network.

`network`, `ntptime`, `json` and `os` are imported inside the functions, so
the module imports on the host (its pure parts are tested there; the rest
against fakes of `network` and `ntptime` under MicroPython).
"""
import time

import asyncio

AP_PREFIX = "pbctl-"
AP_URL = "http://192.168.4.1/"  # the ESP32's access-point address: the web UI
AP_PASSWORD = "pbctl-setup"  # the setup access point's password until set_wifi stores another (README)
# WLAN.status() of a failed attempt (the ESP32 port's STAT_* values)
_REASONS = {200: "beacon timeout", 201: "network not found", 202: "wrong password", 203: "association failed",
            204: "handshake timeout"}


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
            out = {"ssid": c["ssid"], "password": c["password"]}
            if isinstance(c.get("ap_password"), str):
                out["ap_password"] = c["ap_password"]
            return out
    except OSError:  # none stored
        return {}
    except (ValueError, AttributeError):  # not JSON, not an object
        pass
    print("pbctl: %s unreadable, no WiFi credentials" % CREDS)
    return {}


def check(ssid, password, ap_password=None):
    """ValueError naming the first bad one ("ssid: ...", "password: ...",
    "ap_password: ..."); the credentials as stored otherwise."""
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        raise ValueError("ssid: 1..32 bytes")
    if not isinstance(password, str) or not (password == "" or 8 <= len(password) <= 63):
        raise ValueError("password: 8..63 characters (WPA2), or empty for an open network")
    creds = {"ssid": ssid, "password": password}
    if ap_password is not None:
        if not isinstance(ap_password, str) or not 8 <= len(ap_password) <= 63:
            raise ValueError("ap_password: 8..63 characters (WPA2)")
        creds["ap_password"] = ap_password
    return creds


def save_creds(flash, ssid, password, ap_password=None):
    """Check and store new credentials (temp file + rename); ssid "" forgets them.

    Returns the credentials; ValueError says what is wrong with them."""
    import os

    path = flash + CREDS
    if not ssid and isinstance(ssid, str):
        try:
            os.remove(path)
        except OSError:
            pass
        return {}
    creds = check(ssid, password, ap_password)
    import json

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
        old = n.creds if n is not None else load_creds(board.FLASH)
        creds = save_creds(board.FLASH, ssid, password or "", old.get("ap_password") if ssid else None)
        if n is not None:
            n.set_creds(creds)
    c = n.creds if n is not None else load_creds(board.FLASH)
    print("WiFi %s: network %s" % (n.state if n is not None else "not started on this board",
                                   repr(c.get("ssid")) if c else "not set (pbctl.wifi(ssid, password))"))
    if n is None:
        return
    if n.ip:
        print("  http://%s/, %d connects, %d losses" % (n.ip, n.connects, n.losses))
    if n.error:
        print("  last attempt: " + n.error)
    if n.synced_ms is not None:
        print("  time from NTP %d s ago" % (time.ticks_diff(time.ticks_ms(), n.synced_ms) // 1000))
    if n.ap is not None and n.ap.active():
        print("  setup access point %s, password %s: %s" % (n.ap_ssid, n.ap_password, AP_URL))


class Net:
    # ms; class attributes so a test can shorten them on one instance
    POLL_MS = 250  # while connecting
    CHECK_MS = 5000  # while connected
    CONNECT_MS = 20000
    RETRY_MS = 60000  # while the access point is open
    AP_AFTER_MS = 120000
    AP_LINGER_MS = 300000  # the access point stays open this long after a set_wifi connected
    NTP_EVERY_MS = 21600000  # 6 h
    NTP_RETRY_MS = 60000

    def __init__(self, creds=None, hostname="pbctl", ntp_host=None):
        self.creds = creds or {}  # {"ssid": ..., "password": ..., "ap_password": ...}
        self.hostname = hostname
        self.ntp_host = ntp_host  # None: ntptime's default (pool.ntp.org)
        self.sta = None
        self.ap = None
        self.state = "off"  # "connecting", "up", "down"
        self.ip = None
        self.dns = None  # the DNS server the network gave (pblib.mqtt resolves with it, without blocking)
        self.error = None  # why the last attempt failed (text), None since a connection
        self.ap_ssid = None
        self.ap_password = None
        self.ap_until = None  # ticks_ms: close the access point then, not at once, once connected
        self.trying = False  # a trial() runs
        self.scan_ms = None  # ticks_ms of the last scan (api/wifi.py)
        self.connects = 0
        self.losses = 0
        self.synced_ms = None  # ticks_ms of the last good NTP sync
        self._ntp_try_ms = None
        self._changed = False

    def set_creds(self, creds):
        """New credentials: connect with them now."""
        self.creds = creds or {}
        self._changed = True
        self.state = "down"  # (until run() has switched: nobody reads the old network's "up")
        self.ip = None
        self.error = None

    def status(self):
        """sys_info's "wifi": never a password."""
        ap = self.ap is not None and self.ap.active()
        return {"state": self.state, "connected": self.state == "up", "ssid": self.creds.get("ssid"),
                "ip": self.ip, "error": self.error, "connects": self.connects, "losses": self.losses,
                "ap": self.ap_ssid if ap else None}

    async def trial(self, creds):
        """Connect with creds instead (cmd=set_wifi): True once connected within
        CONNECT_MS (they stay in use; the access point lingers AP_LINGER_MS),
        else False with the reason in `error`, and the old credentials again."""
        old = self.creds
        self.trying = True
        try:
            self.set_creds(creds)
            t0 = time.ticks_ms()
            while time.ticks_diff(time.ticks_ms(), t0) < self.CONNECT_MS:
                await asyncio.sleep_ms(self.POLL_MS)
                if self.state == "up" and not self._changed:
                    return True
                if self.error and self.state != "up":
                    break
            err = self.error or "no connection after %d s" % (self.CONNECT_MS // 1000)
            self.set_creds(old)
            self.error = err
            return False
        finally:
            self.trying = False

    async def run(self):
        import network

        try:
            network.hostname(self.hostname)
        except (OSError, ValueError) as e:
            print("pbctl: hostname:", repr(e))
        sta = self.sta = network.WLAN(network.STA_IF)
        sta.active(True)
        try:  # the ESP32 retries an attempt this often itself; then status() says why it failed
            sta.config(reconnects=2)
        except (OSError, ValueError, TypeError) as e:
            print("pbctl: WiFi reconnects:", repr(e))
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
                    self.error = None
                    self.connects += 1
                    cf = sta.ifconfig()
                    self.ip = cf[0]
                    self.dns = cf[3]
                    print("pbctl: WiFi %s connected: http://%s/" % (self.creds.get("ssid"), self.ip))
                    if self.trying and self.ap is not None and self.ap.active():
                        self.ap_until = time.ticks_add(now, self.AP_LINGER_MS)  # (for set_wifi's client)
                if self.ap_until is None or time.ticks_diff(now, self.ap_until) >= 0:
                    self.ap_until = None
                    self.access_point(False)
                self.sync_time(now)
                await asyncio.sleep_ms(self.POLL_MS if self.trying else self.CHECK_MS)
                continue
            if self.state == "up":
                self.state = "down"
                self.losses += 1
                self.ip = None
                down_ms = now
                tried_ms = None
                print("pbctl: WiFi lost, reconnecting")
            if self.state == "connecting":
                r = _REASONS.get(sta.status())
                if r and r != self.error:
                    self.error = r
                    print("pbctl: WiFi %s: %s" % (self.creds.get("ssid"), r))
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
        self.ap_password = self.creds.get("ap_password") or AP_PASSWORD
        mac = self.sta.config("mac") if self.sta else ap.config("mac")
        self.ap_ssid = ap_ssid(mac)
        ap.config(ssid=self.ap_ssid, key=self.ap_password, security=network.AUTH_WPA2_PSK)
        ap.active(True)
        print("pbctl: setup access point %s: %s" % (self.ap_ssid, AP_URL))

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
