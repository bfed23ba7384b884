# pbctl.integrations.mqtt: MQTT with Home Assistant discovery (INTEGRATIONS.md
# §3; README "MQTT and Home Assistant"). Loaded only while mqtt_url is set
# (app.INTEGRATIONS); the client is pblib.mqtt (README: why our own).
#
# Topics (<prefix> = mqtt_prefix, empty: pbctl/<serialno>):
#   <prefix>/status              "online" (retained) after every connect;
#                                "offline" (retained) as the last will
#   <prefix>/<dev_id>/state      the device's get_dev_info object (api/info.py),
#                                plus "mqtt_current" (the MQTT cap in force, mA,
#                                0 none) and "mqtt_enable" (0/1) for EVSEs; not
#                                retained. Published after a control pass that
#                                changed the device (a hash of its runtime
#                                state), at least every 60 s, and all at once
#                                after a connect, a configuration change and
#                                Home Assistant's "online" on homeassistant/status
#   <prefix>/<dev_id>/set/current  mA, 0..80000 (a decimal fraction is dropped),
#                                0 removes the cap: control.cap(dev, 1, mA)
#   <prefix>/<dev_id>/set/enable   "0"/"1": control.enable(dev, 1, on)
# Commands are coalesced: what arrives while the control task has not yet
# applied the last batch is kept (the newest value per EVSE and command) and
# handed over after that pass, one request per EVSE and command. A payload
# that is not a valid value, or a topic naming no EVSE, is ignored and
# counted (status "bad"). The caps and disables stay while the broker is
# away; they are withdrawn when MQTT is switched off or its settings change
# (stop()).
#
# Home Assistant discovery (mqtt_ha_discovery): integrations/mqtt_ha.py,
# imported for a round of configs and dropped again, after every connect,
# Home Assistant's "online" and a configuration change; a deleted device's
# configs are removed (empty retained payloads) when it goes.
#
# Heap: nothing rendered is kept. A round that publishes runs only while
# app.admit() says the heap has room (else it is skipped and counted), and
# paces itself by the client's fixed buffer (room()): what does not fit after
# a short wait is dropped and counted by the client. api/info.py is imported
# for a round that publishes and dropped after it unless the API had it loaded.
import sys
import time
from array import array

import asyncio
from micropython import const

from pblib import mqtt

_SRC = const(1)  # devices.Evse.caps source: MQTT
_BEAT_MS = const(60000)
_BUF = const(1536)  # the client's outgoing buffer: the largest message (an EVSE's state: ~0.7 KB, ~1.2 KB
# with every text field at its longest) fits; _put paces a round by it
_KEEPALIVE = const(30)
_MAX_MA = const(80000)
_MAX_DEVS = const(16)  # state hashes kept (config.py: 8 EVSEs and 8 meters at most); more: every pass
_prev = None  # the client task of the link stopped last


def settings(p):
    """(host, port, user, password, prefix, discovery) of the params; None: off.
    The URL was checked when it was set (params.mqtt_params)."""
    url = p["mqtt_url"]
    if not url:
        return None
    cred, at, hp = url[7:].rpartition("@")
    user, c, pwd = cred.partition(":")
    host, c2, port = hp.partition(":")
    return (host, int(port) if c2 else 1883, user if at else None, pwd if at and c else None,
            p["mqtt_prefix"], p["mqtt_ha_discovery"])


def start(app, s):
    return Link(app, s)


def milliamps(b):
    """set/current's payload (bytes) -> mA, or None: digits, an optional
    decimal fraction (dropped), 0..80000."""
    b = b.strip()
    i = b.find(b".")
    w = b if i < 0 else b[:i]
    if not w or not w.isdigit() or i >= 0 and b[i + 1 :] and not b[i + 1 :].isdigit() or len(w) > 6:
        return None
    v = int(w)
    return v if v <= _MAX_MA else None


def onoff(b):
    b = b.strip()
    return 1 if b == b"1" else 0 if b == b"0" else None


def state_hash(d):
    """A cheap hash of what a device's state message shows that the control
    task changes (its configuration is checked apart: a change replaces
    site.params or site.devices). Small ints only: no allocation."""
    h = d.power & 0xFFFFF
    for x in d.cur:
        h = (h * 33 + (x & 0xFFFFF)) & 0xFFFFF
    h = (h * 33 + (d.energy & 0xFFFFF)) & 0xFFFFF
    h = (h * 33 + (hash(d.model) & 0xFFFF)) & 0xFFFFF
    st = d.stats
    h = (h * 33 + (st.errors & 0xFFFF) * 2 + (1 if st.err else 0)) & 0xFFFFF
    if d.is_evse:
        for x in (d.state, d.limit, d.reason, d.soft_wh & 0xFFFFF, d.ov_mamps, d.caps[_SRC], d.enables[_SRC],
                  hash(d.user) & 0xFFFF, hash(d.ov_flags) & 0xFFFF, 1 if d.paused else 0):
            h = (h * 33 + x) & 0xFFFFF
    else:
        h = (h * 33 + (d.export & 0xFFFFF)) & 0xFFFFF
    return h


class Link:
    def __init__(self, app, s):
        self.app = app
        self.s = s
        self.pre = s[4] or "pbctl/" + app.serial
        self.ha = s[5]
        self.c = None  # the client: made by _run (below)
        self.error = ""
        self.bad = self.commands = self.skipped = self.rounds = 0
        self._want = {}  # dev_id -> [mA or -1, on or -1]: commands not yet handed over
        self._seq = 0  # the last request handed over
        self._h = array("i", bytes(4 * _MAX_DEVS))  # state_hash last published, by position in site.devices
        self._all = self._disc = False  # publish every state / the discovery configs
        self._known = ()  # the site.devices whose configs are published
        self._p = self._l = None  # site.params, site.devices of the last round
        self._beat = time.ticks_ms()
        self._ct = None  # the client's task
        self._task = asyncio.create_task(self._run())

    def status(self):
        c = self.c
        if c is None:
            return {"connected": False, "last_error": self.error}
        return {"connected": c.connected, "broker": "%s:%d" % (c.host, c.port), "last_error": c.last_error,
                "sent": c.sent, "dropped": c.dropped, "reconnects": c.reconnects, "received": c.received,
                "commands": self.commands, "bad": self.bad, "skipped": self.skipped}

    def stop(self):
        """Disconnect (the broker drops the will; "offline" is published first),
        stop the tasks, withdraw MQTT's caps and disables."""
        global _prev
        c = self.c
        self._task.cancel()
        if c is not None:
            if c.connected:
                c.publish(self.pre + "/status", "offline", True)
            c.stop()  # (run() sends what is queued, DISCONNECT, and returns)
            _prev = self._ct
        # the library goes with this module when MQTT is switched off (app.py
        # unloads this one; a next link of other settings uses the same library
        # through this module's global `mqtt`)
        unload(("pblib.mqtt",))
        w = [d.dev_id for d in self.app.site.devices if d.is_evse and (d.caps[_SRC] or not d.enables[_SRC])]
        if w:
            asyncio.create_task(_withdraw(self.app.control, w))

    def _client(self):
        host, port, user, pwd, _, ha = self.s
        c = mqtt.Client("pbctl-" + self.app.serial, host, port, user, pwd, _KEEPALIVE,
                        (self.pre + "/status", "offline", True), _BUF, 128)
        c.on_connect = self._connected
        c.on_message = self._message
        c.subscribe(self.pre + "/+/set/+")
        if ha:
            c.subscribe("homeassistant/status")
        self.c = c
        self._ct = asyncio.create_task(c.run())

    # ---- the client's callbacks (its tasks) ----
    def _connected(self):
        self.c.publish(self.pre + "/status", "online", True)
        self._all = True
        self._disc = self.ha

    def _message(self, topic, p):
        if topic == "homeassistant/status":
            if p == b"online":  # Home Assistant (re)started: it needs everything again
                self._all = True
                self._disc = self.ha
            return
        n = len(self.pre)
        dev_id, _, what = topic[n + 1 :].partition("/set/")
        d = self.app.site.device(dev_id)
        v = (milliamps(p) if what == "current" else onoff(p) if what == "enable" else None)
        if v is None or d is None or not d.is_evse or topic[n : n + 1] != "/":
            self.bad += 1
            return
        self.commands += 1
        w = self._want.get(dev_id)
        if w is None:
            w = self._want[dev_id] = [-1, -1]
        w[0 if what == "current" else 1] = v
        self._hand_over()

    def _hand_over(self):
        # the commands waiting to the control task: one batch per pass
        ctl = self.app.control
        if ctl.settled < self._seq:
            return  # the last batch is not applied yet: the pass after it takes these
        want = self._want
        for dev_id in list(want):
            w = want[dev_id]
            try:
                if w[0] >= 0:
                    self._seq = ctl.cap(dev_id, _SRC, w[0])
                    w[0] = -1
                if w[1] >= 0:
                    self._seq = ctl.enable(dev_id, _SRC, w[1] == 1)
                del want[dev_id]
            except Exception:  # control.Busy: the next pass
                return

    # ---- publishing ----
    async def _run(self):
        # the client is made here, once the one of the link before (other
        # settings) has said goodbye and let go of its buffers; with no room
        # for them, again every 5 s
        global _prev
        for _ in range(100):
            if _prev is None or _prev.done():
                break
            await asyncio.sleep_ms(50)
        _prev = None  # (the task holds the old client, and its buffers, while referenced)
        while self.c is None:
            try:
                self._client()
            except MemoryError:
                self.error = "out of memory"
                await asyncio.sleep_ms(5000)
        app = self.app
        ctl = app.control
        c = self.c
        while True:
            # after each control pass (one every cycle_time at least, and one
            # for every request): no timer of its own, nothing allocated
            await ctl._done.wait()
            self._hand_over()
            if app.net is not None:  # the board's WiFi: a broker's name is resolved without blocking
                c.dns = app.net.dns
            if not c.connected:
                continue
            try:
                await self._round()
            except MemoryError:
                self.skipped += 1

    async def _round(self):
        app = self.app
        site = app.site
        now = time.ticks_ms()
        if site.params is not self._p or site.devices is not self._l:  # a configuration change
            self._all = True
            self._disc = self._disc or self.ha
            self._p = site.params
            self._l = site.devices
        if time.ticks_diff(now, self._beat) >= _BEAT_MS:
            self._all = True
        h = self._h
        devs = site.devices
        todo = self._all or self._disc or len(devs) > _MAX_DEVS
        i = 0
        while not todo and i < len(devs):
            todo = h[i] != state_hash(devs[i])
            i += 1
        if not todo:
            return
        if not app.admit():  # the heap is short: the control task and HTTP first
            self.skipped += 1
            return
        self.rounds += 1
        if self._disc:
            self._disc = False
            await self._discovery(site)
        loaded = "pbctl.api.info" in sys.modules  # (by a request now: it unloads it)
        from pbctl.api import info

        every = self._all
        if every:
            self._all = False
            self._beat = now
        try:
            for i in range(len(devs)):
                d = devs[i]
                k = state_hash(d)
                if i < _MAX_DEVS:
                    if not every and h[i] == k:
                        continue
                    h[i] = k
                parts = list(info.info(d, time.ticks_ms()))
                if d.is_evse:
                    parts[-1] = parts[-1][:-1] + ',"mqtt_current":%d,"mqtt_enable":%d}' % (
                        d.caps[_SRC], d.enables[_SRC])
                if not await self._put(self.pre + "/" + d.dev_id + "/state", "".join(parts)):
                    return
                parts = None
        finally:
            if not loaded:
                unload(("pbctl.api.info", "pblib.reasons"))

    async def _put(self, topic, payload, retain=False):
        # publish when the client's buffer has room (waiting up to 1 s);
        # False when the connection is gone
        c = self.c
        n = len(topic) + len(payload) + 8
        for _ in range(50):
            if c.room() >= n or not c.connected:
                break
            await asyncio.sleep_ms(20)
        if not c.connected:
            return False
        c.publish(topic, payload, retain)  # (too large still: dropped and counted)
        return True

    async def _discovery(self, site):
        # the discovery configs of every device, and the removal of those of
        # devices gone since the last round; the renderer is loaded for it only
        from pbctl.integrations import mqtt_ha

        try:
            devs = site.devices
            for x in self._known:
                if site.device(x.dev_id) is None:
                    for t, _ in mqtt_ha.configs(self, x.dev_id, x.is_evse, None):
                        if not await self._put(t, "", True):
                            self._disc = True  # again on the next connect
                            return
            for d in devs:
                for t, p in mqtt_ha.configs(self, d.dev_id, d.is_evse, d):
                    if not await self._put(t, p, True):
                        self._disc = True
                        return
            self._known = devs
        finally:
            mqtt_ha = None
            unload(("pbctl.integrations.mqtt_ha",))


def unload(names):
    # forget modules loaded for a round (as api/cnf.py's unload, which would
    # bring the HTTP server's module into a test of this one)
    for k in names:
        if k in sys.modules:
            del sys.modules[k]
            p, _, n = k.rpartition(".")
            try:
                delattr(sys.modules[p], n)
            except (KeyError, AttributeError):
                pass


async def _withdraw(ctl, ids):
    # MQTT's caps and disables off (after stop()); the request queue may be
    # full for a moment: try again, for at most 10 s
    for _ in range(100):
        try:
            while ids:
                ctl.cap(ids[-1], _SRC, 0)
                ctl.enable(ids[-1], _SRC, True)
                ids.pop()
            return
        except Exception:  # control.Busy
            await asyncio.sleep_ms(100)
