"""Per-phase, prioritised, fair, calm, fail-safe EVSE load balancer (API.md 8-9).

Pure and integer-only; a steady-state cycle allocates nothing (proved under
micropython.heap_lock() by the unit tests). Interface (the reference --
parameters, outputs, reasons, decisions -- is in the comments below)::

    b = Balancer(n)                      # n EVSE slots 0..n-1 (n <= 255)
    b.max_total_current = ...            # site parameters: attributes, see below
    # every cycle, now_ms = time.ticks_ms():
    b.set_grid(l1, l2, l3, now_ms)       # grid meter, mA (or set_load with
    b.set_production(l1, l2, l3, now_ms) #   meter_mode 1; production meter)
    b.set_evse(i, state, enabled, used_phases, phase_rotation, min_cur, max_cur,
               prio, pause_min_ms, ovr, mamps, energy_wh, c1, c2, c3,
               rules_e, rules_u, sw)     # every slot, positional, every cycle
    b.balance(now_ms)
    b.limit[i], b.paused[i], b.pause_ms[i], b.reason[i], b.phases[i]  # per slot
    b.want_1p[i]                         # phase switching: the phase mode wanted
    b.budget[p], b.surplus, b.failsafe   # site
    reasons.reason_text(b.reason[i])     # limit_reason text (pblib.reasons, on demand)
    b.reset_slot(i)                      # forget a slot's session

Why one module: the stages of a cycle (inputs -> caps, budgets and service
order; charging rules; admission and water-filling; limits and outputs) all
work on the same per-slot records (_s: int fields, _f: byte fields, below),
and MicroPython folds const() names only inside the module that defines them.
Split into modules by meaning, every stage would have to define that layout
again (the duplication the earlier three-module split needed, kept equal by a
test) or reach the fields through attributes and calls (heap for every
function and name, microseconds for every slot and cycle). So the balancer is
one module, one layout, each name defined once; its stages are methods in
cycle order. What is only needed on demand stays out: the limit_reason texts
(pblib.reasons, loaded while get_dev_info is answered; it takes the rule-code
layout, R_RULE and NR, from here). The charging-rule semantics are evaluated
inline (_rule); their pure reference lives with the tests
(host_tests/unit/rules_ref.py, a property test keeps the two equal). Runs
precompiled (.mpy) on the board and in the MicroPython unit suites: a module
this size need not compile from source on a 96 KB heap, and docstrings and
comments cost no heap there.
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
#                   rules_e, rules_u, sw)
#      all of them every cycle (c1..c3 fresh from this poll; sw may be left out: 0).
#   3. b.balance(now_ms); then write every limit[i] that changed (not when
#      lb_enabled is false: observation mode, the computation is the same).
#      Phase switching (INTEGRATIONS.md 5): where sw has SW_AUTO, not SW_BUSY, and
#      want_1p[i] differs from the relay (sw bit SW_1P), run the switching
#      sequence: charging_enable 0 -> wait until the car draws < 1 A (at most
#      10 s) -> write relay_select -> wait 5 s -> charging_enable 1 (with limit[i]),
#      passing SW_BUSY in sw all the while, then the relay's new state in SW_1P.
#      limit[i] is 0 from the request until the sequence is done.
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
#   rules_e, rules_u  the EVSE's / the active user's rule list (API.md 8), None = none
#   sw              phase switching bits (default 0): SW_AUTO 1 = phase_switching 1
#                   on a box that reports feature bit 8 (8113); SW_1P 2 = its relay
#                   is on one phase now (relay_select read back: the EVSE's phases
#                   are then L1 only, used_phases aside); SW_BUSY 4 = the control
#                   task is running the switching sequence now; SW_W1 8 / SW_W3 16 =
#                   a phase wish (devices.Evse.phase_wish 1 / 3, from an energy
#                   manager) on a box with feature bit 8: a preference inside the
#                   fuse -- the wished mode is requested (without delay, at most once
#                   per phase_switch_min_ms) when it admits the car at its minimum as
#                   a start; in the wished mode the car stays while that mode charges
#                   it (with SW_AUTO, a mode that cannot charge it falls back to the
#                   automatic decision; without SW_AUTO it stays)
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
#   phase_switch_min_ms     phase_switch_min_time in ms: at most one switch
#                           request per EVSE in that long                 300000
#   max_phase_skew          mA, 0 = off: the spread between the most and the
#                           least loaded grid phase stays at or below it        0
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
# turn up to 8x; earlier if current is left over); phase switching: up after 60 s
# of room for minimum + 300 mA on three phases, a switch request the caller has
# not taken up lapses after 30 s.
#
# Outputs (attributes, rewritten by balance(); read, do not replace)
#   limit[i]     array: mA to offer, 0 = charging disabled; a multiple of 100
#   paused[i]    bytearray: 1 = held back by the balancer (energy shortage, phase
#                imbalance, rotation, vehicle idle); a stopped car stays paused
#                >= pause_min_ms
#   pause_ms[i]  array: elapsed ms of the pause
#   reason[i]    bytearray: reason code; reasons.reason_text(code) is the limit_reason text:
#                "" (unused slot), "no vehicle", "error", "offline",
#                "offline: share held", "disabled", "disabled: min current",
#                "disabled: no limit", "override: charging disabled",
#                "override: mamps", "max_charging_cur", "max_total_current L1" (L2,
#                L3), "max_total_evse_current", "vehicle draw",
#                "failsafe: grid meter lost", "paused: energy shortage",
#                "paused: phase imbalance", "paused: rotation",
#                "waiting: others ramping down", "rules: no rule applies",
#                "paused: vehicle idle", "phase switching", "max_phase_skew",
#                "paused: phase skew", "rule 1".."rule 10", "rule 11+",
#                "rule 1 (solar)"..., "user rule 1"..., "user rule 1 (solar)"...
#   phases[i]    bytearray: bits 0-2 the EVSE phases in use (configured | detected,
#                7 while unknown; L1 | detected while the relay is on one phase;
#                both modes' while switching), bits 3-5 the same on grid phases
#                (after phase_rotation): phases[i] & 7, phases[i] >> 3
#   want_1p[i]   bytearray: 1 = one phase wanted, 0 = three (= the relay's state
#                where switching is off); see "One control cycle" 3.
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
#   disable_policy 1, the minimum of a car that switches phases); a non-zero
#   limit is >= the minimum and <= the caps.
#
# Phase switching (INTEGRATIONS.md 5; an EVSE with SW_AUTO whose car has not shown
# itself a 1-phase car on three phases, used_phases 0 or 7, not idle): each cycle
# one such car (in turn; the same one while a condition holds) is allocated once
# more in its other phase mode, as a car that starts (start margin, start window,
# its rules' result for that phase count, max_phase_skew). One phase is wanted when
# three cannot charge it (not admitted, or its rules' result below the minimum)
# and one can, after the udur of its deciding rule (none: at once); three again
# when three give it at least its minimum + 300 mA and more power than one
# (3 x that >= its share on one + 2000 mA), after 60 s. At most one request per
# phase_switch_min_ms (the condition's time counts meanwhile: room that has lasted
# 60 s when the min time is over switches then). From the request until the sequence is done the car has
# limit 0, is not paused (it goes on after it, as a running car), its minimum is
# reserved on the phases of the mode it goes to, and its draw is held for the
# follow time on the phases of both modes.
# max_phase_skew: for every pair of grid phases p, q, T[p] - T[q] <= max(skew,
# other[p] - other[q]), T = other load + EVSE load; a car (or fixed share) on p
# and not on q loads the pair with its limit, one on q and not on p relieves it
# only by what it draws now (at most its limit): a car that draws less or stops
# cannot hold another's share. A car that would exceed it is not admitted (last
# in service order first; a start needs 2000 mA of margin) or stops rising
# ("max_phase_skew"); 3-phase cars are never held back by it.
#
# Charging rules (API.md 8; the reference: host_tests/unit/rules_ref.py): rules_e
# and rules_u are evaluated in service order (solar surplus goes to the EVSEs in
# that order: each takes its result, as far as its caps and its draw let it use
# it, times its phase count from what is left),
# combined (the smaller result counts, a set that yields "none applies" means 0)
# and passed through the udur gate with the udur of the deciding rule; the result
# caps the EVSE. Mode 1 (relative) rules are evaluated in a second pass against
# the share just computed (with the surplus that was left at the EVSE's turn in
# the first pass).

from array import array

from micropython import const

# ---- the one layout: reason codes, record fields, tuning
_METER_NONE = const(0)
_METER_CONSUMPTION = const(1)
_METER_GRID = const(3)
_OVR_OFF = const(1)  # override flags (set_evse ovr): 'C'
_OVR_IGN_EVSE_RULES = const(2)  # 'E'
_OVR_IGN_USER_RULES = const(4)  # 'U'
# reason codes (reason[i]); pblib.reasons.reason_text gives their texts
_R_UNUSED = const(0)
_R_NOCAR = const(1)
_R_ERROR = const(2)
_R_OFFLINE = const(3)
_R_OFF_HELD = const(4)
_R_DISABLED = const(5)
_R_DIS_MIN = const(6)
_R_DIS_NOLIMIT = const(7)
_R_OVR_OFF = const(8)
_R_OVR_MAMPS = const(9)
_R_MAX = const(10)
_R_L1 = const(11)  # + grid phase
_R_EVSE_CAP = const(14)
_R_DRAW = const(15)
_R_FAILSAFE = const(16)
_R_SHORTAGE = const(17)
_R_IMBALANCE = const(18)
_R_ROTATION = const(19)
_R_RAMP = const(20)
_R_NORULE = const(21)
_R_IDLE = const(22)
_R_PSW = const(23)  # phase switching (requested or in progress)
_R_SKEW = const(24)  # max_phase_skew binds
_R_SKEWP = const(25)  # paused: phase skew
# rule codes: R_RULE + (2 * user + solar) * NR + min(rule index, NR - 1); public:
# pblib.reasons decodes them with these two
R_RULE = const(26)
NR = const(11)
_SW_AUTO = const(1)  # set_evse sw bits: automatic phase switching allowed
_SW_1P = const(2)  # the relay is on one phase now
_SW_BUSY = const(4)  # the control task is switching the relay now
_SW_W1 = const(8)  # phase wish (devices.Evse.phase_wish): one phase
_SW_W3 = const(16)  # ... three phases
_SW_ANY = const(25)  # switching possible: automatic, or a wish
_U = const(100)  # allocation unit, mA
_BIG = const(0x3FFFFFFF)
_SAT = const(0x1FFFFFFF)
_DAY = const(1440)
_PERIOD = const(0x40000000)  # time.ticks_ms() period (2**30)
_HALF = const(0x20000000)
# slot kinds (_F_KIND)
_K_OFF = const(0)  # no share
_K_FIX = const(1)  # fixed share: offline (held) or disabled at minimum
_K_CAND = const(2)  # allocated
_K_WAIT = const(3)  # paused, inside pause_min_time
_K_FREE = const(4)  # disabled, policy -1: unmanaged
_K_PSW = const(5)  # phase switch requested or in progress: limit 0, minimum reserved
# _s: a list of n + 1 array('i') records: _s[i] = slot i's _W fields (_S_*), _s[n] =
# the site record (_G_*). Small records, not one flat array: no large heap block,
# and w[_S_X] is cheaper bytecode than s[i * _W + _S_X]. (u = 100 mA units)
_G_T = const(0)  # now_ms of the last cycle
_G_TOK = const(1)  # _G_T is set
_G_DT = const(2)  # ms since the previous cycle
_G_SF = const(3)  # smoothed surplus
_G_SREM = const(4)  # solar surplus not yet taken by solar rules
_G_PKI = const(5)  # start window: current bucket
_G_PKMS = const(6)  # start window: ms in the current bucket
_G_M = const(7)  # grid meter: ts, new, ever read, age; production meter at + 4
_G_MV = const(15)  # per phase (3 each) from here: grid (or consumption) reading
_G_PV = const(18)  # production reading
_G_OTH = const(21)  # other load
_G_BUD = const(24)  # budget, u
_G_EVB = const(27)  # budget capped by max_total_evse_current
_G_ROOM = const(30)  # room left in the allocation, u
_G_FIXD = const(33)  # fixed shares, u
_G_EV = const(36)  # measured EVSE currents
_G_EVP = const(39)  # the same at the last grid reading
_G_BST = const(42)  # start window: room to keep free, u
_G_SL = const(45)  # slack for raises
_G_PK = const(48)  # 5 buckets of the other load's maximum per phase
_G_SK = const(63)  # phase skew: slack of T[p] - T[q] (u), q = (p + d) % 3 at + 2 * p + d - 1
_G_SKF = const(69)  # ... what the fixed shares take of it (u, the same 6 pairs)
_G_SKN = const(75)  # ... its decrease per unit of the water level (the 6 pairs)
_G_PSWN = const(81)  # phase switching: the next slot to try in its other mode
_G_PSWA = const(82)  # ... slots with SW_AUTO this cycle
_G_N = const(83)
_S_FL = const(0)  # floor (minimum), u
_S_MAX = const(1)  # max_cur, mA
_S_PRIO = const(2)
_S_PMIN = const(3)
_S_MAMPS = const(4)
_S_E = const(5)
_S_C = const(6)  # 6, 7, 8: measured currents (>= 0)
_S_CP = const(9)  # cap (candidates), u
_S_FIX = const(9)  # fixed share (kind FIX), u: shares _S_CP's field (candidates only)
_S_AL = const(10)  # allocation, u (> 0 = admitted)
_S_K2 = const(10)  # sort tie-break (energy or -pause_ms): shares _S_AL's field (allocated later)
_S_K1 = const(11)  # service order key: priority * 8 + class
_S_OFF = const(12)  # ms offline
_S_SUR = const(13)  # solar surplus offered to this EVSE per phase
_S_PSWT = const(14)  # ms since the last phase switch request (kept over sessions)
_S_ALT = const(15)  # allocation in the other phase mode (the trial), u
_S_RUNMS = const(16)  # session fields from here to the end (reset_slot)
_S_IDLE = const(17)
_S_MF = const(18)  # draw, smoothed
_S_DCAP = const(19)  # draw cap, mA
_S_SET = const(20)  # ms since the last raise
_S_DETMS = const(21)
_S_HOLD = const(22)  # old limit a lowered car may still draw, mA
_S_HOLDMS = const(23)
_S_UDMS = const(24)
_S_UDL = const(25)  # udur of the deciding rule, ms
_S_RCUR = const(26)  # the rules' result before the udur gate, mA (0: not sufficient)
_S_RALT = const(27)  # the same in the other phase mode
_S_PSWC = const(28)  # ms the condition for a phase switch has held
_S_REL = const(29)  # what it draws now, u (phase skew: what it can be relied on for)
_W = const(30)
# _f: one bytearray: the service order at 0..n-1 (the slot at position j), then
# slot i's _B one-byte fields at n + i * _B
_F_ST = const(0)
_F_EN = const(1)
_F_PH = const(2)
_F_ROT = const(3)
_F_OVR = const(4)
_F_KIND = const(5)
_F_CAPR = const(6)  # reason of the cap
_F_FR = const(7)  # reason from the allocation
_F_SNZ = const(8)  # snoozed this cycle
_F_RN = const(9)  # a rule needs the share (second pass)
_F_SW = const(10)  # set_evse sw (_SW_*)
_F_SWP = const(11)  # the same in the previous cycle
_F_RUN = const(12)  # session fields from here to the end (reset_slot)
_F_STOP = const(13)  # it was running when paused
_F_IDLEP = const(14)  # paused while idle
_F_REL = const(15)
_F_DET = const(16)  # detected phases
_F_WK = const(17)  # idle turns
_F_UD = const(18)  # udur gate: 0 unknown, 1 stopped, 2 on
_F_C1 = const(19)  # the car drew on one phase only on three
_B = const(20)
# tuning (see "Fixed tuning" above)
_MU = const(20)  # start margin 2000 mA, u
_BL = const(24000)  # start window 120 s in 5 buckets
_HR = const(500)  # headroom
_SETTLE = const(10000)
_FOLLOW = const(5000)
_TOL = const(300)  # mA above its limit that still counts as "followed"
_IDLE_MS = const(30000)
_WAKEUP = const(30000)  # grace after a start: idle counts from -_WAKEUP
_WAKE = const(900000)
_IDLE_MA = const(1000)
_DET_MIN = const(1500)
_DET_SHRINK = const(60000)
_PSW_UP = const(60000)  # a switch to three phases: the room must have lasted this long
_PSW_H = const(3)  # ... and give it its minimum + 300 mA per phase (hysteresis), u
_PSW_WAIT = const(30000)  # a switch request not taken up by the caller in this time lapses


class Balancer:
    """The load balancer for n EVSE slots; see the module docstring and comments."""

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
        self.phase_switch_min_ms = 300000
        self.max_phase_skew = 0
        a, = ("i",)  # array typecode (in a constant tuple: no qstr for it)
        self.limit = array(a, bytes(4 * n))
        self.pause_ms = array(a, bytes(4 * n))
        self.paused = bytearray(n)
        self.reason = bytearray(n)
        self.phases = bytearray(b"\x3f" * n)
        self.want_1p = bytearray(n)
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
            S[i][_S_PSWT] = _SAT  # (no switch yet)
        g[_G_M + 3] = g[_G_M + 7] = _SAT  # meter ages
        for i in range(_G_PK, _G_PK + 15):
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

    def set_evse(self, index, state, on, phase, r, min, max, p, t, flags, m, e, x, y, z, re, ru, sw=0):
        """Slot index's inputs for this cycle, in this order: state, enabled,
        used_phases, phase_rotation, min_cur, max_cur, prio, pause_min_ms, ovr,
        mamps, energy_wh, c1, c2, c3, rules_e, rules_u, sw (phase switching; see
        the module comments). Positional: the argument names are short or
        built-in ones because every argument name is a permanent qstr."""
        i = index
        f = self._f
        c = self.n + i * _B
        f[c + _F_ST] = state
        f[c + _F_EN] = 1 if on else 0
        f[c + _F_PH] = phase & 7
        f[c + _F_ROT] = r if 0 <= r <= 5 else 0
        f[c + _F_OVR] = flags & 7
        f[c + _F_SW] = sw & 31
        w = self._s[i]
        min = (min + _U - 1) // _U
        w[_S_FL] = min if min > 0 else 1
        w[_S_MAX] = max
        w[_S_PRIO] = 0 if p < 0 else (p if p < 0xFFFFF else 0xFFFFF)
        w[_S_PMIN] = t
        w[_S_MAMPS] = m
        w[_S_E] = e if e < 0x7FFFFFFF else 0x7FFFFFFF  # (Wh from a box's 64-bit counter: the slot holds 31 bits)
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
        n = self._prepare(t)  # -> number of candidates, in _f[0:n]
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
        x = self._trial(n)  # phase switching: one car's other phase mode
        self._alloc(n)
        if r:  # mode 1 rules: relative to the share just computed
            for j in range(n):
                i = f[j]
                if f[self.n + i * _B + _F_RN]:
                    self._rule(i, S[i][_S_AL] * _U, t)
            self._alloc(n)
        self._commit(n)
        if x:
            self._switch(x - 1)

    def _trial(self, count):
        """Phase switching: allocate once with one switchable car (in turn) in its
        other phase mode, as a car that starts; what it gets there goes to _S_ALT.
        Returns its slot + 1, or 0 (none)."""
        S = self._s
        f = self._f
        n = self.n
        g = S[n]
        if self.failsafe or not g[_G_PSWA]:
            return 0
        k = g[_G_PSWN]
        x = -1
        for j in range(count):  # the first switchable candidate at or after slot k
            i = f[j]
            c = n + i * _B
            a = f[c + _F_PH]
            if (f[c + _F_SW] & _SW_ANY and not f[c + _F_C1] and (a == 0 or a == 7) and S[i][_S_K1] & 7 < 4
                    and (x < 0 or (i - k) % n < (x - k) % n)):
                x = i
        if x < 0:
            return 0
        i = x
        w = S[i]
        c = n + i * _B
        ph = self.phases
        o = ph[i]
        cp = w[_S_CP]
        e = f[c + _F_RUN]
        a = f[c + _F_PH] or 7 if f[c + _F_SW] & _SW_1P else 1
        r = f[c + _F_ROT]
        m = 0
        for k in range(3):
            if a >> k & 1:
                m |= 1 << ((k + r) % 3 if r < 3 else (r - k) % 3)
        ph[i] = a | m << 3
        m = w[_S_MAX] // _U
        a = w[_S_MAMPS] // _U
        m = a if 0 < a < m else m
        a = w[_S_RALT] // _U
        w[_S_CP] = a if a < m else m
        f[c + _F_RUN] = 0  # a switch is a start: start margin, start window
        self._alloc(count)
        w[_S_ALT] = w[_S_AL]
        ph[i] = o
        w[_S_CP] = cp
        f[c + _F_RUN] = e
        return i + 1

    def _switch(self, index):
        """Phase switching: the decision for the slot tried this cycle."""
        i = index
        S = self._s
        w = S[i]
        n = self.n
        g = S[n]
        c = n + i * _B
        sw = self._f[c + _F_SW]
        one = sw >> 1 & 1
        fl = w[_S_FL]
        a = w[_S_AL] if w[_S_RCUR] >= fl * _U else 0  # this mode (0: it cannot charge)
        x = w[_S_ALT]  # the other mode
        y = sw >> 3 & 3  # the phase wish: 1 one phase, 2 three (3: both bits, none)
        if 0 < y < 3 and (one == y - 1 or a or not sw & _SW_AUTO):
            # the wished mode where it charges the car (no delay); in it, stay while
            # it charges the car (without phase_switching 1: always)
            ok = one == y - 1 and x >= fl
            d = 0
        elif one:  # three phases when that gives it more, after _PSW_UP
            ok = x >= fl + _PSW_H and 3 * x >= a + _MU
            d = _PSW_UP
        else:  # one phase when three cannot charge it, after the udur of its rules
            ok = a == 0 and x >= fl
            d = w[_S_UDL] if w[_S_RCUR] < _BIG else 0
        if ok:  # (the condition's time counts inside phase_switch_min_ms too)
            v = w[_S_PSWC] + g[_G_DT]
            v = v if v < _SAT else _SAT
            if v >= d and w[_S_PSWT] >= self.phase_switch_min_ms:
                # the request: the car stops now (not paused); what it may still
                # draw stays reserved for the follow time (the hold, as for any lowering)
                self.want_1p[i] = 1 - one
                w[_S_PSWT] = v = 0
                ok = False
                a = self.limit[i]
                if a:
                    w[_S_HOLD] = a if a > w[_S_HOLD] else w[_S_HOLD]
                    w[_S_HOLDMS] = 0
                    self.limit[i] = 0
                self.reason[i] = _R_PSW
                self.paused[i] = self.pause_ms[i] = 0
            w[_S_PSWC] = v
        else:
            w[_S_PSWC] = ok = 0
        if not ok:  # next cycle the next car (while a condition holds: the same one)
            g[_G_PSWN] = (i + 1) % n


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
            w[_S_RCUR] = w[_S_RALT] = _BIG
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
        b = a * o // (1 if o > 1 else 3)  # the surplus per phase in the other phase mode
        h = x = _BIG  # result; the same in the other phase mode (0 unless sufficient)
        ok = sol = False
        e = w[_S_UDL]
        r = _R_NORULE
        for u in range(2):
            k = ku if u else ke
            if k == -1:  # none applies: 0
                h = x = 0
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
                if m < 2:
                    d = y
                elif m == 2:
                    d = b if b > fm else fm
                else:
                    d = y - a + b
                if d < x and (d < fm or m >= 2 and 0 < q.get(kso, 0) and b < q.get(kso, 0)):
                    x = 0
                elif d < x:
                    x = d
                y = y if y > 0 else 0
                if y < h:
                    h = y
                    d = q.get(kso, 0)
                    sol = m >= 2
                    ok = y >= fm and not (sol and 0 < d and a < d)
                    e = q.get(kud, 0) * 1000
                    r = R_RULE + (2 * u + sol) * NR + (k if k < NR else NR - 1)
        if r != _R_NORULE:
            w[_S_UDL] = e
        w[_S_RCUR] = h if ok else 0
        w[_S_RALT] = x
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
        if sol and h > 0 and v < 0:  # solar EVSEs take the surplus in turn (as far
            m = w[_S_CP] * _U  # as they can: max_charging_cur, mamps, what they draw)
            a = g[_G_SREM] - (h if h < m else m) * o
            g[_G_SREM] = a if a > 0 else 0
        if h // _U < w[_S_CP]:
            w[_S_CP] = h // _U
            f[c + _F_CAPR] = r
        return h

    def _prepare(self, t):
        """Meter ages, per EVSE phases/caps/kind, budgets, surplus, service order of the
        candidates (in _f[0:n]); returns the number of candidates."""
        S = self._s
        f = self._f
        n = self.n
        g = S[n]
        lim = self.limit
        pau = self.paused
        pms = self.pause_ms
        rsn = self.reason
        ph = self.phases
        wp = self.want_1p
        dt = 0
        if g[_G_TOK]:
            dt = t - g[_G_T]  # ticks_diff for a 2**30 period without big ints
            if dt >= _HALF:
                dt -= _PERIOD
            elif dt < -_HALF:
                dt += _PERIOD
            if dt < 0:
                dt = 0
        g[_G_TOK] = 1
        g[_G_T] = t
        g[_G_DT] = dt
        nw = g[_G_M + 1]  # a new grid (or consumption) reading since the last cycle
        for m in range(_G_M, _G_M + 8, 4):  # meter ages: grid, production
            a = g[m + 3] + dt
            a = a if a < _SAT else _SAT
            if g[m + 1]:
                a = t - g[m]
                if a >= _HALF:
                    a -= _PERIOD
                elif a < -_HALF:
                    a += _PERIOD
                a = a if a > 0 else 0
                g[m + 1] = 0
            g[m + 3] = a
        mode = self.meter_mode
        to = self.meter_timeout_ms
        fs = self.failsafe = mode != 0 and (not g[_G_M + 2] or g[_G_M + 3] > to)
        for p in range(_G_FIXD, _G_EV + 3):
            g[p] = 0
        for p in range(_G_SKF, _G_SKF + 6):
            g[p] = 0
        g[_G_PSWA] = 0
        pol = self.disable_policy
        # ---- per EVSE: phases, caps, kind
        for i in range(n):
            w = S[i]
            c = n + i * _B
            st = f[c + _F_ST]
            # phase switching: the relay (sw) and the request (want_1p)
            sw = f[c + _F_SW]
            one = sw >> 1 & 1
            x = 0  # switching: the car stops; the phases of both modes
            if sw | f[c + _F_SWP] | wp[i]:  # (nothing to do for an EVSE that never switches)
                g[_G_PSWA] += 1 if sw & _SW_ANY else 0
                a = w[_S_PSWT] + dt
                a = w[_S_PSWT] = a if a < _SAT else _SAT
                if (sw ^ f[c + _F_SWP]) & _SW_1P:  # the relay switched: detection, udur gate, draw cap afresh
                    f[c + _F_DET] = f[c + _F_UD] = 0
                    w[_S_DETMS] = w[_S_DCAP] = 0
                x = wp[i]
                if (not sw & _SW_ANY or st <= 1 or st >= 5 or not f[c + _F_EN] or f[c + _F_OVR] & 1
                        or not sw & _SW_BUSY and (f[c + _F_SWP] & _SW_BUSY or a >= _PSW_WAIT)):
                    x = one  # no request now; one that failed or was not taken up lapses
                wp[i] = x
                f[c + _F_SWP] = sw
                x = sw & _SW_BUSY or x != one
            if st <= 1:
                self.reset_slot(i)
                f[c + _F_KIND] = _K_OFF
                rsn[i] = _R_NOCAR if st == 1 else _R_UNUSED
                w[_S_OFF] = 0
                ph[i] = ph[i] & 0x38 | (1 if one else f[c + _F_PH] or 7)
                continue
            c0 = w[_S_C]
            c1 = w[_S_C + 1]
            c2 = w[_S_C + 2]
            mx = 0 if st == 6 else max(c0, c1, c2)
            # phases in use: configured, plus any detected while charging (a car
            # drawing on a phase uses it, whatever the configuration says)
            em = 1 if one else f[c + _F_PH]  # one phase: the relay leaves EVSE L1 only
            if x:
                em = (f[c + _F_PH] or 7) | 1
            d = f[c + _F_DET]
            if (st == 3 or st == 4) and mx >= _DET_MIN:
                a = mx >> 2
                a = a if a > 1000 else 1000
                v = (c0 >= a) | (c1 >= a) << 1 | (c2 >= a) << 2
                a = 0
                if d == 0 or v & ~d:
                    d |= v
                elif v != d:
                    a = w[_S_DETMS] + dt
                    if a >= _DET_SHRINK:
                        d = v
                        a = 0
                w[_S_DETMS] = a
                f[c + _F_DET] = d
                if not one and not x:  # on three phases: a car that draws on one is a 1-phase car
                    f[c + _F_C1] = 1 if d & (d - 1) == 0 else 0
            em = em | d if em else d or 7
            r = f[c + _F_ROT]
            gm = 0
            for k in range(3):  # EVSE phase k is on grid phase (k + r) % 3, or (r - k) % 3
                if em >> k & 1:
                    gm |= 1 << ((k + r) % 3 if r < 3 else (r - k) % 3)
            ph[i] = em | gm << 3
            fl = w[_S_FL]
            en = f[c + _F_EN]
            if not en and pol == -1:
                f[c + _F_KIND] = _K_FREE  # unmanaged: its current stays in the other load
                rsn[i] = _R_DIS_NOLIMIT
                f[c + _F_RUN] = pau[i] = 0
                continue
            # measured EVSE currents (not other load); an offline EVSE whose share is
            # still held: its last reading, up to that share (its draw is in the grid
            # reading, the share is reserved: not twice)
            a = _BIG if st != 6 else (lim[i] if w[_S_OFF] + dt < to else 0)
            for k in range(3):
                v = w[_S_C + k]
                g[_G_EV + ((k + r) % 3 if r < 3 else (r - k) % 3)] += v if v < a else a
            if not en or st >= 5 or f[c + _F_OVR] & 1:  # (OVR_OFF)
                v = 0
                k = _R_DISABLED
                if not en:
                    if pol == 1:
                        v = fl
                        k = _R_DIS_MIN
                elif st == 6:
                    a = w[_S_OFF] + dt
                    a = w[_S_OFF] = a if a < _SAT else _SAT
                    k = _R_OFFLINE
                    if a < to and lim[i] > 0:
                        v = lim[i] // _U
                        k = _R_OFF_HELD
                else:
                    k = _R_ERROR if st == 5 else _R_OVR_OFF
                if st != 6:
                    w[_S_OFF] = 0
                f[c + _F_KIND] = _K_FIX if v else _K_OFF
                w[_S_FIX] = v
                for p in range(3):
                    if gm >> p & 1:
                        g[_G_FIXD + p] += v
                if v and gm != 7:  # phase skew: it loads its phases (relief: what it drew)
                    self._skew(_G_SKF, gm, 0, v, max(c0, c1, c2) // _U)
                rsn[i] = k
                f[c + _F_RUN] = pau[i] = pms[i] = 0
                continue
            w[_S_OFF] = 0
            if x:  # a phase switch requested or under way: the car stops (limit 0), not
                # paused; its minimum stays reserved on the phases of the mode it goes to
                if wp[i]:
                    gm = 1 << r % 3  # EVSE L1's grid phase
                for p in range(3):
                    if gm >> p & 1:
                        g[_G_FIXD + p] += fl
                if gm != 7:
                    self._skew(_G_SKF, gm, 0, fl, 0)
                f[c + _F_KIND] = _K_PSW
                rsn[i] = _R_PSW
                pau[i] = pms[i] = 0
                continue
            # an EV is present (state 2..4): its caps
            cp = w[_S_MAX] // _U
            k = _R_MAX
            m = w[_S_MAMPS] // _U
            if 0 < m < cp:
                cp = m
                k = _R_OVR_MAMPS
            if fs:
                v = self.failsafe_current // _U
                v = fl if v < 0 else (v if v >= fl else 0)
                if v < cp:
                    cp = v
                    k = _R_FAILSAFE
            m = lim[i]
            d = 0
            if m > 0:  # cap a car that draws less than its limit at draw + headroom
                a = w[_S_SET] + dt
                a = w[_S_SET] = a if a < _SAT else _SAT
                v = w[_S_MF]
                v += (mx - v) >> 1
                w[_S_MF] = v
                d = w[_S_DCAP]
                v = (v + _HR + _U - 1) // _U * _U
                v = v if v > fl * _U else fl * _U
                r = 0
                if d and mx + (_HR >> 1) >= d:  # it wants more: release after 2 cycles
                    r = f[c + _F_REL] + 1
                    if r >= 2:
                        d = r = 0
                elif a >= _SETTLE and v < (d - _U if d else m):
                    d = v
                f[c + _F_REL] = r
                if d and d // _U < cp:
                    cp = d // _U
                    k = _R_DRAW
                if mx < _IDLE_MA:
                    a = w[_S_IDLE] + dt
                    w[_S_IDLE] = a if a < _SAT else _SAT
                else:
                    w[_S_IDLE] = f[c + _F_WK] = 0
            else:
                w[_S_SET] = f[c + _F_REL] = 0
                w[_S_IDLE] = -_WAKEUP  # a car needs a while to start drawing
                w[_S_MF] = mx
            w[_S_DCAP] = d
            w[_S_CP] = cp
            w[_S_REL] = (mx if mx < lim[i] else lim[i]) // _U if st >= 3 else 0  # (a raise may wait)
            f[c + _F_CAPR] = k
            f[c + _F_KIND] = _K_CAND
            if pau[i]:
                a = pms[i] + dt
                a = pms[i] = a if a < _SAT else _SAT
                if f[c + _F_STOP] and a < w[_S_PMIN]:
                    f[c + _F_KIND] = _K_WAIT
        # ---- budgets; rolling maximum of the other load over the start window (5
        # buckets): a waiting car starts only if it would fit at that peak too
        mt = self.max_total_current - self.reserve_current
        ec = self.max_total_evse_current
        bud = self.budget
        a = g[_G_PKMS] + dt
        r = a >= _BL
        if r:
            a = a - _BL if a < 2 * _BL else 0
            g[_G_PKI] = (g[_G_PKI] + 1) % 5
        g[_G_PKMS] = a
        for p in range(3):
            o = 0
            if fs:
                o = g[_G_OTH + p]
            elif not nw:  # no new reading: the last estimate (a stale grid reading
                o = g[_G_OTH + p]  # minus fresh EVSE currents would be a phantom)
            elif mode == 3:  # METER_GRID
                # the grid was read between the EVSE readings of the last cycle and
                # of this one: the other load lies between grid - this cycle's EVSE
                # currents and grid - the last cycle's. The last estimate, moved into
                # that range: a car ramping is no change of the other load (no
                # phantom dips); a change the range cannot explain moves it at once.
                # A reading over max_total_current is not explained away by a ramp:
                # it is paired with this cycle's EVSE currents (read nearest to it)
                a = g[_G_EV + p]
                v = a - g[_G_EVP + p]  # the EVSE currents' move (signed)
                g[_G_EVP + p] = a
                o = g[_G_MV + p] - a
                if o + a <= self.max_total_current:
                    x = o + v if v < 0 else o
                    o += v if v > 0 else 0
                    v = g[_G_OTH + p]
                    o = v if v < o else o
                    o = x if x > o else o
            elif mode == 1:  # METER_CONSUMPTION
                o = g[_G_MV + p]
            g[_G_OTH + p] = o
            v = mt - o
            g[_G_EVB + p] = 0
            if 0 < ec < v:
                v = ec
                g[_G_EVB + p] = 1
            v = v if v > 0 else 0
            bud[p] = v
            g[_G_BUD + p] = v // _U
            k = _G_PK + 5 * p
            if r or g[k + g[_G_PKI]] < o:
                g[k + g[_G_PKI]] = o
            for x in range(k, k + 5):
                if g[x] > o:
                    o = g[x]
            o = mt - o
            if 0 < ec < o:
                o = ec
            o = v - (o if o > 0 else 0)
            g[_G_BST + p] = o // _U if o > 0 else 0
        v = 0
        if not fs:
            if mode == 3:
                v = -(g[_G_OTH] + g[_G_OTH + 1] + g[_G_OTH + 2])
            elif g[_G_M + 6] and g[_G_M + 7] <= to:
                v = g[_G_PV] + g[_G_PV + 1] + g[_G_PV + 2]
                if mode == 1:
                    v -= g[_G_MV] + g[_G_MV + 1] + g[_G_MV + 2]
        a = g[_G_SF]
        a += (v - a) >> self.solar_shift
        g[_G_SF] = a
        g[_G_SREM] = self.surplus = a if a > 0 else 0
        # ---- service order: (priority, class, tie-break, slot)
        r = self.rotation_ms
        m = 0
        for i in range(n):
            w = S[i]
            c = n + i * _B
            if f[c + _F_KIND] != _K_CAND:
                w[_S_K1] = _BIG
                w[_S_K2] = 0
                continue
            m += 1
            if f[c + _F_RUN]:
                k = 4 if w[_S_IDLE] >= _IDLE_MS else (0 if w[_S_RUNMS] < r else 2)
                w[_S_K2] = w[_S_E]
            else:
                a = pms[i]
                if f[c + _F_IDLEP]:  # snoozed while idle: wake-up probes back off 1, 2, 4, 8 turns
                    v = f[c + _F_WK]
                    k = 3 if a >= _WAKE << (v - 1 if v > 1 else 0) else 5
                else:
                    k = 3
                    if a >= r:  # its turn: ahead of long-running cars with more energy
                        k = 2
                        a = 1 - w[_S_E]  # (ahead at equal energy)
                w[_S_K2] = -a
            w[_S_K1] = w[_S_PRIO] * 8 + k
        for j in range(1, n):  # insertion sort: last cycle's order is nearly right
            x = f[j]
            a = S[x][_S_K1]
            v = S[x][_S_K2]
            h = j - 1
            while h >= 0:
                y = f[h]
                w = S[y]
                if w[_S_K1] < a or (w[_S_K1] == a and (w[_S_K2] < v or (w[_S_K2] == v and y < x))):
                    break
                f[h + 1] = y
                h -= 1
            f[h + 1] = x
        return m

    def _alloc(self, count):
        """Admit the count candidates at their minimums in service order, then
        water-fill by priority; with max_phase_skew, cars that load some grid
        phases and not others are shed or stop rising where the skew binds."""
        nc = count
        S = self._s
        f = self._f
        n = self.n
        g = S[n]
        ph = self.phases
        for p in range(3):
            g[_G_ROOM + p] = g[_G_BUD + p] - g[_G_FIXD + p]
        sk = self.max_phase_skew
        if sk > 0:  # slack of T[p] - T[q] (grid phase currents) below its bound: max_phase_skew,
            for p in range(3):  # or the other load's own difference
                for d in range(1, 3):
                    a = g[_G_OTH + p] - g[_G_OTH + (p + d) % 3]
                    g[_G_SK + 2 * p + d - 1] = ((sk if sk > a else a) - a) // _U + g[_G_SKF + 2 * p + d - 1]
        q = -1
        r = False
        for j in range(nc):
            i = f[j]
            w = S[i]
            c = n + i * _B
            w[_S_AL] = 0
            fl = w[_S_FL]
            if w[_S_CP] < fl:
                continue
            k = w[_S_K1]
            if f[c + _F_SNZ] or k & 7 == 5:  # idle: only current nobody else uses (below)
                f[c + _F_FR] = _R_IDLE
                continue
            if k >> 3 != q:
                q = k >> 3
                r = False
            e = f[c + _F_RUN]
            d = fl if e else fl + _MU
            gm = ph[i] >> 3
            # a car that adds load must also fit at the recent peak of the other load;
            # a rotation swap (a waiting car in class 2) replaces a running car; a car
            # whose phases are unknown (assumed three) starts when it fits now: once
            # it has drawn, a 1-phase car needs room on one phase only
            x = not e and k & 7 == 2
            e = e or x or not f[c + _F_PH] | f[c + _F_DET]
            v = d
            for p in range(3):
                if gm >> p & 1:
                    a = g[_G_ROOM + p] - (0 if e else g[_G_BST + p])
                    if a < v:
                        v = a
            if v >= d:
                w[_S_AL] = fl
                for p in range(3):
                    if gm >> p & 1:
                        g[_G_ROOM + p] -= fl
                if sk > 0 and gm != 7:
                    self._skew(_G_SK, gm, 0, fl, w[_S_REL])
                r = r or x
            elif f[c + _F_RUN] and r:
                f[c + _F_FR] = _R_ROTATION
            elif max(g[_G_ROOM], g[_G_ROOM + 1], g[_G_ROOM + 2]) >= d:
                f[c + _F_FR] = _R_IMBALANCE  # another phase would have room for it
            else:
                f[c + _F_FR] = _R_SHORTAGE
        # max_phase_skew: shed what skews the phases too far, last in service order
        # first (a car that starts needs the start margin of skew too); admitted
        # together, cars on different phases balance each other
        r = sk > 0
        while r:
            r = False
            for j in range(nc - 1, -1, -1):
                i = f[j]
                w = S[i]
                a = w[_S_AL]
                gm = ph[i] >> 3
                if a <= 0 or gm == 7 or self._skewroom(gm) >= (0 if f[n + i * _B + _F_RUN] else _MU):
                    continue
                w[_S_AL] = 0
                for p in range(3):
                    if gm >> p & 1:
                        g[_G_ROOM + p] += a
                self._skew(_G_SK, gm, a, 0, w[_S_REL])
                f[n + i * _B + _F_FR] = _R_SKEWP
                r = True
        for p in range(_G_ROOM, _G_ROOM + 3):
            if g[p] < 0:
                g[p] = 0
        # equal water-filling above the floors, one priority group [j0, j1) at a time;
        # an EVSE that stops rising (frozen) keeps its allocation negated until the
        # group is done
        j1 = 0
        while j1 < nc:
            j0 = j1
            q = S[f[j0]][_S_K1] >> 3
            j1 += 1
            while j1 < nc and S[f[j1]][_S_K1] >> 3 == q:
                j1 += 1
            e = 0  # live
            for j in range(j0, j1):
                i = f[j]
                w = S[i]
                a = w[_S_AL]
                if a:
                    if w[_S_CP] <= a:
                        w[_S_AL] = -a
                        c = n + i * _B
                        f[c + _F_FR] = f[c + _F_CAPR]
                    else:
                        e += 1
            q = 0  # level
            while e:
                y = 0  # rising EVSEs per grid phase p, in bits 8p..8p+7 (n <= 255)
                v = _BIG  # step
                if sk > 0:
                    for k in range(_G_SKN, _G_SKN + 6):
                        g[k] = 0
                for j in range(j0, j1):
                    i = f[j]
                    w = S[i]
                    if w[_S_AL] > 0:
                        d = w[_S_FL] - q  # > 0: waits at its floor
                        if d <= 0:
                            d = w[_S_CP] - q
                            gm = ph[i]  # grid phases in bits 3..5
                            y += (gm & 8) >> 3 | (gm & 16) << 4 | (gm & 32) << 11
                            if sk > 0 and gm & 56 != 56:  # the pairs it loads; those it relieves up to its draw
                                gm >>= 3
                                x = w[_S_REL] - q
                                d = x if 0 < x < d else d
                                for p in range(3):
                                    a = gm >> p & 1
                                    for k in range(1, 3):
                                        if a != gm >> (p + k) % 3 & 1 and (a or x > 0):
                                            g[_G_SKN + 2 * p + k - 1] += 1 if a else -1
                        v = d if d < v else v
                r = 0  # saturated phases (bits 0..2), skew pairs (bits 3..8)
                for p in range(3):
                    d = y >> 8 * p & 255
                    if d:
                        d = g[_G_ROOM + p] // d
                        v = d if d < v else v
                        r |= (d == 0) << p
                if sk > 0:
                    for k in range(6):
                        x = g[_G_SKN + k]
                        if x > 0:
                            x = g[_G_SK + k] // x
                            if x <= 0:
                                x = 0
                                r |= 8 << k
                            v = x if x < v else v
                if v > 0:
                    for p in range(3):
                        g[_G_ROOM + p] -= v * (y >> 8 * p & 255)
                    if sk > 0:
                        for k in range(6):
                            g[_G_SK + k] -= v * g[_G_SKN + k]
                    for j in range(j0, j1):
                        w = S[f[j]]
                        if w[_S_AL] > 0 and w[_S_FL] <= q:
                            w[_S_AL] = q + v
                            if q + v >= w[_S_CP]:
                                w[_S_AL] = -q - v
                                c = n + f[j] * _B
                                f[c + _F_FR] = f[c + _F_CAPR]
                                e -= 1
                    q += v
                    continue
                for j in range(j0, j1):  # saturated phase(s) or skew: last units, then freeze
                    i = f[j]
                    w = S[i]
                    gm = ph[i] >> 3
                    a = w[_S_AL]
                    if a <= 0:
                        continue
                    b = 0  # on the loaded side of a saturated skew pair
                    if r >> 3:
                        for p in range(3):
                            for d in range(1, 3):
                                if r >> 2 * p + d + 2 & 1 and gm >> p & 1 and not gm >> (p + d) % 3 & 1:
                                    b = 1
                    if not gm & r and not b:
                        continue
                    if gm & r and w[_S_FL] <= q and a < w[_S_CP]:
                        d = 1
                        for p in range(3):
                            if gm >> p & 1 and g[_G_ROOM + p] < d:
                                d = g[_G_ROOM + p]
                        if sk > 0 and gm != 7 and self._skewroom(gm) < d:
                            d = 0
                        if d > 0:
                            a += 1
                            for p in range(3):
                                if gm >> p & 1:
                                    g[_G_ROOM + p] -= 1
                            if sk > 0 and gm != 7:
                                self._skew(_G_SK, gm, a - 1, a, w[_S_REL])
                    w[_S_AL] = -a
                    e -= 1
                    if gm & r:
                        p = 0 if gm & r & 1 else (1 if gm & r & 2 else 2)
                        p = _R_EVSE_CAP if g[_G_EVB + p] else _R_L1 + p
                    else:
                        p = _R_SKEW
                    f[n + i * _B + _F_FR] = p
            for j in range(j0, j1):
                w = S[f[j]]
                if w[_S_AL] < 0:
                    w[_S_AL] = -w[_S_AL]
        for j in range(nc):  # snoozed idle cars wake up in current left over by everyone
            i = f[j]
            w = S[i]
            c = n + i * _B
            fl = w[_S_FL]
            if w[_S_K1] & 7 == 5 and not f[c + _F_SNZ] and w[_S_CP] >= fl:
                gm = ph[i] >> 3
                v = fl + _MU
                for p in range(3):
                    if gm >> p & 1 and g[_G_ROOM + p] - g[_G_BST + p] < v:
                        v = g[_G_ROOM + p] - g[_G_BST + p]
                if sk > 0 and gm != 7 and self._skewroom(gm) < v:
                    v = self._skewroom(gm)
                if v >= fl + _MU:
                    w[_S_AL] = fl
                    for p in range(3):
                        if gm >> p & 1:
                            g[_G_ROOM + p] -= fl
                    if sk > 0 and gm != 7:
                        self._skew(_G_SK, gm, 0, fl, w[_S_REL])
                    f[c + _F_FR] = _R_DRAW

    def _skew(self, k, gm, a0, a1, rel):
        """max_phase_skew: a car (or fixed share) on the grid phases gm goes from a0
        to a1 (u): the slack (at k: _G_SK, or _G_SKF) of the pairs it loads shrinks
        by as much; of those it relieves, it grows only by what it draws of that
        (rel: a car that draws less, or stops, cannot hold another car's share)."""
        g = self._s[self.n]
        u = a1 - a0
        x = (a1 if a1 < rel else rel) - (a0 if a0 < rel else rel)
        for p in range(3):
            a = gm >> p & 1
            for d in range(1, 3):
                if a != gm >> (p + d) % 3 & 1:
                    g[k + 2 * p + d - 1] -= u if a else -x

    def _skewroom(self, gm):
        """max_phase_skew: how much more (u) a car on the grid phases gm may get."""
        g = self._s[self.n]
        v = _BIG
        for p in range(3):
            if gm >> p & 1:
                for d in range(1, 3):
                    if not gm >> (p + d) % 3 & 1 and g[_G_SK + 2 * p + d - 1] < v:
                        v = g[_G_SK + 2 * p + d - 1]
        return v

    def _commit(self, count):
        """Snooze idle cars that hold back others (then allocate again); targets ->
        limits: lower at once, raise only into current that is free; the outputs."""
        nc = count
        S = self._s
        f = self._f
        n = self.n
        g = S[n]
        ph = self.phases
        lim = self.limit
        pau = self.paused
        pms = self.pause_ms
        rsn = self.reason
        dt = g[_G_DT]
        # snooze admitted idle cars (class 4) whose reserved minimum holds back
        # another car on one of their phases
        r = 0
        for j in range(nc):
            i = f[j]
            if not S[i][_S_AL] or S[i][_S_K1] & 7 != 4:
                continue
            for h in range(nc):
                x = f[h]
                w = S[x]
                if x == i or not ph[x] & ph[i] & 0x38 or w[_S_K1] & 7 >= 4 or f[n + x * _B + _F_SNZ]:
                    continue
                k = f[n + x * _B + _F_FR]
                if (w[_S_AL] and _R_L1 <= k <= _R_EVSE_CAP) or (not w[_S_AL] and w[_S_CP] >= w[_S_FL]):
                    f[n + i * _B + _F_SNZ] = 1
                    r = 1
                    break
        if r:
            self._alloc(nc)
        for p in range(3):
            g[_G_SL + p] = self.budget[p]
        for i in range(n):
            w = S[i]
            k = f[n + i * _B + _F_KIND]
            if k == _K_FREE:
                lim[i] = w[_S_MAX] // _U * _U
                w[_S_HOLD] = 0
                continue
            v = w[_S_AL] * _U if k == _K_CAND else (w[_S_FIX] * _U if k == _K_FIX else 0)  # target
            o = lim[i]
            h = w[_S_HOLD]
            x = 0  # the largest measured phase current (none: no car, offline)
            a = f[n + i * _B + _F_ST]
            if 1 < a != 6:
                x = max(w[_S_C], w[_S_C + 1], w[_S_C + 2])  # (allocates nothing)
            if h:  # released once followed (measured) or after the follow time
                a = w[_S_HOLDMS] = w[_S_HOLDMS] + dt
                if a >= _FOLLOW or x <= o + _TOL:
                    h = 0
            if v < o:
                if x > v + _TOL:
                    h = h if h > o else o
                    w[_S_HOLDMS] = 0
                lim[i] = o = v
            w[_S_HOLD] = h
            a = h if h > o else o
            gm = ph[i] >> 3
            for p in range(3):
                if gm >> p & 1:
                    g[_G_SL + p] -= a
        for j in range(n):
            i = f[j]
            w = S[i]
            c = n + i * _B
            k = f[c + _F_KIND]
            o = lim[i]
            v = w[_S_AL] * _U if k == _K_CAND else (w[_S_FIX] * _U if k == _K_FIX else o)  # target
            if v > o:  # raise
                gm = ph[i] >> 3
                a = v - o
                for p in range(3):
                    if gm >> p & 1 and g[_G_SL + p] < a:
                        a = g[_G_SL + p]
                a = o + (a // _U * _U if a > 0 else 0)
                if a >= w[_S_FL] * _U and a > o:
                    for p in range(3):
                        if gm >> p & 1:
                            g[_G_SL + p] -= a - o
                    lim[i] = a
                    # it used the old limit (its largest phase current; not offline:
                    # raised): let it ramp first
                    if max(w[_S_C], w[_S_C + 1], w[_S_C + 2]) + _HR >= o:
                        w[_S_SET] = 0
            if k == _K_CAND:
                if w[_S_AL]:
                    a = w[_S_RUNMS] + dt
                    w[_S_RUNMS] = (a if a < _SAT else _SAT) if f[c + _F_RUN] else 0
                    f[c + _F_RUN] = 1
                    pau[i] = pms[i] = f[c + _F_STOP] = f[c + _F_IDLEP] = 0
                    rsn[i] = f[c + _F_FR] if lim[i] else _R_RAMP
                elif w[_S_CP] < w[_S_FL]:
                    f[c + _F_RUN] = pau[i] = pms[i] = 0
                    rsn[i] = f[c + _F_CAPR]
                else:
                    if not pau[i]:  # (a running pause is counted in prepare)
                        pau[i] = 1
                        pms[i] = 0
                        f[c + _F_STOP] = f[c + _F_RUN]
                        a = f[c + _F_IDLEP] = w[_S_IDLE] >= _IDLE_MS
                        if a:
                            a = f[c + _F_WK]
                            f[c + _F_WK] = a + 1 if a < 4 else 4
                    f[c + _F_RUN] = w[_S_RUNMS] = 0
                    rsn[i] = f[c + _F_FR]
