"""firmware/net.py: the pure parts under CPython; the WiFi/NTP task under
MicroPython's asyncio against fakes of the ESP32's `network` and `ntptime`
(put on the module path ahead of everything else), with a ticker task that
shows the event loop never waits on the WiFi."""
import json

import pytest

import mp
import net

MAC = bytes([0x24, 0x6F, 0x28, 0xA1, 0xB2, 0xC3])


def test_ap_ssid_is_pbctl_and_the_last_4_hex_digits_of_the_mac():
    assert net.ap_ssid(MAC) == "pbctl-B2C3"
    assert net.ap_ssid(b"\x00\x00\x00\x00\x0a\x01") == "pbctl-0A01"


def test_password():
    pw = net.make_password(lambda n: bytes(range(n)))
    assert pw == "abcdefghijkm"  # byte b -> one of 32 characters
    assert len(set(net.make_password(lambda n: bytes(range(256))[:n], 256))) == 32
    import os

    pw = net.make_password(os.urandom)
    assert 8 <= len(pw) <= 63  # WPA2
    assert all(c in net._PW_CHARS for c in pw)
    for bad in "l1o0IO":
        assert bad not in net._PW_CHARS


FAKE_NETWORK = r'''
"""A stand-in for the ESP32's network module: one radio, networks that come and go."""
import time

STA_IF = 0
AP_IF = 1
AUTH_WPA2_PSK = 3
world = {"nets": {"home": "secret"}, "up": True, "delay_ms": 80, "hostname": None}
log = []
_ifs = {}


def reset():
    world.update({"nets": {"home": "secret"}, "up": True, "delay_ms": 80, "hostname": None})
    del log[:]
    _ifs.clear()


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

    def ifconfig(self):
        return ("192.168.1.50", "255.255.255.0", "192.168.1.1", "192.168.1.1")
'''

FAKE_NTPTIME = r'''
host = "pool.ntp.org"
timeout = 1
state = {"fail": 0, "calls": 0}


def settime():
    state["calls"] += 1
    if state["fail"]:
        state["fail"] -= 1
        raise OSError(110)
'''

SCRIPT = r'''
import json
import time

import asyncio
import net
import network
import ntptime

gap = [0]


async def ticker():
    t = time.ticks_ms()
    while True:
        await asyncio.sleep_ms(5)
        n = time.ticks_ms()
        gap[0] = max(gap[0], time.ticks_diff(n, t))
        t = n


def mk(creds):
    network.reset()
    ntptime.state.update({"fail": 0, "calls": 0})
    n = net.Net(creds)
    n.POLL_MS = 10
    n.CHECK_MS = 20
    n.CONNECT_MS = 100
    n.RETRY_MS = 150
    n.AP_AFTER_MS = 200
    n.NTP_EVERY_MS = 100000
    n.NTP_RETRY_MS = 100
    return n


def snap(n, **kw):
    ap = network._ifs.get(1)
    d = {"state": n.state, "ip": n.ip, "ap": bool(ap and ap.on), "ap_ssid": n.ap_ssid, "ap_cfg": None,
         "password": n.ap_password, "connects": n.connects, "losses": n.losses, "synced": n.synced_ms is not None,
         "ntp_calls": ntptime.state["calls"], "hostname": network.world["hostname"],
         "connect_calls": [e[1:3] for e in network.log if e[0] == "connect"]}
    if ap:
        d["ap_cfg"] = {k: ap.cfg[k] for k in ("ssid", "key", "security") if k in ap.cfg}
    d.update(kw)
    return d


async def scenario(name, creds, steps):
    n = mk(creds)
    task = asyncio.create_task(n.run())
    out = []
    for wait_ms, change in steps:
        await asyncio.sleep_ms(wait_ms)
        out.append(snap(n))
        if change:
            change(n)
    task.cancel()
    return name, out


def down(n):
    network.world["up"] = False


def up(n):
    network.world["up"] = True


def ntp_fails(n):
    ntptime.state["fail"] = 1


async def main():
    asyncio.create_task(ticker())
    res = {}
    for name, creds, steps in (
        ("no_creds", None, [(120, None)]),
        ("good", {"ssid": "home", "password": "secret"}, [(150, None)]),
        ("router_off", {"ssid": "home", "password": "secret"},
         [(5, down), (150, None), (300, None), (250, up), (200, None)]),
        ("loss", {"ssid": "home", "password": "secret"}, [(150, down), (60, up), (200, None)]),
        ("wrong_pw", {"ssid": "home", "password": "nope"},
         [(150, lambda n: n.set_creds({"ssid": "home", "password": "secret"})), (120, None)]),
    ):
        k, v = await scenario(name, creds, steps)
        res[k] = v
    # NTP: the first try fails, the next one after NTP_RETRY_MS works
    ntp = mk({"ssid": "home", "password": "secret"})
    ntptime.state["fail"] = 1
    task = asyncio.create_task(ntp.run())
    await asyncio.sleep_ms(130)
    first = snap(ntp)
    await asyncio.sleep_ms(200)
    res["ntp"] = [first, snap(ntp)]
    task.cancel()
    res["gap"] = gap[0]
    print("RESULT " + json.dumps(res))


asyncio.run(main())
'''


@pytest.fixture(scope="module")
def res(tmp_path_factory):
    d = tmp_path_factory.mktemp("net")
    (d / "network.py").write_text(FAKE_NETWORK)
    (d / "ntptime.py").write_text(FAKE_NTPTIME)
    (d / "net_run.py").write_text(SCRIPT)
    r = mp.run([str(d / "net_run.py")], extra_dirs=(str(d),), timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, out
    data = json.loads(line[0][7:])
    data["output"] = r.stdout
    return data


def test_first_setup_opens_the_access_point(res):
    s = res["no_creds"][0]
    assert s["ap"] and s["ap_ssid"] == "pbctl-B2C3"  # the station's MAC
    assert s["ap_cfg"] == {"ssid": "pbctl-B2C3", "key": s["password"], "security": 3}  # WPA2-PSK
    assert 8 <= len(s["password"]) <= 63
    assert s["connect_calls"] == [] and s["state"] == "off"
    # the password is shown on the REPL (and only there)
    assert "setup access point pbctl-B2C3, password %s: http://192.168.4.1/cnf" % s["password"] in res["output"]


def test_station_connects_and_sets_the_time(res):
    s = res["good"][0]
    assert s["state"] == "up" and s["ip"] == "192.168.1.50" and s["connects"] == 1
    assert not s["ap"] and s["ap_cfg"] is None  # never opened
    assert s["connect_calls"] == [["home", "secret"]]
    assert s["synced"] and s["ntp_calls"] == 1
    assert s["hostname"] == "pbctl"


def test_router_off_then_access_point_then_back(res):
    r = res["router_off"]
    # 155 ms: still trying, no AP yet (AP_AFTER_MS = 200)
    assert r[1]["state"] == "connecting" and not r[1]["ap"]
    assert len(r[1]["connect_calls"]) == 2  # at 0 and after CONNECT_MS
    # 455 ms: AP open, station retried less often (RETRY_MS while the AP is up)
    assert r[2]["ap"] and r[2]["state"] == "connecting"
    n = len(r[2]["connect_calls"])
    assert 3 <= n <= 4, r[2]["connect_calls"]
    # router back: within a RETRY_MS the station is up and the AP closed
    assert r[4]["state"] == "up" and not r[4]["ap"] and r[4]["connects"] == 1


def test_wifi_loss_reconnects(res):
    r = res["loss"]
    assert r[0]["state"] == "up"
    assert r[1]["state"] == "connecting" and r[1]["losses"] == 1 and r[1]["ip"] is None
    assert r[2]["state"] == "up" and r[2]["connects"] == 2 and not r[2]["ap"]


def test_new_credentials_take_effect_at_once(res):
    r = res["wrong_pw"]
    assert r[0]["state"] == "connecting"
    assert r[1]["state"] == "up" and r[1]["connect_calls"][-1] == ["home", "secret"]


def test_ntp_failure_is_retried(res):
    first, later = res["ntp"]
    assert first["state"] == "up" and not first["synced"] and first["ntp_calls"] == 1
    assert later["synced"] and later["ntp_calls"] == 2
    assert "pbctl: NTP: OSError(110" in res["output"]


def test_the_event_loop_never_waits_on_the_wifi(res):
    # a task sleeping 5 ms at a time was never held up as long as a connection
    # takes (80 ms in the fake): nothing waits for the WiFi in a blocking call
    assert res["gap"] < 60, res["gap"]


# ---- credentials: /wifi.json (pbctl.wifi) ------------------------------------

def test_credentials_stored_and_loaded(tmp_path):
    flash = str(tmp_path)
    assert net.load_creds(flash) == {}  # none stored: first setup
    assert net.save_creds(flash, "home", "secret12") == {"ssid": "home", "password": "secret12"}
    assert json.loads((tmp_path / "wifi.json").read_text()) == {"ssid": "home", "password": "secret12"}
    assert not (tmp_path / "wifi.json.tmp").exists()  # written aside, then renamed into place
    assert net.load_creds(flash) == {"ssid": "home", "password": "secret12"}
    assert net.save_creds(flash, "café", "") == {"ssid": "café", "password": ""}  # an open network
    assert net.load_creds(flash) == {"ssid": "café", "password": ""}
    assert net.save_creds(flash, "", None) == {}  # forget them
    assert not (tmp_path / "wifi.json").exists() and net.load_creds(flash) == {}


@pytest.mark.parametrize("ssid, pw, msg", [
    ("x" * 33, "secret12", "ssid: 1..32 bytes"),
    ("ü" * 17, "secret12", "ssid: 1..32 bytes"),  # 34 bytes in UTF-8
    ("home", "short", "password: 8..63 characters (WPA2), or empty for an open network"),
    ("home", "p" * 64, "password: 8..63 characters (WPA2), or empty for an open network"),
    ("home", 12345678, "password: 8..63 characters (WPA2), or empty for an open network"),
])
def test_bad_credentials_change_nothing(tmp_path, ssid, pw, msg):
    net.save_creds(str(tmp_path), "home", "secret12")
    with pytest.raises(ValueError) as e:
        net.save_creds(str(tmp_path), ssid, pw)
    assert str(e.value) == msg
    assert net.load_creds(str(tmp_path)) == {"ssid": "home", "password": "secret12"}


@pytest.mark.parametrize("junk", ["{", "[1, 2]", '{"ssid": 5, "password": "x"}', '{"ssid": "home"}', "\x00"])
def test_unreadable_credentials_are_none(tmp_path, capsys, junk):
    (tmp_path / "wifi.json").write_text(junk)
    assert net.load_creds(str(tmp_path)) == {}
    assert capsys.readouterr().out == "pbctl: /wifi.json unreadable, no WiFi credentials\n"
