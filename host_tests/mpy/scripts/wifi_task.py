# The WiFi/NTP task (pbctl/board/wifi.py) under MicroPython's asyncio against
# fakes of the ESP32's `network` and `ntptime` (mpy/fakes/esp32/, first on the
# module path), scenario by scenario, with a ticker task that measures the
# longest wait of the event loop. Prints RESULT <json>.
# Run by host_tests/board/test_esp32_net.py.
import json
import sys
import time

import asyncio
import network
import ntptime
from pbctl.board import wifi

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
    n = wifi.Net(creds)
    n.POLL_MS = 10
    n.CHECK_MS = 20
    n.CONNECT_MS = 100
    n.RETRY_MS = 150
    n.AP_AFTER_MS = 200
    n.AP_LINGER_MS = 100
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


async def trial(n, creds):
    t0 = time.ticks_ms()
    ok = await n.trial(creds)
    return snap(n, ok=ok, error=n.error, creds=n.creds, ms=time.ticks_diff(time.ticks_ms(), t0))


async def trials():
    """Net.trial (cmd=set_wifi): a wrong password, an unknown network, then
    from the setup access point the right one (the AP lingers AP_LINGER_MS)."""
    out = {}
    n = mk({"ssid": "home", "password": "secret"})
    n.CONNECT_MS = 400
    task = asyncio.create_task(n.run())
    await asyncio.sleep_ms(150)
    out["before"] = snap(n, status=n.status())
    out["wrong"] = await trial(n, {"ssid": "home", "password": "wrongpass"})
    out["nowhere"] = await trial(n, {"ssid": "nowhere", "password": "whatever1"})
    network.world["nets"]["attic"] = "attic-pw1"
    out["other"] = await trial(n, {"ssid": "attic", "password": "attic-pw1"})
    out["status"] = n.status()
    task.cancel()
    n = mk(None)
    n.CONNECT_MS = 400
    task = asyncio.create_task(n.run())
    await asyncio.sleep_ms(50)
    out["ap"] = snap(n, status=n.status())
    out["first"] = await trial(n, {"ssid": "home", "password": "secret", "ap_password": "my-ap-pw"})
    await asyncio.sleep_ms(200)  # > AP_LINGER_MS + CHECK_MS
    out["lingered"] = snap(n, status=n.status())
    task.cancel()
    return out


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
    res["trial"] = await trials()
    res["gap"] = gap[0]
    sys.stdout.write("RESULT ")
    json.dump(res, sys.stdout)  # (written piece by piece: as one string it needs a 7 KB block)
    print()


asyncio.run(main())
