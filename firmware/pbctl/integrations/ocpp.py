"""OCPP 1.6J charge point (INTEGRATIONS.md §4; README "OCPP 1.6J").

Switched on by `ocpp_url` (app.INTEGRATIONS). One charge point; connector n =
the n-th EVSE in configuration order. What stays resident is this module: the
connection (pblib.ws, pblib.ocppj), the connectors' small state (bytearrays
and int arrays, no dict per connector), the transaction journal and the
charging profiles as tuples. Incoming calls and the profile arithmetic are in
`ocpp_calls.py`, loaded per call (and per schedule change) and dropped.

Heap. The WebSocket buffers (2.2 KB receive, 256 B send) are the largest
blocks: reserved at boot (pbctl.main) or, switched on while running, by
app.links_changed before this module loads (a smaller receive buffer when the
heap has no 2188-byte hole: max_msg in the status); start() allocates them
itself only when neither did; kept over reconnects.

Two tasks:
- `_local()`, every second, online or offline: follows each connector (plug,
  unplug, authorisation) into transactions, journals their Start/Stop on flash,
  works out the status to report, hands the control task its requests (caps,
  enables, the site cap) from the charging profiles, remote stops and
  availability;
- `_link()`: connects (backoff 2..60 s), BootNotification (obeying its status
  and interval), then sends in order: the journal, status changes, triggered
  messages, MeterValues, Heartbeat. The reader (ocppj.Rpc.run) answers the
  central system's calls through `_handle` -> ocpp_calls.handle.

Journal (`ocpp.json`, a list file of pbctl.store: atomic): entries
[kind, ref, connector, idTag, meter Wh, time s, transactionId, reason];
kind "S" a StartTransaction to send, "O" an open transaction (its Start sent),
"E" a StopTransaction to send. Sent in order; an entry leaves when the central
system has answered it. A transaction open at boot (an "S" or "O" without its
"E") is stopped with reason PowerLoss; its meterStop is the EVSE's first fresh
energy reading after the boot (the Power Brain counts on through a reboot of
the controller), or its meterStart after 60 s without one. At most _MAX_Q
entries: a new transaction is journaled only while room for every
connector's Stop is left (else it is not reported, counted in `lost`).
"""
import gc
import time
from array import array

import asyncio
from micropython import const

from pblib import ocppj, ws

_SRC = const(2)  # devices.Evse.caps / enables: OCPP
_MAX_Q = const(32)
_MAX_C = const(8)
_RX = const(2048)  # the longest message from the central system
_TX = const(256)
# connector flags
_F_STOP = const(1)  # remote stop: no charging until unplugged
_F_INOP = const(2)  # ChangeAvailability Inoperative
_F_ZERO = const(4)  # a charging profile's limit is 0
_F_OFF = const(8)  # our enable(False) is in force
_F_AUTH = const(16)  # a RemoteStart's idTag to Authorize first (AuthorizeRemoteTxRequests)
_F_INOP_LATER = const(32)  # Inoperative once the transaction ends
# status codes (index into STATUS)
STATUS = ("Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Faulted",
          "Unavailable")
_EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0  # the board's epoch 2000 -> 1970


def now_s():
    """Seconds since 1970 (UTC), the clock of the schedules and the timestamps."""
    return int(time.time()) + _EPOCH


def iso(t):
    g = time.gmtime(t - _EPOCH)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % g[:6]


def settings(p):
    return (p["ocpp_url"], p["ocpp_password"])


def buffers():
    """The WebSocket client's receive and send buffers: start.py reserves them at
    boot when ocpp_url is set (app.reserve), before the heap is fragmented."""
    return bytearray(_RX + 140), bytearray(_TX)


def start(app, s):
    bufs = app.reserve.pop("ocpp", None)
    if bufs is None:
        gc.collect()  # switched on while running: the largest holes there are now
        try:
            bufs = buffers()
        except MemoryError:
            raise MemoryError("no block for the OCPP buffers: restart the controller")
    c = ws.Client(max_msg=_RX, timeout_ms=10000, ping_ms=60000, tx_size=_TX, bufs=bufs)
    cp = ChargePoint(app, s[0], s[1], c)
    cp.tasks = (asyncio.create_task(cp._local()), asyncio.create_task(cp._link()))
    return cp


class ChargePoint:
    def __init__(self, app, url, pwd, client):
        self.app = app
        self.url = url
        self.pwd = pwd
        self.ws = client
        self.rpc = ocppj.Rpc(client, self._handle, timeout_ms=15000)
        self.state = "connecting"  # connecting, booting, connected, offline, rejected
        self.last_error = ""
        self.connects = 0
        self.lost = 0
        self.no_heap = 0  # messages not built for want of heap (the connection kept)
        self.hb_s = 300  # HeartbeatInterval (the BootNotification's interval overrides)
        self.mv_s = 60  # MeterValueSampleInterval; 0: none
        self.artr = False  # AuthorizeRemoteTxRequests
        self.sampled = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Current.Offered"
        n = _MAX_C
        self.want = bytearray(n)  # status to report, per connector (index into STATUS)
        self.sent = bytearray(b"\xff" * (n + 1))  # reported (0xff: not yet); [n]: connector 0
        self.flags = bytearray(n)
        self.tx = array("i", bytes(4 * n))  # journal ref of the open transaction, 0: none
        self.txt = array("i", bytes(4 * n))  # its start, s
        self.cap = array("i", bytes(4 * n))  # our cap in force (mA, 0 none)
        self.pcap = array("i", [-1] * n)  # the profiles' cap (mA, -1 none)
        self.tag = [""] * n  # idTag authorised for the connector (RemoteStart, Authorize)
        self.site = -1  # the profiles' site cap in force (mA, -1 none)
        self.psite = -1  # the profiles' site cap
        self.profiles = []  # tuples, ocpp_calls.parse_profile
        self.due = 0  # when the profiles are evaluated next (s); 0: now
        self.trig = 0  # TriggerMessage bits: 1 boot, 2 heartbeat, 4 status, 8 meter values
        self.reset = None  # "Hard"/"Soft": a Reset to carry out
        self.q = []  # the journal
        self._ref = 0
        self.seq = 0  # our last request to the control task
        self._wake = asyncio.Event()
        self._stopped = False
        self.bufs = client.bufs
        self.tasks = ()
        self._load()

    # ---- status (sys_info links.ocpp) --------------------------------------------
    def status(self):
        r = self.rpc
        return {"state": self.state, "url": self.url, "last_error": self.last_error or self.rpc.last_error,
                "max_msg": self.ws.max_msg, "connects": self.connects, "journal": len(self.q), "lost": self.lost, "sent": r.calls,
                "received": r.calls_in, "timeouts": r.timeouts, "bad": r.bad, "no_heap": self.no_heap}

    def stop(self):
        self._stopped = True
        for t in self.tasks:
            t.cancel()
        self.ws._drop("stopped")
        self.app.reserve["ocpp"] = self.bufs  # kept for a restart with other settings
        try:
            self.app.control.release(_SRC)
        except Exception:  # (Busy: the queue is full) — the control task's next release gets it
            pass

    # ---- the connectors -------------------------------------------------------------
    def evses(self):
        return [d for d in self.app.site.devices if d.is_evse][:_MAX_C]

    def meter(self, e):
        return e.energy if e.rtu or e.energy else e.soft_wh

    def _status(self, i, e):
        f = self.flags[i]
        st = e.state
        if st == 6 or f & _F_INOP:
            return 7  # Unavailable
        if st == 5:
            return 6  # Faulted
        if st == 1:
            return 0  # Available
        if not self.tx[i]:
            return 5 if f & _F_STOP else 1  # Finishing, Preparing
        if e.limit == 0 or f & (_F_STOP | _F_ZERO):
            return 4  # SuspendedEVSE
        return 2 if st in (3, 4) else 3  # Charging, SuspendedEV

    async def _local(self):
        while True:
            try:
                self.tick()
            except Exception as ex:  # (a bug, no heap): the next second again
                self.last_error = "ocpp: local %r" % ex
            await asyncio.sleep_ms(1000)

    def tick(self):
        ctl = self.app.control
        now = now_s()
        ev = self.evses()
        changed = False
        for i in range(len(ev)):
            e = ev[i]
            f = self.flags[i]
            ref = self.tx[i]
            if ref and e.state == 1:
                self._stop(i, e, "EVDisconnected")
                changed = True
            elif ref and f & _F_STOP:
                self._stop(i, e, "Remote")
                changed = True
            elif not ref and e.state in (2, 3, 4) and not f & (_F_STOP | _F_INOP | _F_AUTH) and (
                    e.user or self.tag[i] or not e.cfg["users"]):
                changed = self._start(i, e, now) or changed
            if e.state == 1:
                self.tag[i] = ""
                f &= ~(_F_STOP | _F_AUTH)
            if f & _F_INOP_LATER and not self.tx[i]:
                f = (f | _F_INOP) & ~_F_INOP_LATER
            off = f & (_F_STOP | _F_INOP | _F_ZERO)
            if bool(off) != bool(f & _F_OFF):
                try:
                    self.seq = ctl.enable(e.dev_id, _SRC, not off)
                    f ^= _F_OFF
                except Exception:  # control.Busy: next second
                    pass
            c = self.pcap[i]
            c = c if c > 0 else 0
            if c != self.cap[i]:
                try:
                    self.seq = ctl.cap(e.dev_id, _SRC, c)
                    self.cap[i] = c
                except Exception:
                    pass
            self.flags[i] = f
            self.want[i] = self._status(i, e)
        for x in self.q:  # PowerLoss stops wait for a fresh energy reading
            if x[0] == "E" and x[4] < 0:
                i = x[2] - 1
                if i < len(ev) and ev[i].seen:
                    x[4] = self.meter(ev[i])
                elif now - x[5] > 60 or i >= len(ev):
                    x[4] = x[8] if len(x) > 8 else 0
                changed = True
        if self.psite != self.site:
            try:
                self.seq = ctl.site_cap(_SRC, None if self.psite < 0 else self.psite)
                self.site = self.psite
            except Exception:
                pass
        if changed:
            self._save()
            self._wake.set()
        if self.profiles and (not self.due or now >= self.due):
            try:
                self.calls().evaluate(self, now)
            finally:
                self.drop_calls()

    def calls(self):
        """ocpp_calls, loaded for this call (dropped again: self.drop_calls)."""
        return __import__("pbctl.integrations.ocpp_calls", None, None, ("handle",))

    def drop_calls(self):
        import sys

        k = "pbctl.integrations.ocpp_calls"
        if k in sys.modules:
            del sys.modules[k]
            p = sys.modules.get("pbctl.integrations")
            if p is not None:
                try:
                    delattr(p, "ocpp_calls")
                except AttributeError:
                    pass

    # ---- transactions and the journal --------------------------------------------
    def _start(self, i, e, now):
        if len(self.q) > _MAX_Q - _MAX_C:
            self.lost += 1
            self.last_error = "ocpp: journal full, transaction not reported"
            self.tx[i] = -1  # (not tried again until unplugged; the charging goes on)
            return False
        self._ref += 1
        tag = self.tag[i] or e.user or "pbctl"
        self.tx[i] = self._ref
        self.txt[i] = now
        self.tag[i] = tag
        self.q.append(["S", self._ref, i + 1, tag[:20], self.meter(e), now, 0, ""])
        if self.profiles:
            self.due = 0  # a TxProfile may hold from now
        return True

    def _stop(self, i, e, reason):
        ref = self.tx[i]
        self.tx[i] = 0
        if ref > 0:
            tx = 0
            for x in self.q:
                if x[1] == ref and x[0] == "O":
                    tx = x[6]
                    self.q.remove(x)
                    break
            self.q.append(["E", ref, i + 1, self.tag[i][:20], self.meter(e), now_s(), tx, reason])
        if self.profiles:
            self.due = 0

    def stop_all(self, reason):
        ev = self.evses()
        for i in range(len(ev)):
            if self.tx[i]:
                self._stop(i, ev[i], reason)
        self._save()

    def tx_of(self, txid):
        """The connector index of the open transaction txid, or -1."""
        for x in self.q:
            if x[0] == "O" and x[6] == txid:
                for i in range(_MAX_C):
                    if self.tx[i] == x[1]:
                        return i
        return -1

    def txid(self, i):
        """The transactionId of connector i's open transaction (0: none known yet)."""
        for x in self.q:
            if x[1] == self.tx[i] and x[0] == "O":
                return x[6]
        return 0

    def _load(self):
        from pbctl import store

        try:
            q = [x for x in store.Store(self.app.board.FLASH, "ocpp").each()
                 if isinstance(x, list) and 8 <= len(x) <= 9 and x[0] in ("S", "O", "E")]
        except Exception as ex:
            self.last_error = "ocpp: journal %r" % ex
            q = []
        now = now_s()
        for x in q:
            self._ref = max(self._ref, x[1])
        for x in list(q):
            if x[0] != "E" and not [y for y in q if y[0] == "E" and y[1] == x[1]]:
                # open at the reboot: stopped as PowerLoss (meterStop: see the module docstring)
                q.append(["E", x[1], x[2], x[3], -1, now, x[6] if x[0] == "O" else 0, "PowerLoss", x[4]])
                if x[0] == "O":
                    q.remove(x)
        self.q = q

    def _save(self):
        from pbctl import store

        try:
            store.Store(self.app.board.FLASH, "ocpp").write(self.q, True)
        except Exception as ex:  # the flash is full: the journal is still in RAM
            self.last_error = "ocpp: journal save %r" % ex

    # ---- the connection -------------------------------------------------------------
    async def _link(self):
        wait = 2
        while not self._stopped:
            self.state = "connecting"
            try:
                await self.ws.connect(self.url, "ocpp1.6", user=self.url.rstrip("/").rpartition("/")[2],
                                      password=self.pwd or None)
            except Exception as x:
                self.state = "offline"
                self.last_error = "ocpp: connect: %s" % (x.args[0] if x.args else type(x).__name__)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 60)
                continue
            self.connects += 1
            self.last_error = ""
            reader = asyncio.create_task(self.rpc.run())
            try:
                await self._session()
                wait = 2
            except Exception as x:  # OSError, timeouts: the connection is gone or useless
                self.last_error = "ocpp: %s" % (x.args[0] if x.args else type(x).__name__)
            self.state = "offline"
            await self.ws.close()
            try:
                await asyncio.wait_for_ms(reader, 1000)
            except Exception:
                reader.cancel()
            if self.reset:
                await self._do_reset()
            await asyncio.sleep(wait)
            wait = min(wait * 2, 60)

    async def _do_reset(self):
        kind = self.reset
        self.reset = None
        r = getattr(self.app.board, "reset", None)
        if kind == "Hard" and r is not None:
            r()
        # else (the simulator, a Soft reset): the OCPP link starts anew with a BootNotification

    async def _session(self):
        app = self.app
        self.state = "booting"
        while True:
            r = await self.rpc.call("BootNotification", {
                "chargePointVendor": "pbctl", "chargePointModel": "pbctl Power Brain",
                "chargePointSerialNumber": app.serial, "firmwareVersion": app.VERSION})
            st = r.get("status")
            iv = r.get("interval")
            if st == "Accepted":
                if type(iv) is int and iv > 0:
                    self.hb_s = iv
                break
            self.state = "pending" if st == "Pending" else "rejected"
            await asyncio.sleep(iv if type(iv) is int and iv > 0 else 30)
        self.state = "connected"
        self.trig &= ~1
        for i in range(len(self.sent)):
            self.sent[i] = 255
        self.hb = self.mv = time.ticks_ms()
        while self.ws._s is not None:
            try:
                if await self._round():
                    return
            except MemoryError:
                # A message that found no heap while it was built: nothing of it went out (a
                # frame half written drops the connection in ws.send), so the connection stays;
                # the journal and statuses are sent again, a reading or heartbeat waits its turn.
                if self.ws._s is None:
                    raise
                self.no_heap += 1
            try:
                await asyncio.wait_for_ms(self._wake.wait(), 1000)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def _round(self):
        # One pass of the session: True when it ended (a reset).
        await self._journal()
        if self.reset:  # (it may have come while the journal was being sent)
            self.stop_all(self.reset + "Reset")
            await self._journal()
            return True
        await self._statuses()
        await self._remote_auth()
        if self.trig & 1:
            self.trig &= ~1
            return await self._session() or True
        now = time.ticks_ms()
        if self.trig & 8 or self.mv_s and time.ticks_diff(now, self.mv) >= self.mv_s * 1000:
            self.mv = now
            await self._meter_values(self.trig & 8)
            self.trig &= ~8
        if self.trig & 2 or time.ticks_diff(now, self.hb) >= self.hb_s * 1000:
            self.trig &= ~2
            self.hb = now
            await self.rpc.call("Heartbeat", {})

    async def _journal(self):
        while True:
            x = None
            for y in self.q:
                if y[0] != "O" and (y[0] == "S" or y[4] >= 0):
                    x = y
                    break
                if y[0] == "E":
                    return  # a PowerLoss stop waits for its reading: the rest waits behind it
            if x is None:
                return
            try:
                if x[0] == "S":
                    r = await self.rpc.call("StartTransaction", {
                        "connectorId": x[2], "idTag": x[3], "meterStart": x[4], "timestamp": iso(x[5])})
                    t = r.get("transactionId")
                    t = t if type(t) is int else 0
                    x[0] = "O"
                    x[6] = t
                    for y in self.q:  # its stop, journaled while the start waited
                        if y[0] == "E" and y[1] == x[1]:
                            y[6] = t
                            self.q.remove(x)
                            break
                    if self.profiles:
                        self.due = 0
                else:
                    p = {"transactionId": x[6], "meterStop": x[4], "timestamp": iso(x[5]), "reason": x[7]}
                    if x[3]:
                        p["idTag"] = x[3]
                    await self.rpc.call("StopTransaction", p)
                    self.q.remove(x)
            except ocppj.OcppError as e:  # the central system refuses it: it is not sent again
                self.last_error = "ocpp: %s refused: %s" % ("Start" if x[0] == "S" else "Stop", e.code)
                self.q.remove(x)
                if x[0] == "S":
                    for y in self.q:
                        if y[0] == "E" and y[1] == x[1]:
                            self.q.remove(y)
                            break
            self._save()

    async def _statuses(self):
        ev = self.evses()
        n = len(ev)
        if self.sent[_MAX_C] == 255:  # connector 0: the charge point itself
            await self._status_call(0, "Available")
            self.sent[_MAX_C] = 0
        for i in range(n):
            w = self.want[i]
            if self.sent[i] != w:
                await self._status_call(i + 1, STATUS[w])
                self.sent[i] = w

    async def _status_call(self, c, st):
        await self.rpc.call("StatusNotification", {"connectorId": c, "errorCode": "OtherError" if st == "Faulted"
                                                   else "NoError", "status": st, "timestamp": iso(now_s())})

    async def _remote_auth(self):
        for i in range(_MAX_C):
            if self.flags[i] & _F_AUTH:
                ok = await self.authorize(self.tag[i])
                self.flags[i] &= ~_F_AUTH
                if ok:
                    ev = self.evses()
                    if i < len(ev):
                        self.app.control.authorize(ev[i].dev_id, "ocpp")
                else:
                    self.tag[i] = ""

    async def authorize(self, tag):
        """Authorize.req for an idTag not known locally (api/session.py's
        enter_rfid, a RemoteStart with AuthorizeRemoteTxRequests): True if
        Accepted; False when refused or the central system is not there."""
        if self.state != "connected":
            return False
        try:
            r = await self.rpc.call("Authorize", {"idTag": tag[:20]})
        except Exception as x:
            self.last_error = "ocpp: Authorize: %r" % x
            return False
        i = r.get("idTagInfo")
        return type(i) is dict and i.get("status") == "Accepted"

    def authorized(self, e, tag):
        """enter_rfid: tag (accepted by Authorize) starts the session at EVSE e."""
        ev = self.evses()
        for i in range(len(ev)):
            if ev[i] is e:
                self.tag[i] = tag
        self._wake.set()

    async def _meter_values(self, all_):
        ev = self.evses()
        for i in range(len(ev)):
            if self.tx[i] <= 0 and not all_:
                continue
            e = ev[i]
            v = []
            s = self.sampled
            if "Energy.Active.Import.Register" in s:
                v.append({"value": str(self.meter(e)), "measurand": "Energy.Active.Import.Register", "unit": "Wh"})
            if "Power.Active.Import" in s:
                v.append({"value": str(e.power), "measurand": "Power.Active.Import", "unit": "W"})
            if "Current.Import" in s:
                for k in range(3):
                    c = abs(e.cur[k])
                    v.append({"value": "%d.%d" % (c // 1000, c % 1000 // 100),
                              "measurand": "Current.Import", "phase": "L%d" % (k + 1), "unit": "A"})
            if "Current.Offered" in s:
                v.append({"value": "%d.%d" % (e.limit // 1000, e.limit % 1000 // 100),
                          "measurand": "Current.Offered", "unit": "A"})
            p = {"connectorId": i + 1, "meterValue": [{"timestamp": iso(now_s()), "sampledValue": v}]}
            t = self.txid(i) if self.tx[i] > 0 else 0
            if t:
                p["transactionId"] = t
            v = None
            await self.rpc.call("MeterValues", p)
            p = None

    # ---- the central system's calls --------------------------------------------------
    async def _handle(self, action, payload):
        try:
            for k in range(6):
                # loading the module is the call's largest need and changes nothing: a heap
                # that has no room for it now (an HTTP request holding its own module) may
                # have in a moment (the central system waits seconds: ~0.9 s here is cheap);
                # only then is the answer InternalError
                try:
                    h = self.calls().handle
                    break
                except MemoryError:
                    self.drop_calls()
                    if k == 5:
                        raise
                    await asyncio.sleep_ms(30 << k)
                    gc.collect()
            return await h(self, action, payload)
        finally:
            self.drop_calls()
