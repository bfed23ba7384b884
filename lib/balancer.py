"""Per-phase, prioritised, fair, calm, fail-safe EVSE load balancer (API.md 8-9).

Pure and integer-only; a steady-state cycle allocates nothing. Interface (the
reference -- parameters, outputs, reasons, decisions -- is in the comments below:
comments cost no heap when MicroPython compiles this from source on its 96 KB
test heap, a long docstring does):

    b = Balancer(n)                      # n EVSE slots 0..n-1 (n <= 255)
    b.max_total_current = ...            # site parameters: attributes, see below
    # every cycle, now_ms = time.ticks_ms():
    b.set_grid(l1, l2, l3, now_ms)       # grid meter, mA (or set_load with
    b.set_production(l1, l2, l3, now_ms) #   meter_mode 1; production meter)
    b.set_evse(i, state, enabled, used_phases, phase_rotation, min_cur, max_cur,
               prio, pause_min_ms, ovr, mamps, energy_wh, c1, c2, c3,
               rules_e, rules_u)         # every slot, positional, every cycle
    b.balance(now_ms)
    b.limit[i], b.paused[i], b.pause_ms[i], b.reason[i], b.phases[i]  # per slot
    b.budget[p], b.surplus, b.failsafe   # site
    reasons.reason_text(b.reason[i])     # limit_reason text (lib/reasons.py, on demand)
    b.reset_slot(i)                      # forget a slot's session

The cycle is split over this module, balancer_core.py (inputs -> caps, budgets,
service order) and balancer_alloc.py (allocation, limits) only so that each
compiles from source within that test heap; they share the layout constants (a
test checks they agree). The charging rules are evaluated here (lib/rules.py is
the pure reference of the same semantics, loaded on demand only; a property test
keeps the two equal).
"""
# Units: currents mA per phase, times ms, energy Wh. Limits come out in whole 100 mA
# steps (charging_cur_limit 8093 is in 0.1 A): write limit[i] // 100 to 8093 and
# 1 if limit[i] else 0 to 8094, only when that value changed. now_ms is
# time.ticks_ms() (any int in [0, 2**30) that wraps like it); durations are kept as
# elapsed-ms counters, so the wrap never matters. i = EVSE slot 0..n-1 (n <= 255,
# fixed in the constructor).
#
# One control cycle
#   1. after reading the grid meter (role 3): b.set_grid(l1, l2, l3, now_ms) (mA,
#      import positive, export negative). Without one, meter_mode = 1 and
#      b.set_load(l1, l2, l3, now_ms) with the summed consumption meters (role 1).
#      A production meter (role 2): b.set_production(l1, l2, l3, now_ms).
#   2. for every slot i (unused slots too, with state 0), positional:
#        b.set_evse(i, state, enabled, used_phases, phase_rotation, min_cur, max_cur,
#                   prio, pause_min_ms, ovr, mamps, energy_wh, c1, c2, c3,
#                   rules_e, rules_u)
#      all of them every cycle (c1..c3 fresh from this poll).
#   3. b.balance(now_ms); then write every limit[i] that changed (not when
#      lb_enabled is false: observation mode, the computation is the same).
#      get_dev_info: paused[i], pause_ms[i] // 1000 (pause_time),
#      reason_text(reason[i]) (limit_reason); avail_evse_power ~ sum(budget) * V,
#      cons_evse_power from the measured currents.
#   Fast overload path (API.md 9.4): set_grid + balance + write at once after a
#   grid reading that shows a phase over max_total_current.
#   reset_slot(i) forgets a slot's session (balance() does it on state 0/1 itself).
#
# set_evse arguments
#   state           0 unused slot, 1 waiting for EV, 2 EV present, 3 charging,
#                   4 charging with ventilation, 5 error, 6 offline (API.md 2)
#   enabled         device_enabled (true/false)
#   used_phases     EVSE phase mask, bit0 L1..bit2 L3; 0 = detect (all three
#                   assumed until the car draws). A phase on which a charging car
#                   draws current is always counted, configured or not.
#   phase_rotation  grid phases of EVSE L1 L2 L3: 0 L1L2L3, 1 L2L3L1, 2 L3L1L2,
#                   3 L1L3L2, 4 L2L1L3, 5 L3L2L1 (1: EVSE L1 is on grid L2)
#   min_cur, max_cur  min/max_charging_cur mA (min rounds up, max down to 100 mA)
#   prio            lower number is served first
#   pause_min_ms    pause_min_time in ms
#   ovr             OVR_OFF ('C') | OVR_IGN_EVSE_RULES ('E') | OVR_IGN_USER_RULES
#                   ('U'); the caller clears them on unplug
#   mamps           override cap mA, 0 = none
#   energy_wh       session energy (who pauses first)
#   c1, c2, c3      measured current on EVSE phase L1..L3, mA (ignored with state 6)
#   rules_e, rules_u  the EVSE's / the active user's rule list (rules.py), None = none
#
# Site parameters (attributes)                                           default
#   max_total_current       mA per phase, installed limit                  32000
#   reserve_current         mA per phase kept free                             0
#   max_total_evse_current  mA per phase for all EVSEs together, 0 = no cap     0
#   failsafe_current        mA per EVSE while the meter is lost; -1 = its
#                           minimum; below an EVSE's minimum = it stops       -1
#   meter_timeout_ms        meter age that means "lost"; also how long an
#                           offline EVSE's share stays reserved            10000
#   meter_mode              METER_GRID 3, METER_CONSUMPTION 1, METER_NONE 0     3
#   rotation_ms             turn length of paused EVSEs of equal priority 900000
#   disable_policy          disabled EVSE gets: 0 nothing, 1 its minimum
#                           (reserved), -1 its max unmanaged (its current then
#                           counts as other load)                              0
#   lb_enabled              observation flag for the caller, no effect here True
#   weekday, minute         local weekday (0 = Monday), minute of day (rules)  0
#   solar_shift             surplus smoothing, EMA 1/2**n per cycle            3
# Fixed tuning (constants): start margin 2000 mA above its minimum for a waiting
# EVSE (hysteresis: a running car stops below its minimum, a waiting one starts
# at minimum + 2 A); start window 120 s (a waiting EVSE that would add load starts
# only if it also fits at the peak other load of that long: stop on the instant,
# start on the recent peak; not for a car whose phases are still unknown: it
# starts when it fits now, so that a 1-phase car is found out and then needs room
# on its phase only); headroom 500 mA above its measured draw for a car drawing
# less than its limit (the rest goes to the others; it gets all back once it
# draws more); settle 10 s after a raise before the draw is judged; follow 5 s
# (IEC 61851: the longest a car takes to follow a lowered limit; raises elsewhere
# wait); idle 30 s (a car drawing < 1 A this long, 60 s if it has not drawn since
# it was started, whose reserved minimum holds back another car is snoozed,
# "paused: vehicle idle"); wake 900 s (a snoozed car's next turn, doubling per idle
# turn up to 8x; earlier if current is left over).
#
# Outputs (attributes, rewritten by balance(); read, do not replace)
#   limit[i]     array: mA to offer, 0 = charging disabled; a multiple of 100
#   paused[i]    bytearray: 1 = held back by the balancer (energy shortage, phase
#                imbalance, rotation, vehicle idle); a stopped car stays paused
#                >= pause_min_ms
#   pause_ms[i]  array: elapsed ms of the pause
#   reason[i]    bytearray: reason code; reason_text(code) is the limit_reason text:
#                "" (unused slot), "no vehicle", "error", "offline",
#                "offline: share held", "disabled", "disabled: min current",
#                "disabled: no limit", "override: charging disabled",
#                "override: mamps", "max_charging_cur", "max_total_current L1" (L2,
#                L3), "max_total_evse_current", "vehicle draw",
#                "failsafe: grid meter lost", "paused: energy shortage",
#                "paused: phase imbalance", "paused: rotation",
#                "waiting: others ramping down", "rules: no rule applies",
#                "paused: vehicle idle", "rule 1".."rule 10", "rule 11+",
#                "rule 1 (solar)"..., "user rule 1"..., "user rule 1 (solar)"...
#   phases[i]    bytearray: bits 0-2 the EVSE phases in use (configured | detected,
#                7 while unknown), bits 3-5 the same on grid phases (after
#                phase_rotation): phases[i] & 7, phases[i] >> 3
#   budget[p]    array: mA the EVSEs may use on grid phase p this cycle
#   surplus      solar surplus, mA summed over the phases (smoothed)
#   failsafe     True while the meter is lost (or never read)
#
# Decisions (API.md 9)
#   budget[p] = max_total_current - reserve_current - other[p], capped by
#   max_total_evse_current; other[p] = grid[p] - measured EVSE currents on p (or
#   the consumption sum). Pairing: the caller reads the grid meter before the
#   EVSEs in a poll round (firmware/control.py), so the grid reading lies between
#   the EVSE readings of the previous balance() and of this one, and other[p]
#   lies between grid[p] minus the larger and minus the smaller of the two. The
#   last estimate is moved into that range (a car ramping is no change of the
#   other load: no phantom dips or bumps; a change the range cannot explain moves
#   it at once; the error is at most what the EVSE currents moved within one
#   round, for one round, and the fast overload path sees the true grid current).
#   Without a new grid reading the estimate stands. Every EVSE that may charge
#   first gets its minimum, in service order: priority; then running cars (least
#   session energy first); then, by least session energy, cars running >=
#   rotation_ms and cars waiting >= rotation_ms (a waiting car with less energy
#   takes the turn of a long-running one with more: rotation); other waiting
#   cars, idle cars. An EVSE whose minimum (+ start margin and the start window
#   when it is not running) does not fit on one of its grid phases is paused.
#   Current above the minimums goes by strict priority and, inside one priority,
#   is water-filled equally up to each EVSE's cap: max_charging_cur, mamps, rules,
#   failsafe, measured draw + headroom. Raises only use current that is free
#   while lowered cars may still draw their old limit (follow time, or until
#   measured), so what cars may draw stays within the budget at every moment.
#   Failsafe (meter not read for meter_timeout_ms): every EVSE is capped at
#   failsafe_current, the budget keeps the last known other load.
#   Offline EVSE (state 6): its last limit stays reserved for meter_timeout_ms,
#   then it is released. Its draw still shows in the grid reading: while its share
#   is held, its last currents read (up to that share; set_evse keeps them, the
#   ones passed with state 6 are ignored) count as EVSE current, not other load.
#   Invariant: per grid phase, the managed EVSEs' limits sum to <= budget minus
#   the fixed shares (offline EVSEs inside meter_timeout, disabled EVSEs with
#   disable_policy 1); a non-zero limit is >= the minimum and <= the caps.
#
# Charging rules (semantics in rules.py): rules_e and rules_u are evaluated in
# service order (solar surplus goes to the EVSEs in that order: each takes its
# result times its phase count from what is left), combined (the smaller result
# counts, a set that yields "none applies" means 0) and passed through the udur
# gate with the udur of the deciding rule; the result caps the EVSE. Mode 1
# (relative) rules are evaluated in a second pass against the share just computed
# (with the surplus that was left at the EVSE's turn in the first pass).

from array import array

from micropython import const

import balancer_alloc
import balancer_core

_METER_NONE = const(0)
_METER_CONSUMPTION = const(1)
_METER_GRID = const(3)
_OVR_OFF = const(1)  # override flags (set_evse ovr): 'C'
_OVR_IGN_EVSE_RULES = const(2)  # 'E'
_OVR_IGN_USER_RULES = const(4)  # 'U'

# ---- shared layout (the same names have the same values in balancer_core.py and
# balancer_alloc.py; host_tests/test_balancer_props.py checks it)
_R_NORULE = const(21)  # reason codes: see reasons.reason_text
_R_RULE = const(23)  # + (2 * user + solar) * _NR + min(rule index, _NR - 1) (as in reasons.py)
_NR = const(11)
_U = const(100)  # allocation unit, mA
_BIG = const(0x3FFFFFFF)
_SAT = const(0x1FFFFFFF)
_DAY = const(1440)
# _s: a list of n + 1 array('i') records: _s[i] = slot i's _W fields (_S_*), _s[n] =
# the site record (_G_*). Small records, not one flat array: no large heap block,
# and w[_S_X] is cheaper bytecode than s[i * _W + _S_X]. (u = 100 mA units)
_G_DT = const(2)  # ms since the previous cycle
_G_SREM = const(4)  # solar surplus not yet taken by solar rules
_G_M = const(7)  # grid meter: ts, new, ever read, age; production meter at + 4
_G_MV = const(15)  # per phase (3 each) from here
_G_PV = const(18)
_G_PK = const(48)  # 5 buckets of the other load's maximum per phase
_G_N = const(63)
_S_FL = const(0)  # floor (minimum), u
_S_MAX = const(1)  # max_cur, mA
_S_PRIO = const(2)
_S_PMIN = const(3)
_S_MAMPS = const(4)
_S_E = const(5)
_S_C = const(6)  # 6, 7, 8: measured currents (>= 0)
_S_CP = const(9)  # cap (candidates), u; _S_FIX (kind FIX) shares the field
_S_AL = const(10)  # allocation, u (> 0 = admitted); the sort's _S_K2 shares the field
_S_SUR = const(13)  # solar surplus offered to this EVSE per phase
_S_RUNMS = const(14)  # session fields from here to the end (reset_slot)
_S_UDMS = const(22)
_S_UDL = const(23)  # udur of the deciding rule, ms
_W = const(24)
# _f: one bytearray: the service order at 0..n-1 (the slot at position j), then
# slot i's _B one-byte fields at n + i * _B
_F_ST = const(0)
_F_EN = const(1)
_F_PH = const(2)
_F_ROT = const(3)
_F_OVR = const(4)
_F_CAPR = const(6)  # reason of the cap
_F_SNZ = const(8)  # snoozed this cycle
_F_RN = const(9)  # a rule needs the share (second pass)
_F_RUN = const(10)  # session fields from here to the end (reset_slot)
_F_UD = const(16)  # udur gate: 0 unknown, 1 stopped, 2 on
_B = const(17)


class Balancer:
    """The load balancer for n EVSE slots; see the module docstring."""

    def __init__(self, n):
        self.n = n
        self.max_total_current = 32000
        self.reserve_current = 0
        self.max_total_evse_current = 0
        self.failsafe_current = -1
        self.meter_timeout_ms = 10000
        self.meter_mode = _METER_GRID
        self.rotation_ms = 900000
        self.disable_policy = 0
        self.lb_enabled = True
        self.weekday = self.minute = 0
        self.solar_shift = 3
        a, = ("i",)  # array typecode (in a constant tuple: no qstr for it)
        self.limit = array(a, bytes(4 * n))
        self.pause_ms = array(a, bytes(4 * n))
        self.paused = bytearray(n)
        self.reason = bytearray(n)
        self.phases = bytearray(b"\x3f" * n)
        self.budget = array(a, bytes(12))
        self.surplus = 0
        self.failsafe = True
        # _s: one array('i') record per slot (_W fields), then the site record
        g = array(a, bytes(4 * _G_N))
        self._s = S = [array(a, bytes(4 * _W)) for _ in range(n)]
        S.append(g)
        self._f = f = bytearray((_B + 1) * n)
        self._r = [None] * (2 * n)
        for i in range(n):
            f[i] = i
        g[_G_M + 3] = g[_G_M + 7] = _SAT  # meter ages
        for i in range(_G_PK, _G_N):
            g[i] = -_SAT

    def set_grid(self, x, y, z, t):
        """Grid meter (role 3) currents, mA, import positive, read at t (ms)."""
        g = self._s[self.n]
        g[_G_MV] = x
        g[_G_MV + 1] = y
        g[_G_MV + 2] = z
        g[_G_M] = t
        g[_G_M + 1] = g[_G_M + 2] = 1

    set_load = set_grid  # meter_mode 1: summed consumption meters (role 1)

    def set_production(self, x, y, z, t):
        """Production meter (role 2) currents, mA, read at t (ms)."""
        g = self._s[self.n]
        g[_G_PV] = x
        g[_G_PV + 1] = y
        g[_G_PV + 2] = z
        g[_G_M + 4] = t
        g[_G_M + 5] = g[_G_M + 6] = 1

    def set_evse(self, index, state, on, phase, r, min, max, p, t, flags, m, e, x, y, z, re, ru):
        """Slot index's inputs for this cycle, in this order: state, enabled,
        used_phases, phase_rotation, min_cur, max_cur, prio, pause_min_ms, ovr,
        mamps, energy_wh, c1, c2, c3, rules_e, rules_u (see the module comments).
        Positional: the argument names are short or built-in ones because every
        argument name is a permanent qstr."""
        i = index
        f = self._f
        c = self.n + i * _B
        f[c + _F_ST] = state
        f[c + _F_EN] = 1 if on else 0
        f[c + _F_PH] = phase & 7
        f[c + _F_ROT] = r if 0 <= r <= 5 else 0
        f[c + _F_OVR] = flags & 7
        w = self._s[i]
        min = (min + _U - 1) // _U
        w[_S_FL] = min if min > 0 else 1
        w[_S_MAX] = max
        w[_S_PRIO] = 0 if p < 0 else (p if p < 0xFFFFF else 0xFFFFF)
        w[_S_PMIN] = t
        w[_S_MAMPS] = m
        w[_S_E] = e
        if state != 6:  # offline: keep the last currents read (its share is held)
            w[_S_C] = x if x > 0 else 0
            w[_S_C + 1] = y if y > 0 else 0
            w[_S_C + 2] = z if z > 0 else 0
        r = self._r
        r[2 * i] = re
        r[2 * i + 1] = ru

    def reset_slot(self, index):
        """Forget slot index's session (done by balance() itself on state 0/1)."""
        w = self._s[index]
        f = self._f
        for c in range(_S_RUNMS, _W):
            w[c] = 0
        c = self.n + index * _B
        for c in range(c + _F_RUN, c + _B):
            f[c] = 0
        self.paused[index] = self.pause_ms[index] = 0

    def balance(self, t):
        """One cycle (t = now_ms): limit, paused, pause_ms, reason, budget ... from
        the inputs."""
        n = balancer_core.prepare(self, t)  # -> number of candidates, in _f[0:n]
        S = self._s
        f = self._f
        t = S[self.n][_G_DT]
        # charging rules in service order (solar surplus too), then the allocation
        r = 0
        for j in range(n):
            i = f[j]
            c = self.n + i * _B
            f[c + _F_SNZ] = 0
            v = f[c + _F_RN] = self._rule(i, -1, t) == -2
            r = r or v
        balancer_alloc.alloc(self, n)
        if r:  # mode 1 rules: relative to the share just computed
            for j in range(n):
                i = f[j]
                if f[self.n + i * _B + _F_RN]:
                    self._rule(i, S[i][_S_AL] * _U, t)
            balancer_alloc.alloc(self, n)
        balancer_alloc.commit(self, n)

    def _rule(self, index, v, t):
        """Apply the charging rules of slot index (share v mA, or -1 in the first pass;
        t = ms since the last cycle) to its cap; -1 = no rules, -2 = a mode 1 rule
        needs the share (second pass), else the rules' cap in mA."""
        i = index
        S = self._s
        g = S[self.n]
        w = S[i]
        f = self._f
        c = self.n + i * _B
        o = f[c + _F_OVR]
        re = None if o & _OVR_IGN_EVSE_RULES else self._r[2 * i]
        ru = None if o & _OVR_IGN_USER_RULES else self._r[2 * i + 1]
        # the rule keys (in a constant tuple: as separate constants short strings
        # would each become a permanent qstr)
        kmo, ken, kex, kin, kpl, kda, kdu, kti, kcu, kso, kud = (
            "mode", "enabled", "expr", "input", "price_level", "days", "dur", "time", "current", "solar", "udur")
        # select: the first active rule that applies (-1 none applies, -2 no active rule)
        ke = -2
        for u in range(2):
            rs = ru if u else re
            k = -2
            if rs:
                for x in range(len(rs)):
                    q = rs[x]
                    m = q.get(kmo, 0)
                    if (not q.get(ken, True) or m < 0 or m > 5 or q.get(kex, "")
                            or q.get(kin, "") or q.get(kpl, 0)):
                        continue
                    k = -1
                    d = q.get(kda, 0)
                    e = q.get(kdu, 0)
                    a = self.minute
                    y = self.weekday
                    if e <= 0 or e >= _DAY:
                        y = d >> y & 1
                    else:
                        h = q.get(kti, 0) % _DAY
                        if a >= h:
                            y = a < h + e and d >> y & 1
                        else:  # before today's start: inside only the tail of yesterday's window
                            e = h + e - _DAY
                            y = e > 0 and a < e and d >> (y + 6) % 7 & 1
                    if y:
                        k = x
                        break
            if u:
                ku = k
            else:
                ke = k
        if ke == -2 and ku == -2:
            f[c + _F_UD] = 0
            return -1
        o = self.phases[i] >> 3
        o = (o & 1) + (o >> 1 & 1) + (o >> 2 & 1)  # grid phases
        if v < 0:  # first pass: the surplus left at its turn (also for the second pass)
            a = w[_S_SUR] = g[_G_SREM] // o
            if (ke >= 0 and re[ke].get(kmo, 0) == 1) or (ku >= 0 and ru[ku].get(kmo, 0) == 1):
                return -2
        else:
            a = w[_S_SUR]
        fm = w[_S_FL] * _U
        h = _BIG  # result
        ok = sol = False
        e = w[_S_UDL]
        r = _R_NORULE
        for u in range(2):
            k = ku if u else ke
            if k == -1:  # none applies: 0
                h = 0
                ok = sol = False
                r = _R_NORULE
            elif k >= 0:
                q = ru[k] if u else re[k]
                m = q.get(kmo, 0)
                d = q.get(kcu, 0)
                if m == 0:
                    y = d
                elif m == 1:
                    y = v + d
                elif m == 2:
                    y = a if a > fm else fm
                elif m == 3:
                    y = a + d
                elif m == 4:
                    y = a - d
                else:
                    y = a
                y = y if y > 0 else 0
                if y < h:
                    h = y
                    d = q.get(kso, 0)
                    sol = m >= 2
                    ok = y >= fm and not (sol and 0 < d and a < d)
                    e = q.get(kud, 0) * 1000
                    r = _R_RULE + (2 * u + sol) * _NR + (k if k < _NR else _NR - 1)
        if r != _R_NORULE:
            w[_S_UDL] = e
        # udur gate: a result below the minimum is bridged at the minimum for udur
        # before charging stops; once stopped it must be sufficient for udur again
        x = f[c + _F_UD] - 1
        if x < 0:
            x = 1 if ok else 0
            w[_S_UDMS] = 0
        d = w[_S_UDMS] + t
        if x:
            if ok:
                d = 0
            elif d >= e:
                x = d = h = 0
            elif h < fm:
                h = fm
        elif not ok:
            d = h = 0
        elif d >= e:
            x = 1
            d = 0
        else:
            h = 0
        f[c + _F_UD] = x + 1
        w[_S_UDMS] = d
        if sol and h > 0 and v < 0:  # solar EVSEs take the surplus in turn
            m = w[_S_MAX]
            a = g[_G_SREM] - (h if h < m else m) * o
            g[_G_SREM] = a if a > 0 else 0
        if h // _U < w[_S_CP]:
            w[_S_CP] = h // _U
            f[c + _F_CAPR] = r
        return h
