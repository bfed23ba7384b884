"""WiFi setup from the web UI (INTEGRATIONS.md §6): scan_wifi, set_wifi (admin).
Loaded on demand; the WiFi itself is board/wifi.py's Net (app.net, on a board
with WiFi; elsewhere both commands answer 501 "no wifi on this board").

- scan_wifi: {"networks": [{"ssid", "rssi" (dBm), "signal" (0..100 %),
  "security" ("open", "wep", "wpa", "wpa2", "wpa/wpa2", "wpa2-ent", "wpa3",
  "wpa2/wpa3", ...), "channel"}, ...]}, the strongest first, one entry per
  ssid (its strongest access point), hidden networks left out, at most
  MAX_NETS. **Decision:** WLAN.scan() blocks the board's event loop for the
  scan (about 2 s on the ESP32: every channel in turn), so a scan less than
  SCAN_GAP_MS after the last one is refused (503 "busy"); a station attempt
  under way (the ESP32 refuses to scan then) is ended first, the WiFi task
  starts it again.
- set_wifi: POST {"ssid": s, "password": p} (and optionally "ap_password",
  the setup access point's, 8..63 characters). Bad values: 400 "bad value:
  <name>", nothing changes. The station then tries them (Net.trial, up to
  Net.CONNECT_MS): connected, they are stored (/wifi.json, atomic) and the
  reply is {"connected": true, "ssid": s, "ip": address}; not connected, the
  reply is 502 "wifi: <reason>" ("wrong password", "network not found", "no
  connection after 20 s") and the old credentials are back in use, nothing
  stored. **Decision:** try first, store after, so a typo never strands a
  board; a client on the old network loses its connection while the station
  switches (its reply may not arrive: it finds the board at the new address,
  or, after a failure, at the old one). One set_wifi at a time (503 "busy").
  No reply ever carries a password.
"""
import time

from pblib.httpd import HTTPError

MAX_NETS = 20
SCAN_GAP_MS = 10000
_SEC = ("open", "wep", "wpa", "wpa2", "wpa/wpa2", "wpa2-ent", "wpa3", "wpa2/wpa3", "wapi", "owe")


def _net(app):
    n = app.net
    if n is None or n.sta is None:
        raise HTTPError(501, "no wifi on this board")
    return n


def networks(found):
    """scan_wifi's list from WLAN.scan()'s tuples (pure: tested on the host)."""
    best = {}
    for t in found:
        try:
            ssid = t[0].decode()
        except UnicodeError:  # not UTF-8: no name to show or type
            continue
        if not ssid or t[5]:
            continue
        if ssid not in best or t[3] > best[ssid][3]:
            best[ssid] = t
    out = []
    for ssid, t in best.items():
        rssi = t[3]
        out.append({"ssid": ssid, "rssi": rssi, "signal": min(100, max(0, 2 * (rssi + 100))),
                    "security": _SEC[t[4]] if 0 <= t[4] < len(_SEC) else str(t[4]), "channel": t[2]})
    out.sort(key=lambda d: (-d["rssi"], d["ssid"]))
    return out[:MAX_NETS]


async def scan_wifi(app, req):
    n = _net(app)
    now = time.ticks_ms()
    if n.scan_ms is not None and time.ticks_diff(now, n.scan_ms) < SCAN_GAP_MS:
        raise HTTPError(503, "busy")
    n.scan_ms = now
    sta = n.sta
    try:
        found = sta.scan()
    except OSError:  # the ESP32 scans not while the station connects
        if sta.isconnected():
            raise HTTPError(503, "busy")
        sta.disconnect()
        found = sta.scan()
    return {"networks": networks(found)}


async def set_wifi(app, req):
    if req.method != "POST":
        raise HTTPError(405, "method not allowed")
    body = req.json()
    if not isinstance(body, dict):
        raise HTTPError(400, "bad value: ssid")
    n = _net(app)
    from pbctl.board import wifi

    try:
        creds = wifi.check(body.get("ssid"), body.get("password", ""), body.get("ap_password"))
    except ValueError as e:
        raise HTTPError(400, "bad value: " + e.args[0].split(":")[0])
    if "ap_password" not in creds and "ap_password" in n.creds:
        creds["ap_password"] = n.creds["ap_password"]  # kept
    if n.trying:
        raise HTTPError(503, "busy")
    if not await n.trial(creds):
        raise HTTPError(502, "wifi: " + n.error)
    try:
        wifi.save_creds(app.board.FLASH, creds["ssid"], creds["password"], creds.get("ap_password"))
    except OSError:  # in use until the next start, which finds the old ones
        raise HTTPError(507, "flash write failed")
    return {"connected": True, "ssid": creds["ssid"], "ip": n.ip}
