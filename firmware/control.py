"""The control loop: poll → balance → write changed limits (API.md §9).

Every `cycle_time` ms: read the meters (grid meter first), and if a phase is
over `max_total_current` compute and write reduced limits at once, before
any other device is polled (the fast overload path); then read the EVSEs,
balance, and write the limits that differ from what the boxes report.
Only the volatile registers charging_cur_limit (8093, 0.1 A) and
charging_enable (8094) are ever written, and only on change. With
`lb_enabled` false everything is computed and shown, nothing is written.
Bus faults are counted (rtu.Stats) and never stop the loop.
"""
import time

import asyncio
import balancer
import rtu
from micropython import const

_CUR_LIMIT = const(8093)
_ENABLE = const(8094)
_OFFLINE = const(6)
_SOFT_SAVE_MS = const(300000)  # energy estimates go to flash at most every 5 minutes
_OVR = {"C": 1, "E": 2, "U": 4}  # balancer set_evse ovr bits: off, ignore EVSE rules, ignore user rules


class Control:
    def __init__(self, app, slots):
        self.app = app
        self.lb = self.slot = None
        self.resize(slots)
        self._kick = asyncio.Event()
        self.cycles = 0
        self.cycle_ms = 0  # duration of the last cycle
        self.last_ok_ms = time.ticks_ms()  # end of the last completed cycle (watchdog)
        self.cons_power = 0  # W, all EVSEs
        self.avail_power = 0  # W the EVSEs may use now
        self.max_evse_power = 0  # W at the configured limits
        self.writes = 0
        self._last = self._soft_ms = time.ticks_ms()

    def resize(self, slots):
        """Balancer slots for `slots` EVSEs (each costs heap, so there are as
        many as configured: boot sizes it, set_params grows it before it adds
        an EVSE). A new balancer starts afresh: pause and rotation timers too.
        MemoryError: nothing changed."""
        n = len(self.slot) if self.slot else 1
        self.lb = None  # let the old one's heap be reused (the next cycle rebuilds its state)
        try:
            self.lb = balancer.Balancer(slots)
        except MemoryError:  # as it was (its blocks are free again), and say so
            self.lb = balancer.Balancer(n)
            raise
        self.slot = [None] * slots  # EVSE device per balancer slot

    def kick(self):
        """Configuration or session changed: run a cycle now."""
        self._kick.set()

    async def run(self):
        while True:
            t0 = time.ticks_ms()
            try:
                await self.cycle(t0)
            except Exception as e:  # a bug must not stop the charging control
                print("pbctl: control cycle:", repr(e))
            now = time.ticks_ms()
            self.cycle_ms = time.ticks_diff(now, t0)
            self.last_ok_ms = now
            self.cycles += 1
            left = self.app.params["cycle_time"] - self.cycle_ms
            if left > 0:
                try:
                    await asyncio.wait_for_ms(self._kick.wait(), left)
                except asyncio.TimeoutError:
                    pass
            self._kick.clear()

    # ---- one cycle ------------------------------------------------------------
    async def cycle(self, now):
        app = self.app
        p = app.params
        grid = cons = prod = None
        # meters first: the grid meter decides how much there is to share. Keep
        # the EVSEs after it: the balancer estimates the other load from the grid
        # reading and the EVSE currents of the round before it and of this round
        # (lib/balancer.py, "Pairing"), so a car's ramp makes no limit dip
        for d in sorted_meters(app.devices):
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
                self.lb.set_grid(grid[0], grid[1], grid[2], now)
                self.decide(now)
                await self.write(True)
        for e in app.devices:
            if e.is_evse and e.rtu and not await self.read(e, now):
                e.set_state(_OFFLINE, now)
        self.configure()
        lb = self.lb  # set_params may have grown it while the bus was busy
        now = time.ticks_ms()
        if grid is not None:
            lb.meter_mode = 3  # balancer meter_mode: grid meter
            lb.set_grid(grid[0], grid[1], grid[2], now)
        elif cons is not None:
            lb.meter_mode = 1  # consumption meter
            lb.set_load(cons[0], cons[1], cons[2], now)
        elif not any_role(app.devices, 1, 3):
            lb.meter_mode = 0  # no meter
        if prod is not None:
            lb.set_production(prod[0], prod[1], prod[2], now)
        self.decide(now)
        await self.write()
        self.soft_meters(now)

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
            try:
                import cfgsave

                cfgsave.save(self.app)
            except Exception as ex:  # a full flash must not stop the control loop
                print("pbctl: soft_meter save:", repr(ex))

    async def read(self, d, now):
        """Poll one enabled device; False if it has no fresh reading."""
        if not d.cfg["device_enabled"] and not d.is_evse:
            return False
        if d.rtu:
            try:
                await d.poll(self.app.bus, now)
                return True
            except rtu.ModbusError:
                return False  # counted in d.stats by the bus master
        # HTTP input device: fresh while updated within http_timeout
        st = d.stats
        fresh = time.ticks_diff(now, d.last_ms) < self.app.params["http_timeout"] * 1000 and d.seen
        if not fresh and not st.err:
            st.err = True
            st.errors += 1
            st.last_error = "http timeout"
            st.last_err_ms = now
        return fresh

    def rebalance(self):
        """An HTTP EVSE reported: decide again now (no bus traffic)."""
        self.configure()
        self.decide(time.ticks_ms())

    # ---- balancer in/out --------------------------------------------------------
    def configure(self):
        """Copy parameters and per-EVSE settings into the balancer."""
        app = self.app
        p = app.params
        lb = self.lb
        lb.max_total_current = p["max_total_current"]
        lb.reserve_current = p["reserve_current"]
        lb.max_total_evse_current = p["max_total_evse_current"]
        lb.failsafe_current = p["failsafe_current"]
        lb.meter_timeout_ms = p["meter_timeout"] * 1000
        lb.rotation_ms = p["rotation_time"] * 1000
        lb.disable_policy = p["disable_policy"]
        lb.lb_enabled = p["lb_enabled"]
        t = time.localtime()
        lb.weekday = t[6]
        lb.minute = t[3] * 60 + t[4]
        slot = self.slot
        evses = [d for d in app.devices if d.is_evse]
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
            o = 0
            for f in e.ov_flags:
                o |= _OVR[f]
            if c["users"] and not e.user:
                o |= 1  # balancer OVR_OFF: this EVSE needs an authorised user first
            rules = c["charging_rules"]
            u = app.user(e.user) if e.user else None
            cur = e.cur
            lb.set_evse(i, e.state, c["device_enabled"], c["used_phases"], c["phase_rotation"],
                        c["min_charging_cur"], mx, c["prio"], c["pause_min_time"] * 1000, o, e.ov_mamps,
                        e.session_wh(), cur[0], cur[1], cur[2], rules if rules else None,
                        u["charging_rules"] if u and u["charging_rules"] else None)

    def decide(self, now):
        lb = self.lb
        lb.balance(now)
        cons = 0
        for i in range(len(self.slot)):
            e = self.slot[i]
            if e is None:
                continue
            e.limit = lb.limit[i]
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
        p = self.app.params
        m = p["max_total_evse_current"] or p["max_total_current"]
        self.max_evse_power = 3 * m * 230 // 1000

    async def write(self, lower_only=False):
        """Write limits that differ from what the boxes report (volatile registers only).

        lower_only (the fast overload path): its EVSE currents are a cycle old,
        so it may only cut; raises wait for the full cycle's fresh readings."""
        if not self.app.params["lb_enabled"]:
            return
        bus = self.app.bus
        for e in self.slot:
            if e is None or not e.rtu or e.state == _OFFLINE:
                continue
            reg = e.limit // 100
            if lower_only and e.dev_limit >= 0 and reg * 100 >= e.dev_limit:
                continue
            en = 1 if reg else 0
            s = e.slave()
            try:
                if e.dev_limit != reg * 100:
                    await bus.write1(s, _CUR_LIMIT, reg, True)
                    e.dev_limit = reg * 100
                    self.writes += 1
                if e.dev_enable != en:
                    await bus.write1(s, _ENABLE, en, True)
                    e.dev_enable = en
                    self.writes += 1
            except rtu.ModbusError:
                pass  # counted; the next cycle compares again


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
