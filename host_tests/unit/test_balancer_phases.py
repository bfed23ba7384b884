"""Load balancer: phase switching and max_phase_skew (INTEGRATIONS.md 5), on
CPython and MicroPython. lbsite's plant runs the control task's switching
sequence: where want_1p differs from the relay, 3 cycles busy (sw bit 2, the car
stopped), then the relay switches (sw bit 1)."""
import micropython

from lbsite import car, cyc, mk, sums, why

AUTO = 1  # set_evse sw bits
ONE = 2
SOLAR = {"days": 127, "mode": 5, "udur": 0}  # solar surplus only


def pv(total):
    """A house exporting `total` mA summed over the phases (a 3-phase inverter)."""
    return (-total // 3, -total // 3, -total // 3)


def run(b, t0, t1, house, **kw):
    t = t0
    while t < t1:
        cyc(b, t, house=house, **kw)
        t += 1000
    return t


def test_surplus_below_three_phase_minimum_charges_on_one_phase():
    b = mk(1, 32000, solar_shift=0)
    car(b, 0)  # 3-phase car, 6..16 A
    b.sw[0] = AUTO
    b.rules_e[0] = [SOLAR]
    cyc(b, 0, house=pv(9000))  # 9 A of surplus: 3 A per phase < 6 A, 9 A on one phase
    assert b.want_1p[0] == 1 and b.limit[0] == 0
    cyc(b, 1000, house=pv(9000))
    assert b.limit[0] == 0 and why(b, 0) == "phase switching" and not b.paused[0]
    t = run(b, 2000, 8000, pv(9000))
    assert b.sw[0] == AUTO | ONE and b.phases[0] == 1 | 1 << 3
    assert b.limit[0] == 9000 and why(b, 0) == "rule 1 (solar)"
    # 30 A of surplus: three phases (10 A each) again, after phase_switch_min_time
    # (300 s from the request at t = 0) and 60 s of room
    while t < 300000:
        cyc(b, t, house=pv(30000))
        assert b.want_1p[0] == 1 and b.limit[0] == 16000, t
        t += 1000
    t = run(b, t, 370000, pv(30000))
    assert b.sw[0] == AUTO and b.phases[0] == 7 | 7 << 3 and b.limit[0] == 10000


def test_hysteresis_between_one_and_three_phases():
    b = mk(1, 32000, solar_shift=0, phase_switch_min_ms=0)
    car(b, 0)
    b.sw[0] = AUTO | ONE
    b.rules_e[0] = [SOLAR]
    t = run(b, 0, 400000, pv(18600))  # 6.2 A per phase: < minimum + 300 mA, stays on one
    assert b.sw[0] == AUTO | ONE and b.limit[0] == 16000
    t = run(b, t, t + 70000, pv(21000))  # 7 A per phase: three
    assert b.sw[0] == AUTO and b.limit[0] == 7000
    t = run(b, t, t + 400000, pv(18300))  # 6.1 A per phase: stays on three
    assert b.sw[0] == AUTO and b.limit[0] == 6100
    t = run(b, t, t + 10000, pv(17900))  # below the minimum on three: one at once (udur 0)
    assert b.sw[0] == AUTO | ONE and b.limit[0] == 16000


def test_at_most_one_switch_per_min_time():
    b = mk(1, 32000, solar_shift=0)
    car(b, 0)
    b.sw[0] = AUTO
    b.rules_e[0] = [SOLAR]
    last = None
    n = 0
    mode = b.sw[0]
    for t in range(0, 3600000, 1000):  # the surplus: 100 s 9 A, 100 s 30 A, ...
        cyc(b, t, house=pv(9000 if t // 100000 % 2 == 0 else 30000))
        if b.sw[0] & 4 and not mode & 4:  # a switching sequence starts
            assert last is None or t - last >= 300000, (t, last)
            last = t
            n += 1
        mode = b.sw[0]
    assert 6 <= n <= 13, n


def test_tight_budget_one_phase_and_back():
    b = mk(1, 16000, phase_switch_min_ms=300000)
    car(b, 0)
    b.sw[0] = AUTO
    cyc(b, 0, house=(0, 12000, 12000))  # 4 A left on L2 and L3: not three phases
    assert b.want_1p[0] == 1 and b.limit[0] == 0
    t = run(b, 1000, 8000, (0, 12000, 12000))
    assert b.sw[0] == AUTO | ONE and b.limit[0] == 16000 and b.phases[0] >> 3 == 1
    t = run(b, t, 600000, (0, 0, 0))  # room again: after the min time and the start window
    assert b.sw[0] == AUTO and b.limit[0] == 16000 and b.phases[0] >> 3 == 7


def test_a_request_not_taken_up_lapses():
    b = mk(1, 16000)
    car(b, 0)
    b.sw[0] = AUTO
    cyc(b, 0, house=(0, 12000, 12000), seq=0)  # the control task does not switch
    assert b.want_1p[0] == 1
    t = 1000
    while t < 30000:
        cyc(b, t, house=(0, 12000, 12000), seq=0)
        assert b.limit[0] == 0 and why(b, 0) == "phase switching"
        t += 1000
    cyc(b, t, house=(0, 12000, 12000), seq=0)
    t += 1000
    assert b.want_1p[0] == 0 and why(b, 0) == "paused: phase imbalance"
    while t < 300000:  # asked again only after the min time
        cyc(b, t, house=(0, 12000, 12000), seq=0)
        assert b.want_1p[0] == 0, t
        t += 1000
    run(b, t, t + 2000, (0, 12000, 12000), seq=0)
    assert b.want_1p[0] == 1


def test_switching_car_keeps_its_minimum_reserved():
    b = mk(2, 20000)
    car(b, 0)  # switchable 3-phase car
    car(b, 1, ph=1, mx=32000)  # 1-phase car on L1
    b.sw[0] = AUTO
    t = run(b, 0, 3000, (0, 16000, 16000), seq=0)
    assert b.want_1p[0] == 1 and b.limit[1] == 14000 and b.limit[0] == 0  # 6 A kept on L1
    b.sw[0] = AUTO | 4  # the sequence runs
    cyc(b, t, house=(0, 16000, 16000), seq=0)
    assert b.limit[0] == 0 and why(b, 0) == "phase switching" and b.limit[1] == 14000
    b.sw[0] = AUTO | ONE
    run(b, t + 1000, t + 5000, (0, 16000, 16000))
    assert list(b.limit) == [10000, 10000] and b.phases[0] == 1 | 1 << 3


def test_never_above_the_fuse_while_switching():
    b = mk(4, 25000, solar_shift=0, phase_switch_min_ms=30000)
    for i in range(4):
        car(b, i, ph=(7, 7, 1, 0)[i], rot=i % 3, mx=(16000, 32000, 16000, 16000)[i], e=1000 * i)
        b.sw[i] = AUTO
    b.rules_e[1] = [SOLAR]
    b.max_phase_skew = 20000
    for t in range(0, 1800000, 1000):
        k = t // 37000
        h = (3000 + 7000 * (k % 3), 9000 * (k % 2), 2000 + 500 * (k % 5))
        cyc(b, t, house=(h[0] - (k % 4) * 4000, h[1] - (k % 4) * 4000, h[2] - (k % 4) * 4000))
        s = sums(b)  # limits on the phases the balancer reports (both modes while switching)
        for p in range(3):
            assert s[p] <= b.budget[p], (t, s, list(b.budget))
        for i in range(4):
            if b.sw[i] & 4 or b.want_1p[i] != b.sw[i] >> 1 & 1:
                assert b.limit[i] == 0
    assert b.sw[0] & ONE or b.sw[1] & ONE or b.sw[3] & ONE  # it did switch


# ---- max_phase_skew ---------------------------------------------------------------
def test_skew_limits_a_one_phase_car():
    b = mk(1, 32000, max_phase_skew=10000)
    car(b, 0, ph=1, mx=32000)
    run(b, 0, 3000, (0, 0, 0))
    assert b.limit[0] == 10000 and why(b, 0) == "max_phase_skew"


def test_skew_pauses_a_car_whose_minimum_it_cannot_take():
    b = mk(1, 32000, max_phase_skew=7000)  # a start needs its minimum + 2 A
    car(b, 0, ph=1)
    run(b, 0, 3000, (0, 0, 0))
    assert b.limit[0] == 0 and b.paused[0] and why(b, 0) == "paused: phase skew"
    run(b, 3000, 6000, (0, 0, 2000))  # 2 A more on L3: L1 - L3 may be 9 A, L1 - L2 7 A
    assert b.limit[0] == 0 and why(b, 0) == "paused: phase skew"
    run(b, 6000, 9000, (0, 2000, 2000))
    assert b.limit[0] == 9000 and why(b, 0) == "max_phase_skew"


def test_one_phase_cars_on_all_phases_balance_each_other():
    b = mk(3, 32000, max_phase_skew=8000)
    for i in range(3):
        car(b, i, ph=1, rot=i)  # EVSE L1 on grid L1, L2, L3
    cyc(b, 0)
    assert list(b.limit) == [8000] * 3  # a car on another phase counts as it draws: none yet
    run(b, 1000, 4000, (0, 0, 0))
    assert list(b.limit) == [16000] * 3
    b.state[2] = 1  # L3's car leaves: the other two down to 8 A over L3
    run(b, 4000, 7000, (0, 0, 0))
    assert list(b.limit) == [8000, 8000, 0] and why(b, 0) == "max_phase_skew"


def test_skew_counts_the_house_and_never_worsens_it():
    b = mk(2, 32000, max_phase_skew=8000)
    car(b, 0, ph=1, rot=1, mx=32000)  # on L2
    car(b, 1, ph=1, rot=2, mx=32000)  # on L3
    run(b, 0, 3000, (10000, 0, 0))  # the house alone: 10 A more on L1
    assert list(b.limit) == [18000, 18000], list(b.limit)  # up to L1's level (+ 8 A)
    b.state[1] = 1
    run(b, 3000, 6000, (10000, 0, 0))
    assert b.limit[0] == 8000 and why(b, 0) == "max_phase_skew"  # L2 - L3 <= 8 A


def test_skew_never_exceeded_once_reacted():
    b = mk(5, 40000, max_phase_skew=6000)
    for i in range(5):
        car(b, i, ph=(1, 1, 7, 1, 3)[i], rot=(0, 1, 0, 2, 1)[i], mx=(32000, 16000, 16000, 20000, 16000)[i])
    for t in range(0, 900000, 1000):
        k = t // 20000
        h = (1000 * (k % 7), 4000 * (k % 3), 2500 * (k % 4))
        b.state[k % 5] = 2 if k % 3 == 0 else 3
        cyc(b, t, house=h)
        if t % 20000 >= 3000:  # the house changed >= 3 cycles ago
            g = list(h)
            for i in range(5):
                for p in range(3):
                    if b.phases[i] >> 3 + p & 1 and b.state[i] == 3:
                        g[p] += b.limit[i]
            hs = max(h) - min(h)
            assert max(g) - min(g) <= max(6000, hs), (t, g, h, list(b.limit))


# ---- allocation-free ----------------------------------------------------------------
def _busy(n):
    b = mk(n, 32000 if n <= 8 else 100000, reserve_current=1000, max_phase_skew=12000, solar_shift=1)
    for i in range(n):
        car(b, i, ph=(7, 1, 0, 7, 4)[i % 5], prio=1 + i % 3, rot=i % 6, mx=(16000, 32000)[i % 2], e=i * 700)
        b.sw[i] = (AUTO, 0, AUTO | 16, AUTO | 8, 0)[i % 5]  # automatic, with a wish for three / one
    b.rules_e[0] = [SOLAR]
    b.rules_e[3] = [{"days": 127, "mode": 2, "udur": 30}]
    b.phase_switch_min_ms = 20000
    return b


def test_steady_state_cycle_allocates_nothing():
    for n in (8, 32):
        b = _busy(n)
        t = 0
        while t < 120000:  # switches happen meanwhile
            cyc(b, t, house=(9000 - t // 1000 * 150, 4000, -2000 - t // 1000 * 100))
            t += 1000
        assert sum(b.want_1p) > 0, list(b.want_1p)
        cyc(b, t, house=(1000, 4000, -9000))
        b.sw[0] = AUTO | 4  # mid-sequence
        b.set_grid(1100, 4100, -8900, t + 1000)
        micropython.heap_lock()
        try:
            b.balance(t + 1000)
        finally:
            micropython.heap_unlock()
        s = sums(b)
        for p in range(3):
            assert s[p] <= b.budget[p]
        assert max(b.limit) > 0


# ---- phase wish (devices.Evse.phase_wish: an energy manager's relay_select) ----------
W1 = 8  # set_evse sw bits: wish one phase, wish three phases
W3 = 16


def test_wish_one_phase_switches_at_once_and_stays():
    b = mk(1, 32000, phase_switch_min_ms=20000)
    car(b, 0)  # 3-phase car, 6..16 A, plenty of room: automatically it stays on three
    b.sw[0] = W1  # no automatic switching (phase_switching 0), a wish for one phase
    cyc(b, 0)
    assert b.want_1p[0] == 1 and b.limit[0] == 0 and why(b, 0) == "phase switching"
    t = run(b, 1000, 8000, (0, 0, 0))
    assert b.sw[0] == W1 | ONE and b.limit[0] == 16000 and b.phases[0] == 1 | 1 << 3
    t = run(b, t, 400000, (0, 0, 0))  # it stays on one: the wish holds
    assert b.sw[0] == W1 | ONE and b.limit[0] == 16000


def test_wish_three_phases_only_inside_the_fuse_and_min_time():
    b = mk(1, 10000, phase_switch_min_ms=30000)  # 10 A per phase, house 5 A on L2
    car(b, 0)
    b.sw[0] = W3 | ONE  # on one phase, three wished
    t = run(b, 0, 20000, (0, 5000, 0))  # three would give 5 A < 6 A minimum: stays on one
    assert b.sw[0] == W3 | ONE and b.want_1p[0] == 1 and b.limit[0] == 10000
    # room on three, but a switch is a start: it waits for the start window (120 s)
    # to forget the house's 5 A on L2 (5 buckets of 24 s: 96..120 s after it ended)
    while b.want_1p[0] == 1 and t < 200000:
        cyc(b, t)
        t += 1000
    assert 20000 + 96000 <= t <= 20000 + 121000, t
    t = run(b, t, t + 10000, (0, 0, 0))
    assert b.sw[0] == W3 and b.limit[0] == 10000 and b.phases[0] == 7 | 7 << 3
    # wish one now: not before phase_switch_min_time from the last request
    req = t - 10000
    b.sw[0] = W1
    while t < req + 29000:
        cyc(b, t)
        assert b.want_1p[0] == 0, t
        t += 1000
    t = run(b, t, req + 40000, (0, 0, 0))
    assert b.sw[0] & ONE


def test_wish_never_above_the_fuse():
    b = mk(2, 16000, phase_switch_min_ms=0)
    car(b, 0)
    car(b, 1, ph=1)  # a 1-phase car on L1
    b.sw[0] = W1 | AUTO
    t = 0
    for t in range(0, 200000, 1000):
        cyc(b, t, house=(4000, 0, 0))
        s = sums(b)
        assert s[0] + 4000 <= 16000 and max(s) <= 16000, (t, s, list(b.limit))
    # the wish holds while one phase charges car 0: L1's 12 A go to it (car 1 would
    # need its minimum + the 2 A start margin)
    assert b.sw[0] == W1 | AUTO | ONE and list(b.limit) == [12000, 0]
