"""Property tests of pblib.balancer (CPython, hypothesis) and the scenario suite.

Random sites, EVSEs and readings: per grid phase the limits never exceed the budget,
no non-zero limit is below the minimum or above the caps, priorities hold,
results are deterministic. The charging rules the balancer evaluates inline give
the results of host_tests/unit/rules_ref.py (the reference). The scenario suite
runs tools/lbsim.py for >= 10 000 cycles with noise, spikes, meter dropouts and
EVSEs going offline: 0 over-limit samples and the invariant checked in every cycle.
"""
import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lbsim
import rules_ref as rules
from lbsite import Site
from pblib.reasons import reason_text

# the balancer's / rules' private constants (const-folded away on MicroPython)
METER_CONSUMPTION = 1
NONE_APPLIES = -1
NO_RULES = -2
OVR_IGN_EVSE_RULES = 2
OVR_IGN_USER_RULES = 4
OVR_OFF = 1


ROTS = ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (1, 0, 2), (2, 1, 0))
SET = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ceil100(x):
    return (x + 99) // 100 * 100


def gmap(mask, rot):
    m = 0
    for k in range(3):
        if (mask >> k) & 1:
            m |= 1 << ROTS[rot][k]
    return m


evse_st = st.fixed_dictionaries({
    "state": st.sampled_from((0, 1, 2, 3, 3, 3, 4, 5, 6)),
    "enabled": st.sampled_from((1, 1, 1, 1, 0)),
    "ph": st.sampled_from((0, 0, 1, 2, 4, 3, 7, 7)),
    "rot": st.integers(0, 5),
    "min": st.integers(5000, 10000),
    "max": st.integers(5000, 32000),
    "prio": st.integers(0, 3),
    "mamps": st.sampled_from((0, 0, 0, 4000, 8000, 12000)),
    "off": st.sampled_from((0, 0, 0, 0, 1)),
    "e": st.integers(0, 60000),
    "cur": st.tuples(st.integers(-200, 33000), st.integers(-200, 33000), st.integers(-200, 33000)),
})

site_st = st.fixed_dictionaries({
    "total": st.integers(6000, 80000),
    "reserve": st.integers(0, 3000),
    "cap": st.sampled_from((0, 0, 20000, 40000)),
    "policy": st.sampled_from((0, 1, -1)),
    "grid": st.tuples(st.integers(-15000, 60000), st.integers(-15000, 60000), st.integers(-15000, 60000)),
    "evses": st.lists(evse_st, min_size=1, max_size=8),
})


def build(s):
    n = len(s["evses"])
    b = Site(n)  # per-EVSE inputs in lists, passed with set_evse before each balance()
    b.max_total_current = s["total"]
    b.reserve_current = s["reserve"]
    b.max_total_evse_current = s["cap"]
    b.disable_policy = s["policy"]
    for i, e in enumerate(s["evses"]):
        b.state[i] = e["state"]
        b.enabled[i] = e["enabled"]
        b.used_phases[i] = e["ph"]
        b.phase_rotation[i] = e["rot"]
        b.min_cur[i] = e["min"]
        b.max_cur[i] = e["max"]
        b.prio[i] = e["prio"]
        b.mamps[i] = e["mamps"]
        b.ovr[i] = OVR_OFF if e["off"] else 0
        b.energy[i] = e["e"]
        for k in range(3):
            b.cur[3 * i + k] = e["cur"][k]
    return b


def expected_budget(s):
    """API.md 9.1, computed here from the inputs."""
    other = list(s["grid"])
    for e in s["evses"]:
        if 2 <= e["state"] <= 5 and not (not e["enabled"] and s["policy"] == -1):
            for k in range(3):
                other[ROTS[e["rot"]][k]] -= max(0, e["cur"][k])
    out = []
    for p in range(3):
        x = s["total"] - s["reserve"] - other[p]
        if s["cap"] and s["cap"] < x:
            x = s["cap"]
        out.append(max(0, x))
    return out


def free(s, i):
    e = s["evses"][i]
    return e["state"] >= 2 and not e["enabled"] and s["policy"] == -1


def fixed(b, i):
    return reason_text(b.reason[i]) in ("offline: share held", "disabled: min current")


def check_invariants(s, b, budget, one=None):
    """one[i]: the relay of slot i is on one phase (the EVSE's phases: L1)."""
    n = len(s["evses"])
    for p in range(3):
        fx = sum(b.limit[i] for i in range(n) if fixed(b, i) and (b.phases[i] >> 3 + p) & 1)
        managed = sum(b.limit[i] for i in range(n)
                      if not fixed(b, i) and not free(s, i) and (b.phases[i] >> 3 + p) & 1)
        assert managed <= max(0, budget[p] - fx), (p, managed, budget, fx)
    for i, e in enumerate(s["evses"]):
        lim = b.limit[i]
        assert lim >= 0 and lim % 100 == 0
        # the phases the balancer accounts include the configured ones
        ph = 1 if one and one[i] else e["ph"]
        if ph:
            assert b.phases[i] & ph == ph
            assert (b.phases[i] >> 3) & gmap(ph, e["rot"]) == gmap(ph, e["rot"])
        if lim == 0 or free(s, i):
            continue
        assert lim >= ceil100(e["min"]), (i, lim, e)
        if fixed(b, i):
            continue
        assert lim <= e["max"] // 100 * 100
        if e["mamps"]:
            assert lim <= e["mamps"]
        assert e["state"] in (2, 3, 4) and e["enabled"] and not e["off"]


@SET
@given(site_st)
def test_single_cycle_within_budget_and_caps(s):
    b = build(s)
    g = s["grid"]
    b.set_grid(g[0], g[1], g[2], 0)
    b.balance(0)
    budget = expected_budget(s)
    # the first estimate of the other load has no earlier EVSE reading to pair
    # the grid reading with: exact, or on the safe side (a smaller budget)
    assert all(b.budget[p] <= budget[p] for p in range(3)), (list(b.budget), budget)
    check_invariants(s, b, b.budget)
    b.set_grid(g[0], g[1], g[2], 1000)  # the same readings again: exact
    b.balance(1000)
    assert list(b.budget) == budget
    check_invariants(s, b, budget)


@SET
@given(site_st)
def test_priorities_respected(s):
    b = build(s)
    g = s["grid"]
    b.set_grid(g[0], g[1], g[2], 0)
    b.balance(0)
    n = len(s["evses"])
    ev = s["evses"]
    run = [i for i in range(n) if b.limit[i] > 0 and not fixed(b, i) and not free(s, i)]
    # fixed shares are reserved first (a disabled EVSE at policy 1: its minimum,
    # even while its limit cannot be raised to it yet)
    res = [ceil100(ev[i]["min"]) if reason_text(b.reason[i]) == "disabled: min current" else b.limit[i]
           for i in range(n)]
    fx = [sum(res[i] for i in range(n) if fixed(b, i) and (b.phases[i] >> 3 + p) & 1) for p in range(3)]
    bud = [x // 100 * 100 for x in b.budget]
    for j in range(n):
        if not b.paused[j]:
            continue
        # a paused EVSE did not fit next to the minimums of the EVSEs of its own or
        # a better priority: on one of its phases their minimums + its need exceed
        need = ceil100(ev[j]["min"]) + 2000  # + the start margin (fixed, 2000 mA)
        ok = False
        for p in range(3):
            if (b.phases[j] >> 3 + p) & 1:
                mins = sum(ceil100(ev[k]["min"]) for k in run
                           if ev[k]["prio"] <= ev[j]["prio"] and (b.phases[k] >> 3 + p) & 1)
                if fx[p] + mins + need > bud[p]:
                    ok = True
        assert ok, (j, reason_text(b.reason[j]))
    for j in run:
        cap = ev[j]["max"] // 100 * 100
        if ev[j]["mamps"]:
            cap = min(cap, ev[j]["mamps"] // 100 * 100)
        if b.limit[j] >= cap:
            continue
        # below its cap: some phase of it is full, and lower priorities there have
        # no more than their minimum (plus the odd 100 mA remainder)
        ok = False
        for p in range(3):
            if not (b.phases[j] >> 3 + p) & 1:
                continue
            on = [k for k in run if (b.phases[k] >> 3 + p) & 1]
            slack = b.budget[p] - max(fx[p], 0) - sum(b.limit[k] for k in on)
            low = [k for k in on if ev[k]["prio"] > ev[j]["prio"]]
            if slack < 100 * len(on) and all(b.limit[k] - ceil100(ev[k]["min"]) <= 100 * len(on) for k in low):
                ok = True
        assert ok, (j, list(b.limit), reason_text(b.reason[j]))


@SET
@given(site_st, st.lists(st.tuples(st.integers(0, 7), st.sampled_from((1, 2, 3, 3, 5, 6)),
                                   st.integers(-4000, 4000)), min_size=3, max_size=15),
       st.booleans())
def test_cycles_stay_within_budget_and_are_deterministic(s0, steps, drop):
    """Many cycles: cars follow their limits (with noise), states change, the grid
    meter may be lost; the invariants hold in every cycle; two runs agree."""
    def run():
        s = copy.deepcopy(s0)
        s2 = s
        b = build(s)
        n = len(s["evses"])
        out = []
        t = 0
        for k, (slot, state, noise) in enumerate(steps):
            i = slot % n
            b.state[i] = state
            s["evses"][i]["state"] = state
            grid = list(s["grid"])
            for j in range(n):
                for q in range(3):
                    c = b.limit[j] if b.state[j] in (3, 4) and (b.phases[j] >> q) & 1 else 0
                    c = max(0, c + noise // 8)
                    b.cur[3 * j + q] = c
                    s["evses"][j]["cur"] = tuple(b.cur[3 * j:3 * j + 3])
                    grid[ROTS[b.phase_rotation[j]][q]] += c
            if not (drop and k % 3):
                b.set_grid(grid[0] + noise, grid[1], grid[2] - noise, t)
                s2 = dict(s)
                s2["grid"] = (grid[0] + noise, grid[1], grid[2] - noise)
            b.balance(t)
            if not b.failsafe:
                check_invariants(s2, b, b.budget)
            else:
                check_invariants(s, b, b.budget)
            out.append((tuple(b.limit), tuple(b.reason), tuple(b.paused)))
            t += 1000 + 3000 * (k % 4)
        return out
    assert run() == run()


rule_st = st.fixed_dictionaries(
    {"days": st.sampled_from((127, 127, 1, 2, 16, 31, 96, 0)), "mode": st.sampled_from((0, 0, 1, 2, 3, 4, 5, 5, 9))},
    optional={"current": st.sampled_from((0, 6000, 8000, 10000, -2000, -30000, 40000)), "enabled": st.booleans(),
              "udur": st.sampled_from((0, 5, 30, 120)), "time": st.integers(0, 1439),
              "dur": st.sampled_from((0, 30, 90, 600, 1440, 2000)), "expr": st.sampled_from(("", "", "", "x>1")),
              "price_level": st.sampled_from((0, 0, 0, 2)), "solar": st.sampled_from((0, 1000, 6000, 20000))})
rules_st = st.one_of(st.none(), st.lists(rule_st, max_size=4))
step_st = st.tuples(st.integers(0, 6), st.integers(0, 1439), st.sampled_from((0, 1000, 3000, 6000, 7000, 8000, 12000)),
                    st.sampled_from((0, 0, 1000, 2000, 6000)),
                    st.sampled_from((0, 1000, 1000, 5000, 30000, 120000)), st.sampled_from((0, 0, 0, 2, 4, 6)))


@SET
@given(rules_st, rules_st, st.lists(step_st, min_size=1, max_size=30))
def test_rules_in_the_balancer_equal_the_reference(re_, ru_, steps):
    """One 3-phase car (min 6 A, max 32 A, ample budget, solar surplus from a
    production meter): its limit and limit_reason each cycle are what rules_ref's
    select / current / sufficient / gate give, combined as the balancer documents."""
    b = Site(1)
    b.max_total_current = 80000
    b.meter_mode = METER_CONSUMPTION
    b.solar_shift = 0
    b.state[0] = 3
    b.used_phases[0] = 7
    b.max_cur[0] = 32000
    b.rules_e[0] = re_
    b.rules_u[0] = ru_
    b.cur[0:3] = [32000] * 3  # the car wants more than any limit (no draw cap)
    on, ms = [-1], [0]
    udl = 0
    t = 0
    for k, (wd, mn, pv, load, dt, ovr) in enumerate(steps):
        dt = dt if k else 0
        t += dt
        b.weekday = wd
        b.minute = mn
        b.ovr[0] = ovr
        b.set_load(load, load, load, t)
        b.set_production(pv, pv, pv, t)
        b.balance(t)
        sets = (None if ovr & OVR_IGN_EVSE_RULES else re_, None if ovr & OVR_IGN_USER_RULES else ru_)
        ks = [rules.select(r, wd, mn) for r in sets]
        if ks == [NO_RULES, NO_RULES]:
            on[0] = -1
            exp, why = 32000, "max_charging_cur"
        else:
            sur = max(0, 3 * pv - 3 * load) // 3
            cap, ok, ud, why = 1 << 30, False, udl, "rules: no rule applies"
            for w in (0, 1):
                x = ks[w]
                if x == NONE_APPLIES:
                    cap, ok, why = 0, False, "rules: no rule applies"
                elif x >= 0:
                    r = sets[w][x]
                    v = rules.current(r, 32000, sur, 6000)
                    if v < cap:
                        cap, ok, ud = v, rules.sufficient(r, v, sur, 6000), r.get("udur", 0) * 1000
                        why = "%srule %d%s%s" % ("user " if w else "", min(x, 10) + 1, "+" if x >= 10 else "",
                                                 " (solar)" if rules.is_solar(r) else "")
            if why != "rules: no rule applies":
                udl = ud
            u = rules.gate(on, ms, 0, cap, ok, 6000, ud, dt) // 100
            exp = 32000 if u >= 320 else (0 if u < 60 else u * 100)
            if u >= 320:
                why = "max_charging_cur"
        assert (b.limit[0], reason_text(b.reason[0])) == (exp, why), (k, ks, sets)


def test_scenario_suite_no_over_limit():
    """>= 10 000 cycles with meter noise, spikes, dropouts beyond meter_timeout,
    EVSEs going offline, cars that stop drawing or follow slowly, phase switching
    on solar surplus: 0 over-limit and 0 skew-violation samples."""
    total = 0
    for name, hours in (("faults", 3), ("evening", 1), ("pv_surplus", 2)):
        scn = lbsim.scenario(name, hours, seed=7)
        r = lbsim.simulate(scn, lbsim.Ours, seed=7, optimum=False)
        total += r["cycles"]
        assert r["over"] == 0, r
        assert r["skew"] == 0, r
        assert r["invariant_violations"] == 0, r
        assert r["util"] > 85 or name == "pv_surplus"
        assert r["energy"] > 0
    assert total >= 10000


# ---- phase switching and max_phase_skew (INTEGRATIONS.md 5) -------------------------
psw_evse_st = st.fixed_dictionaries({
    "state": st.sampled_from((1, 2, 3, 3, 3, 4, 5, 6)),
    "enabled": st.sampled_from((1, 1, 1, 1, 0)),
    "ph": st.sampled_from((0, 7, 7, 1, 2, 4, 3)),
    "rot": st.integers(0, 5),
    "min": st.integers(5000, 10000),
    "max": st.integers(6000, 32000),
    "prio": st.integers(0, 2),
    "mamps": st.sampled_from((0, 0, 0, 8000)),
    "off": st.sampled_from((0, 0, 0, 0, 1)),
    "e": st.integers(0, 60000),
    "cur": st.tuples(st.integers(-200, 33000), st.integers(-200, 33000), st.integers(-200, 33000)),
    "sw": st.sampled_from((0, 1, 1, 1, 3, 3, 5, 7)),
    "solar": st.booleans(),
})

psw_site_st = st.fixed_dictionaries({
    "total": st.integers(6000, 80000),
    "reserve": st.integers(0, 3000),
    "cap": st.sampled_from((0, 0, 20000, 40000)),
    "policy": st.sampled_from((0, 1, -1)),
    "skew": st.sampled_from((0, 4000, 8000, 12000, 20000)),
    "grid": st.tuples(st.integers(-15000, 60000), st.integers(-15000, 60000), st.integers(-15000, 60000)),
    "evses": st.lists(psw_evse_st, min_size=1, max_size=8),
})


def psw_build(s):
    b = build(s)
    b.max_phase_skew = s["skew"]
    b.phase_switch_min_ms = 20000
    for i, e in enumerate(s["evses"]):
        b.sw[i] = e["sw"]
        if e["solar"]:
            b.rules_e[i] = [{"days": 127, "mode": 5, "udur": 0}]
    return b


def check_skew(s, b, other, cur):
    """Every ordered pair of grid phases (p, q): the other load's difference, plus
    the limits of what loads p and not q, minus what loads q and not p can be relied
    on for (its limit, at most what it draws now) stays <= max(max_phase_skew, the
    other load's own difference); fixed shares (offline, disabled at minimum) are
    no car's to limit: where they alone exceed that, the cars only relieve it."""
    k = s["skew"]
    if not k:
        return
    for p in range(3):
        for q in range(3):
            if p == q:
                continue
            x = fx = other[p] - other[q]
            for i, e in enumerate(s["evses"]):
                gm = b.phases[i] >> 3
                lim = b.limit[i]
                if not lim or free(s, i):
                    continue
                if gm >> p & 1 and not gm >> q & 1:
                    x += lim
                    fx += lim if fixed(b, i) else 0
                elif gm >> q & 1 and not gm >> p & 1:
                    x -= min(lim, max(0, max(cur[i])) // 100 * 100)
            assert x <= max(k, other[p] - other[q], fx), (p, q, x, other, list(b.limit), [x >> 3 for x in b.phases])


@SET
@given(psw_site_st)
def test_switching_and_skew_single_cycle(s):
    """One cycle from random inputs (the second with the same readings: the other
    load exact): budgets, caps, skew; a car that switches phases has limit 0 and
    is not paused; want_1p only differs from the relay where switching is on."""
    b = psw_build(s)
    g = s["grid"]
    for t in (0, 1000):
        b.set_grid(g[0], g[1], g[2], t)
        b.balance(t)
    other = [s["total"] - s["reserve"] - x for x in expected_budget(s)] if not s["cap"] else None
    cur = [e["cur"] for e in s["evses"]]
    budget = expected_budget(s)
    assert list(b.budget) == budget
    for p in range(3):
        fx = sum(b.limit[i] for i in range(len(s["evses"])) if fixed(b, i) and (b.phases[i] >> 3 + p) & 1)
        managed = sum(b.limit[i] for i in range(len(s["evses"]))
                      if not fixed(b, i) and not free(s, i) and (b.phases[i] >> 3 + p) & 1)
        assert managed <= max(0, budget[p] - fx)
    for i, e in enumerate(s["evses"]):
        sw = e["sw"]
        if not sw & 1:
            assert b.want_1p[i] == (sw >> 1 & 1)
        if reason_text(b.reason[i]) == "phase switching":
            assert b.limit[i] == 0 and not b.paused[i] and (sw & 4 or b.want_1p[i] != sw >> 1 & 1)
        if sw & 2 and not sw & 4 and b.want_1p[i] == 1 and b.limit[i] and not free(s, i):
            assert b.phases[i] & 7 == 1 | (b.phases[i] & 7)  # EVSE L1 (and what it draws on)
        if b.limit[i] and not free(s, i) and not fixed(b, i):
            assert b.limit[i] >= ceil100(e["min"]) and b.limit[i] <= e["max"] // 100 * 100
    if other is None:  # the other load (max_total_evse_current hides it in the budget)
        other = list(g)
        for e in s["evses"]:
            if 2 <= e["state"] <= 5 and not (not e["enabled"] and s["policy"] == -1):
                for k in range(3):
                    other[ROTS[e["rot"]][k]] -= max(0, e["cur"][k])
    check_skew(s, b, other, cur)


@SET
@given(psw_site_st, st.lists(st.tuples(st.integers(0, 7), st.sampled_from((1, 2, 3, 3, 3, 5)),
                                       st.integers(-6000, 6000), st.sampled_from((1000, 1000, 5000, 30000))),
                             min_size=5, max_size=40))
def test_switching_and_skew_over_cycles(s0, steps):
    """Many cycles, cars following their limits on the phases the relay leaves them
    and the control task switching where want_1p asks (3 cycles busy): every cycle
    the budget, the skew bound (with the other load from the readings) and limit 0
    while switching hold; relay switches of a slot are >= phase_switch_min_ms apart."""
    s = copy.deepcopy(s0)
    b = psw_build(s)
    n = len(s["evses"])
    for i in range(n):  # the relay starts as sw says; not busy
        b.sw[i] &= 3
    t = 0
    house = list(s["grid"])
    last = [None] * n
    for k, (slot, state, dh, dt) in enumerate(steps):
        i = slot % n
        b.state[i] = state
        s["evses"][i]["state"] = state
        house[k % 3] += dh
        grid = list(house)
        cur = []
        for j in range(n):
            m = b.used_phases[j] or 7
            if b.sw[j] & 2:
                m &= 1
            c = b.limit[j] if b.state[j] in (3, 4) and not b.busy[j] else 0
            cj = []
            for q in range(3):
                v = c if m >> q & 1 else 0
                b.cur[3 * j + q] = v
                cj.append(v)
                grid[ROTS[b.phase_rotation[j]][q]] += v
            cur.append(cj)
            s["evses"][j]["cur"] = tuple(cj)
        b.set_grid(grid[0], grid[1], grid[2], t)
        b.balance(t)
        # the balancer's estimate of the other load (its budget, where not clamped:
        # a house change is followed within the rounds the pairing tests show)
        other = [s["total"] - s["reserve"] - x for x in b.budget]
        if k and not b.failsafe:
            check_invariants(s, b, b.budget, [b.sw[j] & 2 for j in range(n)])
            if not s["cap"] and min(b.budget) > 0:
                check_skew(s, b, other, cur)
        for j in range(n):
            if b.sw[j] & 4 or (b.sw[j] & 1 and b.want_1p[j] != b.sw[j] >> 1 & 1):
                assert b.limit[j] == 0
        for j in range(n):  # the control task
            if b.busy[j]:
                b.busy[j] -= 1
                if not b.busy[j]:
                    b.sw[j] = (b.sw[j] ^ 2) & 3
            elif b.sw[j] & 1 and b.want_1p[j] != b.sw[j] >> 1 & 1:
                assert last[j] is None or t - last[j] >= 20000, (j, t, last[j])
                last[j] = t
                b.busy[j] = 3
                b.sw[j] |= 4
        t += dt
