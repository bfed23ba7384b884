"""Load-balancer simulation harness: pblib.balancer against peer strategies.

    python tools/lbsim.py [--scenario NAME ...] [--hours H] [--plots] [--seed N]

Simulated time (1 s steps = one control cycle), CPython, fast. The *same* world
(house load with appliance spikes, a PV curve with clouds, car arrivals and
departures, meter noise, meter dropouts, EVSEs going offline) is replayed for every
strategy:

  ours      pblib.balancer (the module the firmware runs)
  equal     equal share, SmartEVSE-like: every connected car gets total/N where
            total = the smallest phase budget; all stop when that is below N x min
            (restart after the same pause_min_time)
  priority  strict priority, no rotation, cFos-like: cars in priority/slot order
            each take up to their EVSE's max on their phases, a car that cannot
            get its minimum is paused (pause_min_time), no reallocation of current
            a car does not draw
All three get the same meter readings and the same failsafe (minimum current when
the grid meter is lost for meter_timeout), and lower limits in the same cycle.

The plant: a car draws min(limit, its demand) on its phases (1- or 3-phase, onboard
max current, taper near full, pauses where it draws nothing), following a new
limit after a delay of 0..1 s at 8..15 A/s (within IEC 61851's 5 s); a limit below
6 A stops it. The grid meter sees house - PV + cars, read with noise
(1 % + 100 mA) and sometimes not at all; EVSE meters (0.5 % + 50 mA).

Metrics per run
  over      over-limit samples: 1-s samples in which a grid phase is above
            max_total_current because of EVSE current (above the fuse or above
            what the house alone draws there, whichever is higher: a house load
            that alone exceeds the fuse is no EVSE's doing) although the
            controller has had a meter reading showing it for >= GRACE s (cycle
            + the car's 5 s to follow + 1 s). Excess the controller could not
            see yet (a spike during a meter dropout, the seconds cars need to
            follow a lower limit) is not counted here but in "worst".
  worst     the largest over-limit episode, mA*s (every such sample)
  energy    kWh delivered
  util      energy / energy of the optimal allocation: an oracle that knows the
            true load and every car's true demand and water-fills the true budget
            every second (same minimums, 100 mA steps, priorities; cars of equal
            priority that do not all fit take turns by least energy so far, i.e.
            fluid fair sharing), held to what binds every controller: while the
            grid meter has been lost for > meter_timeout each car gets at most
            failsafe_current (its minimum; API.md 9.5), and a car's phases are
            the configured ones or, on an EVSE with used_phases 0, all three
            until the car has drawn once (no controller can see a car's phases
            before it draws). It does not pay for start/stop events: it starts a
            car for the few seconds a cycling load leaves room. > 100 % = more
            energy than fair sharing allows (the energy-greedy strict-priority
            baseline does that).
  util_pm   the same against an oracle that also keeps the spec's pause_min_time
            (a car it stops stays stopped 300 s, running cars keep running first)
  ev/car/h  start/stop events per car per connected hour (the first start of a
            session is not counted); the summary also compares events per kWh
  jain      Jain index over car sessions of energy / the fair oracle's energy for
            that car (1 = everybody got their fair share); jainE the same of raw
            energy per car (the literal metric: it also reflects how much each car
            could take). Sessions shorter than 30 min (two rotation turns) are left
            out: no policy that rotates in 15-min turns can serve them fairly.
  react     cycles from the first grid reading that shows a house-load step
            (>= 3 A) that overloads the written limits (as far as the cars want
            them; over the fuse, or over the house alone where that is over it
            already) to written limits that fit again: mean / max (number of
            such steps); 0 = corrected in the same cycle
  us/cycle  CPython time of the strategy's step (our balance() plus inputs)
"""
import argparse
import math
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _d in ("lib", os.path.join("host_tests", "shim")):
    _p = os.path.join(ROOT, _d)
    if _p not in sys.path:
        sys.path.insert(0, _p)

from pblib import balancer, reasons  # noqa: E402

ROTS = ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (1, 0, 2), (2, 1, 0))
GRACE = 7  # s: cycle + 5 s car follow time (IEC 61851) + 1 s
SKEW = 20000  # mA: max_phase_skew of every scenario (the 20 A / 4.6 kVA unbalanced-load rule)
PSW_MIN = 300  # s: phase_switch_min_time (INTEGRATIONS.md default)
SOLAR_UDUR = 60  # s: udur of the solar-only rule (pv_surplus)
PAUSE_MIN = 300  # s, pause_min_time of every strategy (API.md sample value)
V = 230
MIN = 6000


def gmask_of(evse_mask, rot):
    m = 0
    for k in range(3):
        if (evse_mask >> k) & 1:
            m |= 1 << ROTS[rot][k]
    return m


# ----------------------------------------------------------------------------- world
class Slot:
    def __init__(self, max_cur=16000, rot=0, prio=1, used_phases=0, psw=False):
        self.max_cur = max_cur
        self.rot = rot
        self.prio = prio
        self.used_phases = used_phases
        self.psw = psw  # phase switching: phase_switching 1 on a box with feature bit 8


class CarSpec:
    def __init__(self, slot, arrive, depart, phases, cmax, need_wh, delay, rate, pauses=()):
        self.slot = slot
        self.arrive = arrive
        self.depart = depart
        self.phases = phases  # EVSE phase mask the car uses (1 or 7)
        self.cmax = cmax
        self.need_wh = need_wh
        self.delay = delay
        self.rate = rate
        self.pauses = pauses


class Scenario:
    def __init__(self, name, T, max_total, reserve, evse_cap, slots, cars, house, pv,
                 dropouts=(), offline=(), start_hour=0, skew=SKEW, solar=False):
        self.skew = skew  # max_phase_skew, mA
        self.solar = solar  # every EVSE charges from solar surplus only (a mode-5 rule)
        self.name = name
        self.T = T
        self.max_total = max_total
        self.reserve = reserve
        self.evse_cap = evse_cap
        self.slots = slots
        self.cars = cars
        self.house = house  # [3][T] mA
        self.pv = pv  # [T] mA per phase (3-phase inverter)
        self.dropouts = dropouts  # grid meter not readable: (start, dur)
        self.offline = offline  # (slot, start, dur)
        self.start_hour = start_hour


APPLIANCES = {  # name: (phase mask or 0 = a random phase, mA, min s, max s, cycle on/off s)
    "kettle": (0, 9000, 90, 240, None),
    "microwave": (0, 5000, 60, 400, None),
    "hob": (0, 8000, 600, 2400, (50, 30)),
    "oven": (7, 6000, 1200, 3000, (120, 90)),
    "dryer": (0, 10000, 1800, 3600, (300, 60)),
    "heatpump": (7, 4000, 600, 1500, None),
    "washer": (0, 9000, 600, 1200, None),
}


def gen_house(rng, T, base, rates):
    h = [[0] * T for _ in range(3)]
    for p in range(3):  # slowly wandering base load
        v = base[p]
        for t in range(T):
            if t % 60 == 0:
                v += rng.randint(-150, 150)
                v = min(max(v, base[p] // 2), base[p] * 2)
            h[p][t] = v
    for name, per_hour in rates.items():
        mask, amps, dmin, dmax, cyc = APPLIANCES[name]
        t = 0
        while True:
            t += int(rng.expovariate(per_hour / 3600.0)) + 1
            if t >= T:
                break
            d = rng.randint(dmin, dmax)
            m = mask or (1 << rng.randrange(3))
            for s in range(t, min(T, t + d)):
                if cyc and (s - t) % (cyc[0] + cyc[1]) >= cyc[0]:
                    continue
                for p in range(3):
                    if (m >> p) & 1:
                        h[p][s] += amps
    return h


def gen_pv(rng, T, peak, start_hour, cloudiness):
    pv = [0] * T
    f = 1.0
    until = 0
    for t in range(T):
        hour = start_hour + t / 3600.0
        x = math.sin(math.pi * (hour - 6.0) / 14.0) if 6.0 < hour < 20.0 else 0.0
        if t >= until:  # clouds: a Markov chain of clear / cloudy spells
            if f < 1.0 or rng.random() > cloudiness:
                f = 1.0
                until = t + rng.randint(60, 900)
            else:
                f = rng.uniform(0.15, 0.6)
                until = t + rng.randint(20, 400)
        pv[t] = int(peak * max(0.0, x) ** 1.3 * f)
    return pv


def gen_cars(rng, slots, T, n_sessions, arrive_span, stay, one_phase_share=0.3, pause_prob=0.3):
    cars = []
    free_at = [0] * len(slots)
    for k in range(n_sessions):
        s = k % len(slots)
        a = max(free_at[s], rng.randint(0, int(T * arrive_span)))
        if a >= T - 600:
            continue
        d = min(T, a + rng.randint(int(stay[0] * 3600), int(stay[1] * 3600)))
        free_at[s] = d + rng.randint(60, 900)
        one = rng.random() < one_phase_share or slots[s].used_phases == 1
        ph = 1 if one else 7
        cmax = rng.choice((16000, 16000, 32000, 13000)) if one else rng.choice((16000, 16000, 11000, 32000))
        cmax = min(cmax, 32000)
        need = rng.randint(8000, 45000)
        pauses = []
        if rng.random() < pause_prob:  # the car stops drawing for a while (BMS, preconditioning)
            t0 = a + rng.randint(300, 3600)
            pauses.append((t0, t0 + rng.randint(120, 1200)))
        cars.append(CarSpec(s, a, d, ph, cmax, need, rng.randint(0, 1), rng.randint(8000, 15000),
                            tuple(pauses)))
    return cars


def scenario(name, hours=None, seed=1):
    rng = random.Random("%s-%d" % (name, seed))
    if name == "evening":  # house with 6 EVSEs, 3x32 A, cooking peaks
        T = int((hours or 5) * 3600)
        slots = [Slot(16000, 0), Slot(16000, 1, used_phases=1), Slot(32000, 2), Slot(16000, 0),
                 Slot(16000, 1), Slot(32000, 2)]
        cars = gen_cars(rng, slots, T, 10, 0.5, (1.5, 5))
        house = gen_house(rng, T, (2500, 3500, 2000),
                          {"kettle": 1.5, "microwave": 1, "hob": 0.7, "oven": 0.4, "dryer": 0.2,
                           "heatpump": 0.8, "washer": 0.3})
        return Scenario(name, T, 32000, 1000, 0, slots, cars, house, [0] * T,
                        dropouts=[(1800, 4), (5400, 12)], start_hour=17)
    if name == "pv_day":  # 4 EVSEs on 3x25 A with 11 kWp PV and clouds
        T = int((hours or 8) * 3600)
        slots = [Slot(16000, 0), Slot(16000, 1), Slot(16000, 2), Slot(32000, 0)]
        cars = gen_cars(rng, slots, T, 8, 0.6, (1, 4))
        house = gen_house(rng, T, (1500, 2000, 1200),
                          {"kettle": 0.6, "microwave": 0.5, "washer": 0.3, "dryer": 0.2, "heatpump": 0.5})
        pv = gen_pv(rng, T, 16000, 9, 0.35)
        return Scenario(name, T, 25000, 1000, 0, slots, cars, house, pv, start_hour=9)
    if name == "fleet":  # depot: 12 EVSEs on 3x63 A, EVSE feeder 50 A, two priorities
        T = int((hours or 8) * 3600)
        slots = [Slot(32000 if i % 3 == 0 else 16000, i % 3, prio=1 if i < 4 else 2) for i in range(12)]
        cars = gen_cars(rng, slots, T, 26, 0.7, (1, 4), one_phase_share=0.25)
        house = gen_house(rng, T, (8000, 9000, 7000), {"heatpump": 2, "oven": 0.5, "kettle": 3})
        return Scenario(name, T, 63000, 2000, 50000, slots, cars, house, [0] * T, start_hour=7,
                        dropouts=[(7200, 3)])
    if name == "faults":  # noisy house, meter dropouts beyond meter_timeout, EVSEs offline
        T = int((hours or 3) * 3600)
        slots = [Slot(16000, i % 3, used_phases=0) for i in range(5)]
        cars = gen_cars(rng, slots, T, 8, 0.4, (1, 3), pause_prob=0.6)
        house = gen_house(rng, T, (4000, 3000, 3500),
                          {"kettle": 3, "microwave": 2, "hob": 1, "washer": 1, "dryer": 0.5})
        drop = []
        t = 300
        while t < T - 100:
            drop.append((t, rng.choice((2, 5, 8, 15, 30))))
            t += rng.randint(400, 1500)
        off = []
        t = 500
        while t < T - 100:
            off.append((rng.randrange(5), t, rng.choice((5, 20, 60))))
            t += rng.randint(600, 2000)
        return Scenario(name, T, 32000, 1500, 0, slots, cars, house, [0] * T, dropouts=drop,
                        offline=off, start_hour=18)
    if name == "pv_surplus":  # 3 EVSEs with phase switching charging from solar surplus only:
        # 6 kWp with clouds and a small house, so the surplus often lies between the
        # 1-phase (1.4 kW) and the 3-phase minimum (4.1 kW)
        T = int((hours or 10) * 3600)
        slots = [Slot(16000, r, psw=True) for r in range(3)]
        cars = gen_cars(rng, slots, T, 6, 0.3, (4, 9), one_phase_share=0.0, pause_prob=0.1)  # 3-phase cars
        house = gen_house(rng, T, (1200, 1500, 1000),
                          {"kettle": 0.5, "microwave": 0.4, "washer": 0.2, "heatpump": 0.3})
        pv = gen_pv(rng, T, 8700, 8, 0.4)
        return Scenario(name, T, 25000, 1000, 0, slots, cars, house, pv, start_hour=8, solar=True)
    raise KeyError(name)


SCENARIOS = ("evening", "pv_day", "fleet", "faults", "pv_surplus")


# ------------------------------------------------------------------------ controllers
class Ours:
    name = "ours"
    psw = True  # phase switching where the slot has it

    def __init__(self, scn, pause_min_s=PAUSE_MIN, meter_timeout=10):
        self.viol = 0
        self.slots = scn.slots
        self.pause_min_ms = pause_min_s * 1000
        n = len(scn.slots)
        b = self.b = balancer.Balancer(n)
        b.max_total_current = scn.max_total
        b.reserve_current = scn.reserve
        b.max_total_evse_current = scn.evse_cap
        b.meter_timeout_ms = meter_timeout * 1000
        b.max_phase_skew = scn.skew
        b.phase_switch_min_ms = PSW_MIN * 1000
        self.rules = [{"days": 127, "mode": 5, "udur": SOLAR_UDUR}] if scn.solar else None
        code = dict((reasons.reason_text(c), c) for c in range(balancer.R_RULE))
        self.fixed = (code["offline: share held"], code["disabled: min current"])  # fixed shares
        self.free = code["disabled: no limit"]  # unmanaged

    def step(self, t, grid, evse):
        b = self.b
        if grid is not None:
            b.set_grid(grid[0], grid[1], grid[2], t * 1000 & 0x3FFFFFFF)
        for i, (st, cur, e, sw) in enumerate(evse):
            s = self.slots[i]
            b.set_evse(i, st, True, s.used_phases, s.rot, MIN, s.max_cur, s.prio, self.pause_min_ms, 0, 0, e,
                       cur[0], cur[1], cur[2], self.rules, None, sw if self.psw else sw & 6)
        b.balance(t * 1000 & 0x3FFFFFFF)
        # the safety invariant, checked every cycle
        for p in range(3):
            fx = m = 0
            for i in range(b.n):
                r = b.reason[i]
                if (b.phases[i] >> 3 + p) & 1 and r != self.free:
                    if r in self.fixed:
                        fx += b.limit[i]
                    else:
                        m += b.limit[i]
            if m > max(0, b.budget[p] - fx):
                self.viol += 1
        return b.limit

    def want_1p(self, i):
        return self.b.want_1p[i]


class OursNoSwitch(Ours):
    """The same without phase switching (the relay stays on three phases)."""
    name = "ours-3p"
    psw = False


class _Baseline:
    """Shared by the baselines: budget from the same readings, failsafe, pause timers."""

    def __init__(self, scn, pause_min_s=PAUSE_MIN, meter_timeout=10):
        self.scn = scn
        self.n = len(scn.slots)
        self.sf = 0  # solar surplus from the readings, smoothed like ours (1/8 per cycle)
        self.limit = [0] * self.n
        self.pause_until = [0] * self.n
        self.last_grid = -10 ** 9
        self.other = [0, 0, 0]
        self.pause_min = pause_min_s
        self.timeout = meter_timeout
        self.phases = [0] * self.n  # detected EVSE phase masks

    def budget(self, t, grid, evse):
        scn = self.scn
        for i, (st, cur, e, _sw) in enumerate(evse):
            if st in (3, 4):
                m = sum(1 << k for k in range(3) if cur[k] > 1500)
                if m:
                    self.phases[i] = m
            elif st == 1:
                self.phases[i] = 0
        if grid is not None:
            self.last_grid = t
            ev = [0, 0, 0]
            for i, (st, cur, e, _sw) in enumerate(evse):
                if st != 6:
                    for k in range(3):
                        ev[ROTS[scn.slots[i].rot][k]] += cur[k]
            self.other = [grid[p] - ev[p] for p in range(3)]
        fs = t - self.last_grid > self.timeout
        self.sf += (-sum(self.other) - self.sf) / 8.0  # solar surplus, mA summed over the phases
        b = []
        for p in range(3):
            x = scn.max_total - scn.reserve - self.other[p]
            if scn.evse_cap:
                x = min(x, scn.evse_cap)
            b.append(max(0, x))
        return b, fs

    def gm(self, i):
        s = self.scn.slots[i]
        return gmask_of(s.used_phases or self.phases[i] or 7, s.rot)

    def nph(self, i):
        return bin(self.gm(i)).count("1")

    def want_1p(self, i):
        return 0  # no phase switching


class EqualShare(_Baseline):
    name = "equal"

    def __init__(self, scn, pause_min_s=60, meter_timeout=10):  # SmartEVSE: 60 s charge delay
        _Baseline.__init__(self, scn, pause_min_s, meter_timeout)

    def step(self, t, grid, evse):
        bud, fs = self.budget(t, grid, evse)
        conn = [i for i, (st, c, e, _sw) in enumerate(evse) if st in (2, 3, 4)]
        out = self.limit
        for i, (st, c, e, _sw) in enumerate(evse):
            if st == 6:
                continue
            if i not in conn:
                out[i] = 0
        if not conn:
            return out
        if fs:
            for i in conn:
                out[i] = MIN
            return out
        share = min(bud) // len(conn) // 100 * 100
        if self.scn.solar:  # solar mode: the surplus shared over the cars' phases
            share = min(share, int(max(0, self.sf)) // sum(self.nph(i) for i in conn) // 100 * 100)
        if share < MIN:
            for i in conn:
                if out[i]:
                    self.pause_until[i] = t + self.pause_min
                out[i] = 0
            return out
        for i in conn:
            if t < self.pause_until[i]:
                out[i] = 0
            else:
                out[i] = min(share, self.scn.slots[i].max_cur // 100 * 100)
        return out


class StrictPriority(_Baseline):
    name = "priority"

    def step(self, t, grid, evse):
        bud, fs = self.budget(t, grid, evse)
        out = self.limit
        order = sorted((self.scn.slots[i].prio, i) for i, (st, c, e, _sw) in enumerate(evse) if st in (2, 3, 4))
        for i, (st, c, e, _sw) in enumerate(evse):
            if st not in (2, 3, 4, 6):
                out[i] = 0
        room = list(bud)
        sur = int(max(0, self.sf)) if self.scn.solar else 1 << 30  # solar mode: the surplus in turn
        for i, (st, c, e, _sw) in enumerate(evse):  # offline EVSEs keep their limit reserved
            if st == 6:
                gm = self.gm(i)
                for p in range(3):
                    if (gm >> p) & 1:
                        room[p] -= out[i]
        for _, i in order:
            gm = self.gm(i)
            if fs:
                a = MIN
            else:
                a = min([room[p] for p in range(3) if (gm >> p) & 1] + [self.scn.slots[i].max_cur,
                                                                         sur // self.nph(i)])
                a = a // 100 * 100
            if a < MIN or t < self.pause_until[i]:
                if out[i]:
                    self.pause_until[i] = t + self.pause_min
                out[i] = 0
                continue
            out[i] = a
            sur -= a * self.nph(i)
            for p in range(3):
                if (gm >> p) & 1:
                    room[p] -= a
        return out


STRATEGIES = (Ours, EqualShare, StrictPriority)


# ----------------------------------------------------------------------------- oracle
def waterfill(bud_u, cars):
    """Optimal allocation in 100 mA units: cars = [(gm, floor, cap, prio)] in service
    order; admit at the floors, then progressive equal filling by priority."""
    room = list(bud_u)
    adm = []
    alloc = [0] * len(cars)
    for k, (gm, f, c, pr) in enumerate(cars):
        if c >= f and all(room[p] >= f for p in range(3) if (gm >> p) & 1):
            adm.append(k)
            alloc[k] = f
            for p in range(3):
                if (gm >> p) & 1:
                    room[p] -= f
    prios = sorted(set(cars[k][3] for k in adm))
    for pr in prios:
        live = [k for k in adm if cars[k][3] == pr and alloc[k] < cars[k][2]]
        while live:
            lv = min(alloc[k] for k in live)
            rising = [k for k in live if alloc[k] == lv]
            nxt = min([alloc[k] for k in live if alloc[k] > lv] + [cars[k][2] for k in rising])
            cnt = [sum(1 for k in rising if (cars[k][0] >> p) & 1) for p in range(3)]
            step = nxt - lv
            for p in range(3):
                if cnt[p]:
                    step = min(step, room[p] // cnt[p])
            if step <= 0:
                sat = [p for p in range(3) if cnt[p] and room[p] < cnt[p]]
                for k in rising:
                    if any((cars[k][0] >> p) & 1 for p in sat):
                        if all(room[p] > 0 for p in range(3) if (cars[k][0] >> p) & 1):
                            alloc[k] += 1
                            for p in range(3):
                                if (cars[k][0] >> p) & 1:
                                    room[p] -= 1
                        live.remove(k)
                continue
            for k in rising:
                alloc[k] += step
                for p in range(3):
                    if (cars[k][0] >> p) & 1:
                        room[p] -= step
            live = [k for k in live if alloc[k] < cars[k][2]]
    return alloc


# -------------------------------------------------------------------- the MILP optimum
class Optimum:
    """The per-cycle optimum as a mixed-integer programme (SciPy's milp, HiGHS): the
    most current x phases the cars can draw this second, each car off or between its
    minimum and maximum (its demand and max_charging_cur; a car that wants less than
    its minimum draws exactly that much once allowed its minimum), on one or three
    phases where the EVSE can switch, every grid phase within the budget (fuse
    - reserve - true other load, max_total_evse_current), every pair of grid phases
    within max_phase_skew (or the other load's own difference), and in a solar-only
    scenario all of it from the surplus. An upper bound by construction: every
    allocation any controller can write is a feasible point. Reported is HiGHS's dual
    bound (the optimum within a relative gap of 1e-4, never below it).

    Fast paths, exact: everyone at their maximum in their best mode fits (no
    programme); the LP relaxation's solution is already one that the integer
    programme allows; the same inputs as a cycle before (cache)."""

    def __init__(self):
        self.cache = {}
        self.solved = self.lp = self.fast = self.hits = 0
        self.t_cpu = 0.0

    def __call__(self, bud, cars, skew=0, other=(0, 0, 0), surplus=None):
        """cars: [((mask, nph, lo, hi), ...) per car: one tuple per phase mode] -> mA x phases."""
        if not cars:
            return 0.0
        # fast path: every car at its maximum in its best mode
        best = [max(modes, key=lambda m: m[1] * m[3]) for modes in cars]
        if self._fits(best, bud, skew, other, surplus):
            self.fast += 1
            return float(sum(m[1] * m[3] for m in best))
        key = (tuple(bud), tuple(cars), skew, tuple(other) if skew else None, surplus)
        v = self.cache.get(key)
        if v is not None:
            self.hits += 1
            return v
        t0 = time.perf_counter()
        v = self._solve(bud, cars, skew, other, surplus)
        self.t_cpu += time.perf_counter() - t0
        if len(self.cache) > 200000:
            self.cache.clear()
        self.cache[key] = v
        return v

    @staticmethod
    def _fits(sel, bud, skew, other, surplus):
        load = [0, 0, 0]
        tot = 0
        for mask, nph, lo, hi in sel:
            tot += nph * hi
            for p in range(3):
                if mask >> p & 1:
                    load[p] += hi
        if any(load[p] > bud[p] for p in range(3)):
            return False
        if surplus is not None and tot > surplus:
            return False
        if skew:
            for p in range(3):
                for q in range(3):
                    a = other[p] - other[q]
                    if p != q and load[p] - load[q] > max(skew, a) - a:
                        return False
        return True

    def _solve(self, bud, cars, skew, other, surplus):
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp
        cols = [(i, m) for i, modes in enumerate(cars) for m in modes]
        k = len(cols)
        nrow = 3 + (6 if skew else 0) + (1 if surplus is not None else 0)
        # the LP relaxation first: x only, a car's modes share it (sum of x / max <= 1)
        A = np.zeros((nrow + len(cars), k))
        lb = np.full(nrow + len(cars), -np.inf)
        ub = np.zeros(nrow + len(cars))
        r = 0
        for p in range(3):
            for j, (i, m) in enumerate(cols):
                A[r, j] = m[0] >> p & 1
            ub[r] = bud[p]
            r += 1
        if skew:
            for p in range(3):
                for q in range(3):
                    if p != q:
                        for j, (i, m) in enumerate(cols):
                            A[r, j] = (m[0] >> p & 1) - (m[0] >> q & 1)
                        a = other[p] - other[q]
                        ub[r] = max(skew, a) - a
                        r += 1
        if surplus is not None:
            for j, (i, m) in enumerate(cols):
                A[r, j] = m[1]
            ub[r] = surplus
            r += 1
        for j, (i, m) in enumerate(cols):
            A[r + i, j] = 1.0 / m[3]
        ub[r:] = 1
        c = -np.array([m[1] for i, m in cols], dtype=float)
        hi = np.array([m[3] for i, m in cols], dtype=float)
        res = milp(c, constraints=LinearConstraint(A, lb, ub), bounds=Bounds(np.zeros(k), hi))
        if res.status == 0:
            x = res.x
            ok = True
            for i in range(len(cars)):
                on = [j for j in range(k) if cols[j][0] == i and x[j] > 1e-6]
                if len(on) > 1 or (on and x[on[0]] < cols[on[0]][1][2] - 1e-6):
                    ok = False
                    break
            if ok:
                self.lp += 1
                return -res.fun
        # the integer programme: x, then z (on in that mode)
        A2 = np.zeros((nrow + len(cars) + 2 * k, 2 * k))
        A2[:nrow, :k] = A[:nrow]
        lb2 = np.full(A2.shape[0], -np.inf)
        ub2 = np.full(A2.shape[0], np.inf)
        ub2[:nrow] = ub[:nrow]
        r = nrow
        for j, (i, m) in enumerate(cols):
            A2[r + i, k + j] = 1
        ub2[r:r + len(cars)] = 1
        r += len(cars)
        for j, (i, m) in enumerate(cols):
            A2[r, j] = 1
            A2[r, k + j] = -m[3]  # x <= max * z
            ub2[r] = 0
            A2[r + 1, j] = 1
            A2[r + 1, k + j] = -m[2]  # x >= min * z
            lb2[r + 1] = 0
            r += 2
        c2 = np.concatenate([c, np.zeros(k)])
        integ = np.concatenate([np.zeros(k), np.ones(k)])
        res = milp(c2, constraints=LinearConstraint(A2, lb2, ub2), integrality=integ,
                   bounds=Bounds(np.zeros(2 * k), np.concatenate([hi, np.ones(k)])),
                   options={"mip_rel_gap": 1e-4})
        self.solved += 1
        if res.status != 0 or res.x is None:
            raise RuntimeError("milp: %s" % res.message)
        v = -getattr(res, "mip_dual_bound", res.fun)
        return max(v, -res.fun)


# ------------------------------------------------------------------------------ plant
class CarState:
    def __init__(self, spec, slot):
        self.spec = spec
        self.gm = gmask_of(spec.phases, slot.rot)
        self.nph = bin(self.gm).count("1")
        self.cur = 0  # mA per phase
        self.wh = 0.0
        self.seen = []  # limits seen, for the response delay
        self.energy_opt = 0.0
        self.energy_opt2 = 0.0
        # the oracles' knowledge of the car's phases: configured, or seen once it drew
        self.emask = slot.used_phases or 7
        self.known = self.known2 = bool(slot.used_phases)
        self.gm_unknown = gmask_of(self.emask, slot.rot)
        self.opt2_on = False
        self.opt2_until = 0
        self.known_m = self.known  # the MILP optimum's knowledge of the phases
        self.gm1 = gmask_of(1, slot.rot)  # on one phase (the relay leaves EVSE L1)
        self.can1p = slot.psw and spec.phases == 7  # a 3-phase car on a switching EVSE
        self.on = False
        self.started = False
        self.events = 0

    def demand(self, t):
        s = self.spec
        if self.wh >= s.need_wh:
            return 0
        for a, b in s.pauses:
            if a <= t < b:
                return 0
        frac = (s.need_wh - self.wh) / s.need_wh
        d = s.cmax
        if frac < 0.2:  # taper near full
            d = int(s.cmax * max(0.15, frac / 0.2))
        return d


def simulate(scn, Strategy, seed=1, record=False, meter_timeout=10, optimum=True, trace=None):
    """One strategy through one world; returns the metrics (see the module docstring).
    optimum=False leaves out the MILP optimum (the safety tests need no utilisation);
    trace: a list that gets (t, drawn, surplus, optimum) every second (mA x phases)."""
    ctl = Strategy(scn, meter_timeout=meter_timeout)
    n = len(scn.slots)
    rng = random.Random("noise-%s-%d" % (scn.name, seed))  # same noise for every strategy
    T = scn.T
    drop = [False] * T
    for a, d in scn.dropouts:
        for t in range(a, min(T, a + d)):
            drop[t] = True
    offl = [[False] * T for _ in range(n)]
    for s, a, d in scn.offline:
        for t in range(a, min(T, a + d)):
            offl[s][t] = True
    arrivals = {}
    for c in scn.cars:
        arrivals.setdefault(c.arrive, []).append(c)
    occ = [None] * n
    done = []
    written = [0] * n  # what the EVSE offers
    relay1p = [False] * n  # the EVSE's relay on one phase (EVSE L1)
    seq = [0] * n  # the control task's switching sequence: 0 idle, 1 stopping, 2 switched, waiting 5 s
    seq_t = [0] * n
    switches = 0
    over = 0
    excess_total = 0
    worst = 0
    episode = [0, 0, 0]
    exposed = [None, None, None]
    skew_over = 0  # skew violation samples
    skew_exposed = None
    energy = 0.0
    energy_sur = 0.0  # energy from solar surplus
    energy_opt = 0.0
    energy_opt2 = 0.0
    milp_opt = 0.0  # the MILP optimum, summed
    milp_got = 0.0  # what we got of it, per second at most the optimum
    milp_clip = 0.0  # what we got above it (transients: what the fuse or skew took)
    react = []
    pending_step = None
    unseen = False  # a house step not yet shown by a grid reading
    lost = 0  # s the grid meter has not been readable
    ts_rec = {"grid": [[], [], []], "cars": [[] for _ in range(n)], "limit": [], "budget": []} if record else None
    prev_house = [scn.house[p][0] for p in range(3)]
    lim_total = scn.max_total
    opt = Optimum() if optimum else None
    kw = V / 1e6 / 3600.0  # mA x phases for 1 s -> kWh
    t_cpu = 0.0
    cycles = 0
    for t in range(T):
        for c in arrivals.get(t, ()):
            if occ[c.slot] is None:
                occ[c.slot] = CarState(c, scn.slots[c.slot])
        for i in range(n):
            cs = occ[i]
            if cs is not None and t >= cs.spec.depart:
                done.append(cs)
                occ[i] = None
        # cars follow the limits (none while the control task switches the relay)
        e_t = 0  # mA x phases drawn this second
        for i in range(n):
            cs = occ[i]
            if cs is None:
                continue
            cs.seen.append(0 if seq[i] else written[i])
            lim_seen = cs.seen[-1 - cs.spec.delay] if len(cs.seen) > cs.spec.delay else 0
            if len(cs.seen) > 4:
                del cs.seen[0]
            tgt = min(lim_seen, cs.demand(t)) if lim_seen >= MIN else 0
            d = tgt - cs.cur
            r = cs.spec.rate
            cs.cur += max(-r, min(r, d))
            nph = 1 if relay1p[i] else cs.nph
            cs.wh += cs.cur * nph * V / 1000.0 / 3600.0 / 1000.0 * 1000.0  # mA -> Wh per s
            e_t += cs.cur * nph
        energy += e_t * kw
        # true grid
        hp = [scn.house[p][t] - scn.pv[t] for p in range(3)]
        true = list(hp)
        for i in range(n):
            cs = occ[i]
            if cs is not None:
                gm = cs.gm1 if relay1p[i] else cs.gm
                for p in range(3):
                    if (gm >> p) & 1:
                        true[p] += cs.cur
        sur = max(0, -sum(hp))  # solar surplus, mA summed over the phases
        energy_sur += min(e_t, sur) * kw
        # readings
        grid = None
        if not drop[t]:
            grid = [int(true[p] + rng.uniform(-1, 1) * (abs(true[p]) * 0.01 + 100)) for p in range(3)]
        evse = []
        for i in range(n):
            cs = occ[i]
            sl = scn.slots[i]
            sw = (1 if sl.psw else 0) | (2 if relay1p[i] else 0) | (4 if seq[i] else 0)
            if offl[i][t]:
                evse.append((6, (0, 0, 0), 0, sw))
                continue
            if cs is None:
                evse.append((1, (0, 0, 0), 0, sw))
                continue
            st = 3 if cs.cur > 500 else 2
            em = 1 if relay1p[i] else cs.spec.phases
            cur = tuple(int(cs.cur + rng.uniform(-1, 1) * (cs.cur * 0.005 + 50)) if (em >> k) & 1
                        else int(rng.uniform(0, 30)) for k in range(3))
            evse.append((st, cur, int(cs.wh), sw))
        # over-limit accounting (true currents, this second)
        for p in range(3):  # (what the house alone puts over the fuse is no EVSE's doing)
            x = true[p] - (lim_total if hp[p] < lim_total else hp[p])
            if x > 0:
                episode[p] += x
                excess_total += x
                if exposed[p] is None and grid is not None:
                    exposed[p] = t
                if exposed[p] is not None and t - exposed[p] >= GRACE:
                    over += 1
            else:
                worst = max(worst, episode[p])
                episode[p] = 0
                exposed[p] = None
        # skew: the spread of the grid phases over max(max_phase_skew, the house's own),
        # beyond the meters' accuracy (1 % + 100 mA a phase), seen for >= GRACE s
        if scn.skew:
            hi_p = max(range(3), key=lambda p: true[p])
            lo_p = min(range(3), key=lambda p: true[p])
            tol = 0.01 * (abs(true[hi_p]) + abs(true[lo_p])) + 200
            if true[hi_p] - true[lo_p] > max(scn.skew, max(hp) - min(hp)) + tol:
                if skew_exposed is None and grid is not None:
                    skew_exposed = t
                if skew_exposed is not None and t - skew_exposed >= GRACE:
                    skew_over += 1
            else:
                skew_exposed = None
        # a house step that overloads what is commanded (before the controller acts)
        step_up = any(scn.house[p][t] - prev_house[p] >= 3000 for p in range(3))
        prev_house = [scn.house[p][t] for p in range(3)]
        # (counted from the first grid reading that shows it: a step inside a meter
        # dropout is seen by no controller before the meter is back)
        unseen = unseen or step_up
        if pending_step is None and unseen and grid is not None:
            unseen = False
            if commanded_over(occ, written, hp, lim_total, t, relay1p):
                pending_step = t
        # the controller
        c0 = time.perf_counter()
        lim = ctl.step(t, grid, evse)
        t_cpu += time.perf_counter() - c0
        cycles += 1
        for i in range(n):
            if not offl[i][t]:
                written[i] = lim[i]
        # the control task's phase switching (INTEGRATIONS.md 5): charging_enable 0,
        # wait until the car draws < 1 A (at most 10 s), relay, wait 5 s, enable again
        for i in range(n):
            cs = occ[i]
            if not scn.slots[i].psw or offl[i][t]:
                continue
            if seq[i] == 1 and (cs is None or cs.cur < 1000 or t - seq_t[i] >= 10):
                relay1p[i] = not relay1p[i]
                seq[i] = 2
                seq_t[i] = t
                switches += 1
            elif seq[i] == 2 and t - seq_t[i] >= 5:
                seq[i] = 0
            elif not seq[i] and bool(ctl.want_1p(i)) != relay1p[i]:
                seq[i] = 1
                seq_t[i] = t
        # reaction: cycles until the written limits fit again (0 = in the same cycle)
        if pending_step is not None:
            if not commanded_over(occ, written, hp, lim_total, t, relay1p):
                react.append(t - pending_step)
                pending_step = None
            elif t - pending_step > 60:
                react.append(t - pending_step)
                pending_step = None
        # oracles (held to what any controller must respect: the minimum, the phases as
        # far as they can be known, failsafe_current while the grid meter is lost)
        lost = lost + 1 if drop[t] else 0
        fs_cap = (MIN + 99) // 100 if lost > meter_timeout else 1 << 30
        bud = []
        for p in range(3):
            x = scn.max_total - scn.reserve - hp[p]
            if scn.evse_cap:
                x = min(x, scn.evse_cap)
            bud.append(max(0, x) // 100)
        want = [(i, occ[i]) for i in range(n) if occ[i] is not None and occ[i].demand(t) > 0]
        if opt is not None:  # the MILP optimum of this second
            cars = []
            for i, cs in want:
                dem = (min(cs.demand(t), scn.slots[i].max_cur) + 99) // 100 * 100
                hi = min(dem, fs_cap * 100)
                lo = min(MIN, hi)
                modes = ((cs.gm if cs.known_m else cs.gm_unknown, cs.nph, lo, hi),)
                if cs.can1p:
                    modes += ((cs.gm1, 1, lo, hi),)
                cars.append(modes)
            o = opt([x * 100 for x in bud], cars, scn.skew, hp, (sur + 99) // 100 * 100 if scn.solar else None)
            for i, cs in want:
                cs.known_m = cs.known_m or cs.cur > 0  # (phases seen once the car drew)
            got = min(e_t, sur) if scn.solar else e_t
            milp_opt += o * kw
            milp_got += min(got, o) * kw
            milp_clip += max(0, got - o) * kw
            if trace is not None:
                trace.append((t, e_t, sur, o))
        want.sort(key=lambda w: (scn.slots[w[0]].prio, w[1].energy_opt, w[0]))  # fair: least served first
        cars = [(cs.gm if cs.known else cs.gm_unknown, MIN // 100,
                 min(fs_cap, (min(cs.demand(t), scn.slots[i].max_cur) + 99) // 100), scn.slots[i].prio)
                for i, cs in want]
        al = waterfill(bud, cars)
        for k, (i, cs) in enumerate(want):
            d = min(al[k] * 100, cs.demand(t))
            cs.known = cs.known or d > 0
            e = d * cs.nph * V / 1e6 / 3600.0
            cs.energy_opt += e
            energy_opt += e
        # the same oracle held to the spec's pause_min_time: a car it stops stays
        # stopped PAUSE_MIN s, running cars keep running first (no per-second rotation)
        want2 = [w for w in want if t >= w[1].opt2_until]
        want2.sort(key=lambda w: (scn.slots[w[0]].prio, not w[1].opt2_on, w[1].energy_opt2, w[0]))
        cars2 = [(cs.gm if cs.known2 else cs.gm_unknown, MIN // 100,
                  min(fs_cap, (min(cs.demand(t), scn.slots[i].max_cur) + 99) // 100), scn.slots[i].prio)
                 for i, cs in want2]
        al2 = waterfill(bud, cars2)
        on2 = set()
        for k, (i, cs) in enumerate(want2):
            if al2[k]:
                on2.add(i)
                cs.known2 = True
            e = min(al2[k] * 100, cs.demand(t)) * cs.nph * V / 1e6 / 3600.0
            cs.energy_opt2 += e
            energy_opt2 += e
        for i in range(n):
            cs = occ[i]
            if cs is not None:
                if cs.opt2_on and i not in on2 and cs.demand(t) > 0:
                    cs.opt2_until = t + PAUSE_MIN
                cs.opt2_on = i in on2
        # events
        for i in range(n):
            cs = occ[i]
            if cs is None:
                continue
            on = written[i] >= MIN
            if on != cs.on:
                if cs.started:
                    cs.events += 1
                cs.on = on
                cs.started = cs.started or on
        if record:
            for p in range(3):
                ts_rec["grid"][p].append(true[p])
            for i in range(n):
                ts_rec["cars"][i].append(occ[i].cur if occ[i] is not None else 0)
            ts_rec["limit"].append(lim_total)
            ts_rec["budget"].append([x * 100 for x in bud])
    for p in range(3):
        worst = max(worst, episode[p])
    sessions = done + [cs for cs in occ if cs is not None]
    hours = sum(max(1, min(T, cs.spec.depart) - cs.spec.arrive) for cs in sessions) / 3600.0
    events = sum(cs.events for cs in sessions)
    # fairness over sessions of >= 30 min (two rotation turns; shorter ones cannot be
    # served fairly by any policy that rotates in 15-minute turns)
    longs = [cs for cs in sessions if min(T, cs.spec.depart) - cs.spec.arrive >= 1800]
    ratios = [cs.wh / (cs.energy_opt * 1000.0) for cs in longs if cs.energy_opt > 0.05]
    raw = [cs.wh for cs in longs]
    return {
        "scenario": scn.name, "strategy": ctl.name, "cycles": cycles, "over": over,
        "worst": worst // 1000 * 1000, "excess": excess_total, "energy": energy, "energy_sur": energy_sur,
        "util": 100.0 * energy / energy_opt if energy_opt else 100.0,
        "util_pm": 100.0 * energy / energy_opt2 if energy_opt2 else 100.0,
        "util_milp": 100.0 * milp_got / milp_opt if milp_opt else 100.0, "opt": milp_opt, "clip": milp_clip,
        "evh": events / hours if hours else 0.0, "events": events, "switches": switches, "skew": skew_over,
        "jain": jain(ratios), "jainE": jain(raw),
        "react_mean": sum(react) / len(react) if react else 0.0, "react_max": max(react) if react else 0,
        "react_n": len(react), "invariant_violations": getattr(ctl, "viol", 0), "us_per_cycle": 1e6 * t_cpu / cycles,
        "rec": ts_rec, "milp": (opt.solved, opt.lp, opt.fast, opt.hits, opt.t_cpu) if opt else None,
    }


def commanded_over(occ, written, hp, lim_total, t, relay1p=None):
    """Would the written limits (as far as the cars want them) overload a phase?
    (Over the fuse, or over the house alone where that is over the fuse already.)"""
    cmd = list(hp)
    for i, cs in enumerate(occ):
        if cs is not None and written[i] >= MIN:
            d = min(written[i], cs.demand(t))
            gm = cs.gm1 if relay1p and relay1p[i] else cs.gm
            for p in range(3):
                if (gm >> p) & 1:
                    cmd[p] += d
    return any(cmd[p] > max(lim_total, hp[p]) for p in range(3))


def jain(xs):
    xs = [x for x in xs if x >= 0]
    if not xs:
        return 1.0
    s = sum(xs)
    q = sum(x * x for x in xs)
    return s * s / (len(xs) * q) if q else 1.0


def run_all(names=SCENARIOS, hours=None, seed=1, record=(), optimum=True):
    res = []
    for name in names:
        scn = scenario(name, hours, seed)
        strategies = STRATEGIES + ((OursNoSwitch,) if any(sl.psw for sl in scn.slots) else ())
        for S in strategies:
            res.append(simulate(scn, S, seed, record=name in record, optimum=optimum))
    return res


def table(res):
    hdr = ("scenario", "strategy", "cycles", "over", "skew", "worst mA*s", "energy kWh", "surplus kWh",
           "util % MILP", "util % (old)", "util_pm %", "ev/car/h", "events", "psw", "jain", "jainE",
           "react cyc (n)", "us/cycle")
    rows = [hdr]
    for r in res:
        rows.append((r["scenario"], r["strategy"], str(r["cycles"]), str(r["over"]), str(r["skew"]),
                     str(r["worst"]), "%.1f" % r["energy"], "%.1f" % r["energy_sur"], "%.1f" % r["util_milp"],
                     "%.1f" % r["util"], "%.1f" % r["util_pm"], "%.2f" % r["evh"], str(r["events"]),
                     str(r["switches"]), "%.3f" % r["jain"], "%.3f" % r["jainE"],
                     "%.1f/%d (%d)" % (r["react_mean"], r["react_max"], r["react_n"]),
                     "%.0f" % r["us_per_cycle"]))
    w = [max(len(row[k]) for row in rows) for k in range(len(hdr))]
    out = []
    for k, row in enumerate(rows):
        out.append("  ".join(c.rjust(w[j]) if j > 1 else c.ljust(w[j]) for j, c in enumerate(row)))
        if k == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def summary(res):
    """Totals over all scenarios per strategy and the targets."""
    by = {}
    for r in res:
        s = by.setdefault(r["strategy"], {"over": 0, "skew": 0, "energy": 0.0, "ev": 0, "util": [], "milp": [],
                                           "jain": [], "cycles": 0})
        s["over"] += r["over"]
        s["skew"] += r["skew"]
        s["energy"] += r["energy"]
        s["ev"] += r["events"]
        s["util"].append(r["util"])
        s["milp"].append(r["util_milp"])
        s["jain"].append(r["jain"])
        s["cycles"] += r["cycles"]
    lines = []
    for k, s in by.items():
        lines.append("%-9s cycles %6d  over-limit %d  skew %d  energy %.1f kWh  util vs MILP min %.1f %% "
                     "(old %.1f %%)  start/stop events %d  jain min %.3f" % (
                         k, s["cycles"], s["over"], s["skew"], s["energy"], min(s["milp"]), min(s["util"]),
                         s["ev"], min(s["jain"])))
    o = by.get("ours")
    e = by.get("equal")
    if o and e:
        lines.append("start/stop events: equal share / ours = %.1fx; per kWh delivered = %.1fx" % (
            e["ev"] / max(1, o["ev"]), (e["ev"] / max(1e-9, e["energy"])) / max(1e-9, o["ev"] / o["energy"])))
    a = [r for r in res if r["strategy"] == "ours" and r["scenario"] == "pv_surplus"]
    b = [r for r in res if r["strategy"] == "ours-3p" and r["scenario"] == "pv_surplus"]
    if a and b:
        lines.append("pv_surplus: energy from surplus %.1f kWh with phase switching, %.1f kWh without = %+.0f %%" % (
            a[0]["energy_sur"], b[0]["energy_sur"], 100.0 * (a[0]["energy_sur"] / max(1e-9, b[0]["energy_sur"]) - 1)))
    return "\n".join(lines)


def plots(res, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not importable: plots skipped")
        return []
    files = []
    recs = {}
    for r in res:
        if r["rec"]:
            recs.setdefault(r["scenario"], []).append(r)
    for name, rs in recs.items():
        fig, axes = plt.subplots(len(rs), 2, figsize=(15, 3.2 * len(rs)), sharex=True)
        for row, r in enumerate(rs):
            rec = r["rec"]
            hrs = [t / 3600.0 for t in range(len(rec["limit"]))]
            ax = axes[row][0]
            for p in range(3):
                ax.plot(hrs, [v / 1000.0 for v in rec["grid"][p]], lw=0.6, label="L%d" % (p + 1))
            ax.plot(hrs, [v / 1000.0 for v in rec["limit"]], "k--", lw=1, label="max_total_current")
            ax.set_ylabel("grid A")
            ax.set_title("%s / %s: grid current per phase" % (name, r["strategy"]))
            ax.legend(loc="upper right", fontsize=7, ncol=4)
            ax = axes[row][1]
            for i, series in enumerate(rec["cars"]):
                ax.plot(hrs, [v / 1000.0 for v in series], lw=0.7, label="E%d" % (i + 1))
            ax.set_ylabel("car A/phase")
            ax.set_title("%s / %s: current per EVSE (util %.1f %% of the MILP optimum, %d start/stop)" % (
                name, r["strategy"], r["util_milp"], r["events"]))
            ax.legend(loc="upper right", fontsize=6, ncol=6)
        for ax in axes[-1]:
            ax.set_xlabel("hours")
        fig.tight_layout()
        f = os.path.join(outdir, "lb_%s.png" % name)
        fig.savefig(f, dpi=90)
        plt.close(fig)
        files.append(f)
    # comparison bars
    names = sorted(set(r["scenario"] for r in res), key=lambda x: SCENARIOS.index(x) if x in SCENARIOS else 9)
    strats = [S.name for S in STRATEGIES]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for ax, key, title in zip(axes, ("util_milp", "evh", "jain"),
                              ("utilisation vs MILP optimum %", "start/stop events per car-hour",
                               "fairness (Jain of energy / fair share)")):
        for k, s in enumerate(strats):
            vals = [next(r[key] for r in res if r["scenario"] == n and r["strategy"] == s) for n in names]
            ax.bar([j + k * 0.27 for j in range(len(names))], vals, width=0.27, label=s)
        ax.set_xticks([j + 0.27 for j in range(len(names))])
        ax.set_xticklabels(names)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    f = os.path.join(outdir, "lb_compare.png")
    fig.savefig(f, dpi=90)
    plt.close(fig)
    files.append(f)
    return files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", action="append", choices=SCENARIOS)
    ap.add_argument("--hours", type=float)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plots", action="store_true", help="write docs/lb_*.png (needs matplotlib)")
    a = ap.parse_args(argv)
    names = a.scenario or SCENARIOS
    t0 = time.perf_counter()
    res = run_all(names, a.hours, a.seed, record=names if a.plots else ())
    print(table(res))
    print()
    print(summary(res))
    print("(%.1f s wall)" % (time.perf_counter() - t0))
    if a.plots:
        for f in plots(res, os.path.join(ROOT, "docs")):
            print("wrote", os.path.relpath(f, ROOT))
    return res


if __name__ == "__main__":
    main()
