"""The control task: the one owner of the charging limits (API.md §9,
INTEGRATIONS.md: "the control loop is the only writer of the charging limits").

Every `cycle_time` ms a full cycle: read the meters (grid meter first), and if
a phase is over `max_total_current` compute and write reduced limits at once,
before any other device is polled (the fast overload path); read the EVSEs;
then the pass below. Only the volatile registers charging_cur_limit (8093,
0.1 A) and charging_enable (8094) are ever written, and only on change. With
`lb_enabled` false everything is computed and shown, nothing is written.
Bus faults are counted (rtu.Stats) and never stop the loop.

Requests. Nobody else changes the site or writes a limit: the API and every
integration hand the control task a request — a configuration change
(install), an HTTP input reading, an override, an authorised user, a cap or
an enable/disable of an integration, a reset, an energy value, the diagnostic
trace — with the methods below. They queue (at most _MAX_REQUESTS; one more
raises Busy) and are applied at one point of the task's pass, right before it
decides; a request wakes the task, which then runs a pass without polling
when no full cycle is due. `await settle(seq)` waits until the pass that
applied request seq has decided and written. The pass:

    apply requests → configure the balancer → decide → write

A pass writes what its own decision holds (the limits are copied when it
decides), and nothing but this task decides, so a write pass never mixes two
decisions.
"""
import gc
import sys
import time
from array import array

import asyncio
from micropython import const

from pblib import balancer
from pblib import rtu

from pbctl import devices

_CUR_LIMIT = const(8093)
_ENABLE = const(8094)
_RELAY = const(8087)  # relay_select: 0 three phases, 1 one phase (volatile)
_NO_LOAD = const(1000)  # mA: "the car draws < 1 A" (INTEGRATIONS.md §5)
_PSW_STOP_MS = const(10000)  # at most this long for the car to stop before the relay
_PSW_SETTLE_MS = const(5000)  # after the relay, before charging_enable 1
_OFFLINE = const(6)
_SOFT_SAVE_MS = const(300000)  # energy estimates go to flash at most every 5 minutes
_MAX_REQUESTS = const(16)
# request kinds
_INSTALL = const(1)
_READING = const(2)
_OVERRIDE = const(3)
_AUTHORIZE = const(4)
_RESET = const(5)
_ENERGY = const(6)
_TRACE = const(7)
_CAP = const(8)
_ENABLE_REQ = const(9)
_USER_RULES = const(10)
_PHASE_WISH = const(11)
_DISCONNECT = const(12)
_DISCONNECT_CP = const(8086)
_SITE_CAP = const(13)
_RELEASE = const(14)
_EPOCH = 946684800 if time.gmtime(0)[0] == 1970 else 0  # the host's epoch 1970 -> the board's 2000
_OVR = {"C": 1, "E": 2, "U": 4}  # balancer set_evse ovr bits: off, ignore EVSE rules, ignore user rules


class Busy(Exception):
    """The request queue is full: try again later (HTTP 503)."""


class Control:
    def __init__(self, site, bus, flash, slots):
        self.site = site  # devices.Site: this task alone changes it
        self.bus = bus  # rtu.Master: this task polls and writes with priority
        self.flash = flash  # where the energy estimates are saved
        self.lb = balancer.Balancer(slots)
        self.slot = [None] * slots  # EVSE device per balancer slot
        self._want = array("i", bytes(4 * slots))  # the limits of this pass's decision
        self._req = []
        self._seq = 0  # requests accepted
        self.settled = 0  # requests applied, decided and written
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self.cycles = 0  # full cycles
        self.passes = 0  # passes (full cycles and request passes)
        self.cycle_ms = 0  # duration of the last full cycle
        self.last_ok_ms = time.ticks_ms()  # end of the last full cycle (watchdog)
        self.cons_power = 0  # W, all EVSEs
        self.avail_power = 0  # W the EVSEs may use now
        self.max_evse_power = 0  # W at the configured limits
        self.writes = 0
        self.switches = 0  # relay switches written (phase switching)
        self.switch_aborts = 0  # sequences given up: the car did not stop in time
        self.errors = 0  # exceptions in a pass (a bug), printed
        self.oom = 0  # passes the heap ran short in
        self._http = False  # this pass applied an HTTP meter's reading
        # the integrations' caps on all EVSEs together, mA per phase, by source
        # (devices.Evse.caps); -1: none (site_cap)
        self.site_caps = array("i", (-1, -1, -1))
        self._last = self._soft_ms = time.ticks_ms()
        self.clock_offset = 0  # s added to the clock (the host board's PBCTL_CLOCK_OFFSET: e2e tests)
        self.zone = None
        self._tz = None  # the tz string self.zone was parsed from
        for d in site.devices:
            self._attach(d)

    # ---- requests (from any task) -------------------------------------------------
    def _request(self, kind, a, b=None, c=None, force=False):
        if len(self._req) >= _MAX_REQUESTS and not force:
            raise Busy()
        self._req.append((kind, a, b, c))
        self._seq += 1
        self._wake.set()
        return self._seq

    def install(self, change):
        """A saved configuration change (config.Change)."""
        return self._request(_INSTALL, change)

    def reading(self, dev, values):
        """An HTTP input device's reading (validated set_ajax_* fields)."""
        return self._request(_READING, dev, values)

    def override(self, dev_id, flags, mamps):
        """override_device: flags (subset of "CcEeUu"), mamps (mA, None = unchanged)."""
        return self._request(_OVERRIDE, dev_id, flags, mamps)

    def authorize(self, dev_id, uid, rules=None):
        """The EVSE's session belongs to user uid (its charging rules: rules) from now on."""
        return self._request(_AUTHORIZE, dev_id, uid, rules)

    def user_rules(self, uid, rules):
        """User uid's charging rules changed: its sessions follow them."""
        return self._request(_USER_RULES, uid, rules)

    def charging(self, uid):
        """Has user uid a session, or one asked for (an authorisation queued)?"""
        for d in self.site.devices:
            if d.is_evse and d.user == uid:
                return True
        for r in self._req:
            if r[0] == _AUTHORIZE and r[2] == uid:
                return True
        return False

    def reset(self, dev_id):
        """reset_device: the same configuration, fresh runtime state."""
        return self._request(_RESET, dev_id)

    def energy(self, dev_id, wh):
        """soft_meter&val=: the EVSE's energy estimate is wh from now on (saved at once)."""
        return self._request(_ENERGY, dev_id, wh)

    def trace(self, fn):
        """The bus master's trace hook (diagnostic logging), None = off."""
        return self._request(_TRACE, fn)

    def cap(self, dev_id, source, ma):
        """An integration's cap on the EVSE, mA (0 = none). source: devices.Evse.caps."""
        return self._request(_CAP, dev_id, source, ma)

    def enable(self, dev_id, source, on):
        """An integration allows (True) or disables (False) charging at the EVSE."""
        return self._request(_ENABLE_REQ, dev_id, source, on)

    def phase_wish(self, dev_id, n):
        """An integration's wish for the EVSE's phases: 1, 3, or 0 for none
        (devices.Evse.phase_wish; phase switching honours it)."""
        return self._request(_PHASE_WISH, dev_id, n)

    def disconnect(self, dev_id, s):
        """Open the EVSE's control pilot for s seconds (disconnect_cp 8086,
        written by the next pass: the car re-detects)."""
        return self._request(_DISCONNECT, dev_id, s)

    def site_cap(self, source, ma):
        """An integration's cap on the EVSEs' total, mA per phase (None: none;
        0: no charging), applied like max_total_evse_current: the tighter wins,
        and max_total_current (the fuse) always holds."""
        return self._request(_SITE_CAP, None, source, -1 if ma is None else ma)

    def release(self, source):
        """Withdraw everything integration source asked for (it stops): its caps,
        its disables, its site cap, and for source 0 (Modbus TCP) the phase
        wishes. Never refused: queued beyond the limit (one per integration
        that stops)."""
        return self._request(_RELEASE, None, source, None, True)

    async def settle(self, seq, timeout_ms=5000):
        """Wait until request seq is applied, decided on and written; False
        after timeout_ms (the request still stands)."""
        t0 = time.ticks_ms()
        while self.settled < seq:
            left = timeout_ms - time.ticks_diff(time.ticks_ms(), t0)
            if left <= 0:
                return False
            try:
                await asyncio.wait_for_ms(self._done.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True

    def room(self):
        """Requests the queue takes now (one write of several registers is
        all or nothing)."""
        return _MAX_REQUESTS - len(self._req)

    def slots(self):
        return len(self.slot)

    # ---- transactions for the API and the gateways, behind the control loop's own --
    async def rtu_read(self, slave, addr, count):
        """Function 03 through the bus master's normal lane: a memoryview of the
        data, valid until the caller's next await on the bus; rtu.ModbusError.
        Quiet: an exception reply is the user's answer, not a communication
        error of the device (issue 13; a fault of the bus counts as any)."""
        return await self.bus.read(slave, addr, count, False, True)

    async def rtu_write(self, slave, addr, data):
        """An explicit user's write (cmd=modbus&write=): data = big-endian
        register bytes; one register with function 06, more with 16."""
        if len(data) == 2:
            await self.bus.write1(slave, addr, (data[0] << 8) | data[1], False, True)
        else:
            await self.bus.writen(slave, addr, data, False, True)

    # ---- the task -------------------------------------------------------------------
    async def run(self):
        due = time.ticks_ms()
        while True:
            t0 = time.ticks_ms()
            full = time.ticks_diff(t0, due) >= 0
            try:
                if full:
                    await self.poll(t0)
                await self.step()
            except MemoryError:
                # the heap ran short (requests are shed before it does: app.admit):
                # collect, and decide and write with what was read
                self.oom += 1
                gc.collect()
                try:
                    await self.step()
                except Exception as e:
                    self.errors += 1
                    print("pbctl: control cycle:", repr(e))
            except Exception as e:  # a bug must not stop the charging control
                self.errors += 1
                print("pbctl: control cycle:", repr(e))
            now = time.ticks_ms()
            if full:
                self.cycle_ms = time.ticks_diff(now, t0)
                self.last_ok_ms = now
                self.cycles += 1
                self.soft_meters(now)
                due = time.ticks_add(t0, self.site.params["cycle_time"])
            left = time.ticks_diff(due, now)
            for d in self.slot:  # a phase switch's 5 s after the relay end on time
                if d is not None and d.psw == 2:
                    left = min(left, _PSW_SETTLE_MS - time.ticks_diff(now, d.psw_ms))
            if left > 0 and not self._req:
                try:
                    await asyncio.wait_for_ms(self._wake.wait(), left)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()

    async def step(self):
        """One pass: apply the requests, decide, write (the task's own; tests drive it too)."""
        seq = self._seq
        self._http = False
        self.apply()
        now = time.ticks_ms()
        if self._http:
            self.http_meters(now)
        self.configure()
        self.decide(now)
        await self.write()
        self.passes += 1
        self.settled = seq
        self._done.set()
        self._done.clear()  # (woken waiters are already scheduled)

    def apply(self):
        """The one point where the site changes: every queued request, in order."""
        q = self._req
        while q:
            r = q.pop(0)
            try:
                self._apply(r[0], r[1], r[2], r[3])
            except Exception as e:  # one bad request must not stop the others
                self.errors += 1
                print("pbctl: request %d: %r" % (r[0], e))

    def _apply(self, kind, a, b, c):
        site = self.site
        if kind == _INSTALL:
            self._install(a)
            return
        if kind == _READING:
            if a in site.devices:  # (not deleted meanwhile)
                a.http_update(b, time.ticks_ms())
                self._http = self._http or not a.is_evse
            return
        if kind == _TRACE:
            self.bus.trace = a
            return
        if kind == _SITE_CAP:
            self.site_caps[b] = c
            return
        if kind == _RELEASE:
            self.site_caps[b] = -1
            for d in site.devices:
                if d.is_evse:
                    d.caps[b] = 0
                    d.enables[b] = 1
                    if b == 0:
                        d.phase_wish = 0
            return
        if kind == _USER_RULES:
            for d in site.devices:
                if d.is_evse and d.user == a:
                    d.user_rules = b or None
            return
        d = site.device(a)
        if d is None or (kind >= _CAP and not d.is_evse):
            return  # deleted meanwhile (or replaced by a meter)
        if kind == _OVERRIDE:
            ov = d.ov_flags
            for f in b:
                u = f.upper()
                if f == u:
                    if u not in ov:
                        ov += u
                else:
                    ov = ov.replace(u, "")
            d.ov_flags = ov
            if c is not None:
                d.ov_mamps = c
        elif kind == _AUTHORIZE:
            d.user = b
            d.user_rules = c or None
        elif kind == _RESET:
            n = devices.new_device(d.dev_type, d.dev_id, d.cfg, time.ticks_ms())
            if n.rtu:  # fresh runtime state: communication statistics too
                self.bus.stats(n.slave(), True)
            self._attach(n)
            site.devices = [n if x is d else x for x in site.devices]
        elif kind == _ENERGY:
            d.soft_wh = d.cfg["soft_meter"] = b
            d.soft_mws = 0
            self.save_energy()
        elif kind == _CAP:
            d.caps[b] = c
        elif kind == _ENABLE_REQ:
            d.enables[b] = 1 if c else 0
        elif kind == _PHASE_WISH:
            d.phase_wish = b
        elif kind == _DISCONNECT:
            d.disconnect = b

    def _install(self, ch):
        site = self.site
        old = [(e.dev_id, e.soft_wh) for e in site.devices if e.is_evse and not e.rtu]
        if ch.lb is not None and ch.lb.n > len(self.slot):
            self.lb = ch.lb
            self.slot = [None] * ch.lb.n
            self._want = array("i", bytes(4 * ch.lb.n))
        for d, cfg in ch.cfgs:
            if d.is_evse and cfg["soft_meter"] != d.cfg["soft_meter"]:
                d.soft_wh = cfg["soft_meter"]
                d.soft_mws = 0
            d.cfg = cfg
        for d in ch.devices:
            if d not in site.devices:
                self._attach(d)
        site.params = ch.params
        site.devices = ch.devices
        site.admin = ch.admin
        site.license = ch.license
        if old != [(e.dev_id, e.soft_wh) for e in site.devices if e.is_evse and not e.rtu]:
            self.save_energy()  # the estimates the change set (config.load takes the energy file's)

    def _attach(self, d):
        # a bus device's statistics are the bus master's record of its slave id
        if d.rtu and self.bus:
            s = self.bus.stats(d.slave())
            if s.last_err_ms is None:
                s.last_err_ms = d.stats.last_err_ms
            d.stats = s

    # ---- one full cycle's reads -------------------------------------------------------
    async def poll(self, now):
        site = self.site
        p = site.params
        grid = cons = prod = None
        lb = self.lb
        # meters first: the grid meter decides how much there is to share. Keep
        # the EVSEs after it: the balancer estimates the other load from the grid
        # reading and the EVSE currents of the round before it and of this round
        # (pblib/balancer.py, "Pairing"), so a car's ramp makes no limit dip
        for d in sorted_meters(site.devices):
            if not await self.read(d, now):
                continue
            role = d.cfg["role"]
            if role == 3:
                grid = add3(grid, d.cur)
            elif role == 1:
                cons = add3(cons, d.cur)
            elif role == 2:
                prod = add3(prod, d.cur)
            if role == 3 and max(d.cur) > p["max_total_current"]:
                # fast path: overload seen, cut now, before polling anything else
                self.configure()
                lb.set_grid(grid[0], grid[1], grid[2], now)
                self.decide(now)
                await self.write(True)
        for e in site.devices:
            if e.is_evse and e.rtu and not await self.read(e, now):
                e.set_state(_OFFLINE, now)
        now = time.ticks_ms()
        if grid is not None:
            lb.meter_mode = 3  # balancer meter_mode: grid meter
            lb.set_grid(grid[0], grid[1], grid[2], now)
        elif cons is not None:
            lb.meter_mode = 1  # consumption meter
            lb.set_load(cons[0], cons[1], cons[2], now)
        elif not any_role(site.devices, 1, 3):
            lb.meter_mode = 0  # no meter
        if prod is not None:
            lb.set_production(prod[0], prod[1], prod[2], now)

    def http_meters(self, now):
        """A pass that applied an HTTP meter's reading feeds the balancer at once
        (an overload it shows is cut in this pass, not a cycle later): the sum
        of the fresh HTTP meters of each role that has no bus meter (a bus
        meter's reading is fed by the poll that read it)."""
        lb = self.lb
        t = self.site.params["http_timeout"] * 1000
        for role in (3, 1, 2):
            acc = None
            for d in self.site.devices:
                if d.is_evse or d.cfg["role"] != role or not d.cfg["device_enabled"]:
                    continue
                if d.rtu:
                    acc = None
                    break
                if d.seen and time.ticks_diff(now, d.last_ms) < t:
                    acc = add3(acc, d.cur)
            if acc is None:
                continue
            if role == 3:
                lb.meter_mode = 3
                lb.set_grid(acc[0], acc[1], acc[2], now)
            elif role == 1:
                if lb.meter_mode != 3:
                    lb.meter_mode = 1
                    lb.set_load(acc[0], acc[1], acc[2], now)
            else:
                lb.set_production(acc[0], acc[1], acc[2], now)

    def soft_meters(self, now):
        """EVSEs without an energy reading integrate their power (soft_meter);
        the estimates are saved at most every 5 minutes (flash wear)."""
        dt = time.ticks_diff(now, self._last)
        self._last = now
        changed = False
        for e in self.slot:
            if e is not None and not e.rtu:
                e.integrate(dt)
                changed = changed or e.soft_wh != e.cfg["soft_meter"]
        if changed and time.ticks_diff(now, self._soft_ms) >= _SOFT_SAVE_MS:
            self._soft_ms = now
            for e in self.slot:
                if e is not None and not e.rtu:
                    e.cfg["soft_meter"] = e.soft_wh
            self.save_energy()

    def save_energy(self):
        """The energy estimates to flash, in their own file (config.load reads it)."""
        from pbctl import store

        try:
            store.Store(self.flash, "energy").save(
                dict((e.dev_id, e.soft_wh) for e in self.site.devices if e.is_evse and not e.rtu))
        except store.StoreError as ex:  # a full flash must not stop the control loop
            self.errors += 1
            print("pbctl: soft_meter save:", ex)

    async def read(self, d, now):
        """Poll one enabled device; False if it has no fresh reading."""
        if not d.cfg["device_enabled"] and not d.is_evse:
            return False
        if d.rtu:
            try:
                await d.poll(self.bus, now)
                return True
            except rtu.ModbusError:
                d.missed = True  # (the Modbus TCP gateway serves no stale reading)
                return False  # counted in d.stats by the bus master
        # HTTP input device: fresh while updated within http_timeout
        st = d.stats
        fresh = time.ticks_diff(now, d.last_ms) < self.site.params["http_timeout"] * 1000 and d.seen
        if not fresh and not st.err:
            st.err = True
            st.errors += 1
            st.last_error = "http timeout"
            st.last_err_ms = now
        return fresh

    # ---- balancer in/out ------------------------------------------------------------
    def configure(self):
        """Copy parameters and per-EVSE settings into the balancer."""
        site = self.site
        p = site.params
        lb = self.lb
        lb.max_total_current = p["max_total_current"]
        lb.reserve_current = p["reserve_current"]
        lb.max_total_evse_current = self.evse_total()
        lb.failsafe_current = p["failsafe_current"]
        lb.meter_timeout_ms = p["meter_timeout"] * 1000
        lb.rotation_ms = p["rotation_time"] * 1000
        lb.disable_policy = p["disable_policy"]
        lb.lb_enabled = p["lb_enabled"]
        lb.phase_switch_min_ms = p["phase_switch_min_time"] * 1000
        lb.max_phase_skew = p["max_phase_skew"]
        lt = self.local()  # the charging rules run on local time (param tz)
        lb.weekday = (lt // 86400 + 5) % 7  # 0 = Monday (2000-01-01 was a Saturday)
        lb.minute = lt % 86400 // 60
        slot = self.slot
        evses = [d for d in site.devices if d.is_evse]
        for i in range(len(slot)):
            e = evses[i] if i < len(evses) else None
            if slot[i] is not e:
                slot[i] = e
                lb.reset_slot(i)
            if e is None:
                lb.set_evse(i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None)  # unused slot
                continue
            c = e.cfg
            mx = c["max_charging_cur"]
            if not e.rtu and e.max_http:
                mx = min(mx, e.max_http)
            o = 1 if e.disabled() else 0
            for f in e.ov_flags:
                o |= _OVR[f]
            if c["users"] and not e.user:
                o |= 1  # balancer OVR_OFF: this EVSE needs an authorised user first
            rules = c["charging_rules"]
            cur = e.cur
            sw = 0  # balancer sw bits: auto 1, relay on one phase 2, sequence running 4, wish 8 / 16
            if e.features & 0x100:  # only a box that reports 1p/3p switching (8113 bit 8)
                w = e.phase_wish
                sw = (c["phase_switching"] == 1) | e.relay << 1 | (e.psw > 0) << 2 | (
                    8 if w == 1 else (16 if w == 3 else 0))
            lb.set_evse(i, e.state, c["device_enabled"], c["used_phases"], c["phase_rotation"],
                        c["min_charging_cur"], mx, c["prio"], c["pause_min_time"] * 1000, o, e.cap(),
                        e.session_wh(), cur[0], cur[1], cur[2], rules if rules else None, e.user_rules, sw)

    def utc(self):
        """UTC seconds since 2000-01-01 (the board's epoch: a small int until 2034)."""
        return int(time.time()) - _EPOCH + self.clock_offset

    def local(self):
        """Local seconds since 2000-01-01 by param tz (parsed again only when it
        changed; a string pblib.tz refuses, which config never lets in: UTC).
        pblib.tz is loaded only for a zone other than UTC0 (~1.8 KB of heap)."""
        s = self.site.params["tz"]
        if s is not self._tz:
            self._tz = s
            self.zone = None
            if s != "UTC0":
                from pblib import tz

                try:
                    self.zone = tz.Zone(s)
                except ValueError:
                    pass
            if self.zone is None:  # (set_params' check may have loaded it too)
                sys.modules.pop("pblib.tz", None)
                import pblib

                if hasattr(pblib, "tz"):
                    delattr(pblib, "tz")
        return self.zone.local(self.utc()) if self.zone else self.utc()

    def evse_total(self):
        """The cap on all EVSEs together, mA per phase (0: none): the tightest of
        max_total_evse_current and the integrations' site caps; a site cap of 0
        becomes 1 mA (the balancer's 0 means "no cap"): every EVSE pauses."""
        m = self.site.params["max_total_evse_current"]
        for c in self.site_caps:
            if c >= 0 and (not m or c < m):
                m = c if c else 1
        return m

    def decide(self, now):
        lb = self.lb
        lb.balance(now)
        cons = 0
        want = self._want
        for i in range(len(self.slot)):
            e = self.slot[i]
            if e is None:
                continue
            e.limit = want[i] = lb.limit[i]
            was = e.paused
            e.paused = lb.paused[i] == 1
            if e.paused and not was:
                e.pause_ms = time.ticks_add(now, -lb.pause_ms[i])
            # the code; get_dev_info renders the text (reasons.reason_text)
            e.reason = -1 if e.cfg["users"] and not e.user and e.plugged else lb.reason[i]
            cons += e.power
        self.cons_power = cons
        b = lb.budget
        self.avail_power = (b[0] + b[1] + b[2]) * 230 // 1000
        p = self.site.params
        m = self.evse_total() or p["max_total_current"]
        self.max_evse_power = 3 * m * 230 // 1000

    async def write(self, lower_only=False):
        """Write the limits of this pass's decision that differ from what the
        boxes report (volatile registers only).

        Two rounds: every cut first (a lower limit, charging_enable 0, a
        disconnect, a phase switching step), then the raises — and no raise
        while a cut of this pass failed: the box that kept its higher limit may
        draw it, and a raise elsewhere would put the written limits above the
        fuse until the next pass (the fault storm saw that, 0.2–0.3 s).

        lower_only (the fast overload path): its EVSE currents are a cycle old,
        so it may only cut; raises wait for the full cycle's fresh readings."""
        if not self.site.params["lb_enabled"]:
            return
        bus = self.bus
        slot = self.slot
        want = self._want
        w1p = self.lb.want_1p
        ok = True  # every cut of this pass went through
        for up in (False, True):
            if up and (lower_only or not ok):
                return
            for i in range(len(slot)):
                e = slot[i]
                if e is None or not e.rtu:
                    continue
                if e.psw or (w1p[i] != e.relay and e.features & 0x100 and e.state != _OFFLINE):
                    if not lower_only and not up:
                        try:
                            await self._phase_step(e, w1p[i])
                        except rtu.ModbusError:
                            ok = False  # counted; the next pass tries again
                    continue
                if e.state == _OFFLINE:
                    continue
                lim = want[i] // 100 * 100
                en = 1 if lim else 0
                s = e.slave()
                try:
                    if e.disconnect and not up and not lower_only:  # (a request: written once, whatever answers)
                        n = e.disconnect
                        e.disconnect = 0
                        await bus.write1(s, _DISCONNECT_CP, n, True)
                        self.writes += 1
                    # (a register not read yet, -1, is written with the cuts: what the box has is unknown)
                    if e.dev_limit != lim and (0 <= e.dev_limit < lim) == up:
                        await bus.write1(s, _CUR_LIMIT, lim // 100, True)
                        e.dev_limit = lim
                        self.writes += 1
                    if e.dev_enable != en and (0 <= e.dev_enable < en) == up:
                        await bus.write1(s, _ENABLE, en, True)
                        e.dev_enable = en
                        self.writes += 1
                except rtu.ModbusError:  # counted; the next pass compares again
                    if not up:
                        ok = False

    async def _phase_step(self, e, one):
        """The phase switching sequence (INTEGRATIONS.md §5), a step per pass:
        charging_enable 0 -> a reading after it shows the car draws < 1 A (at
        most 10 s, else it is given up: the balancer's request lapses and the
        car goes on in its mode) -> relay_select -> 5 s -> the sequence ends and
        the next pass (at once) writes the limit and charging_enable 1. The
        relay is never written while current flows. one: the mode the balancer
        wants (want_1p)."""
        now = time.ticks_ms()
        s = e.slave()
        if not e.psw:
            if e.dev_enable != 0:
                await self.bus.write1(s, _ENABLE, 0, True)
                e.dev_enable = 0
                self.writes += 1
            e.psw = 1
            e.psw_ms = now
            return
        t = time.ticks_diff(now, e.psw_ms)
        if e.psw == 1:
            c = e.cur
            if one == e.relay:  # the request lapsed (unplugged, disabled, ...)
                e.psw = 0
            elif (e.state != _OFFLINE and time.ticks_diff(e.last_ms, e.psw_ms) > 0
                  and max(c) < _NO_LOAD and min(c) > -_NO_LOAD):
                await self.bus.write1(s, _RELAY, one, True)
                e.relay = one
                e.psw = 2
                e.psw_ms = now
                self.writes += 1
                self.switches += 1
            elif t >= _PSW_STOP_MS:
                e.psw = 0
                self.switch_aborts += 1
                print("pbctl: phase switch of %s given up: the car did not stop" % e.dev_id)
            if not e.psw:
                self._wake.set()  # decide again now
        elif t >= _PSW_SETTLE_MS:
            e.psw = 0
            self._wake.set()  # the next pass decides in the new mode and enables


def add3(acc, cur):
    if acc is None:
        return [cur[0], cur[1], cur[2]]
    for k in range(3):
        acc[k] += cur[k]
    return acc


def any_role(devices, *roles):
    for d in devices:
        if not d.is_evse and d.cfg["role"] in roles and d.cfg["device_enabled"]:
            return True
    return False


def sorted_meters(devices):
    """Enabled meters, the grid meters (role 3) first."""
    out = [d for d in devices if not d.is_evse and d.cfg["role"] == 3]
    return out + [d for d in devices if not d.is_evse and d.cfg["role"] != 3]
