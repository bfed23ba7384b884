"""Charging rules (API.md section 8): the reference (rules_ref.py) and how the
balancer applies them, on CPython and MicroPython."""
import rules_ref as rules
from pblib import reasons
from lbsite import car, cyc, mk, why

# the balancer's / rules' private constants (const-folded away on MicroPython)
METER_CONSUMPTION = 1
NONE_APPLIES = -1
NO_RULES = -2
OVR_IGN_USER_RULES = 4


MON, TUE, FRI, SAT, SUN = 0, 1, 4, 5, 6
ALL = 0x7F


def R(**kw):
    r = {"days": ALL, "mode": 0, "current": 10000, "enabled": True, "udur": 0,
         "time": 0, "dur": 0, "expr": "", "input": "", "price_level": 0, "solar": 0}
    r.update(kw)
    return r


def test_all_day_and_days_bits():
    r = R(days=1 << TUE)
    assert rules.applies(r, TUE, 0) and rules.applies(r, TUE, 1439)
    assert not rules.applies(r, MON, 600)
    assert not rules.applies(R(days=0), MON, 600)  # no day bit: never
    assert rules.applies(R(dur=1440), SUN, 5)


def test_time_window():
    r = R(time=8 * 60, dur=90)
    assert not rules.applies(r, MON, 8 * 60 - 1)
    assert rules.applies(r, MON, 8 * 60)
    assert rules.applies(r, MON, 9 * 60 + 29)
    assert not rules.applies(r, MON, 9 * 60 + 30)


def test_window_over_midnight_belongs_to_start_day():
    r = R(days=1 << FRI, time=21 * 60, dur=9 * 60)  # Fri 21:00 .. Sat 06:00
    assert rules.applies(r, FRI, 22 * 60)
    assert rules.applies(r, SAT, 5 * 60 + 59)
    assert not rules.applies(r, SAT, 6 * 60)
    assert not rules.applies(r, SAT, 22 * 60)
    assert not rules.applies(r, FRI, 2 * 60)  # that is Thursday night's tail


def test_select_first_applying_active_rule():
    rs = [R(time=600, dur=60, current=1000), R(current=2000), R(current=3000)]
    assert rules.select(rs, MON, 630) == 0
    assert rules.select(rs, MON, 700) == 1
    rs[1]["enabled"] = False
    assert rules.select(rs, MON, 700) == 2


def test_none_applies_vs_no_active_rules():
    assert rules.select(None, MON, 0) == NO_RULES
    assert rules.select([], MON, 0) == NO_RULES
    assert rules.select([R(days=1 << SUN)], MON, 0) == NONE_APPLIES
    assert rules.evaluate([R(days=1 << SUN)], MON, 0, 16000, 0) == 0  # rules exist: 0 mA
    assert rules.evaluate([], MON, 0, 16000, 0) == -1  # no effect
    # rules using expr / input / price_level are inactive until implemented
    inactive = [R(expr="x>1"), R(input="in1"), R(price_level=2), R(mode=9)]
    assert rules.select(inactive, MON, 0) == NO_RULES
    assert not rules.active(R(enabled=False))


def test_modes():
    c = rules.current
    assert c(R(mode=0, current=8000), 16000, 0, 6000) == 8000
    assert c(R(mode=1, current=-2000), 16000, 0, 6000) == 14000
    assert c(R(mode=1, current=-20000), 16000, 0, 6000) == 0  # never negative
    assert c(R(mode=2), 16000, 3000, 6000) == 6000  # surplus topped up to min
    assert c(R(mode=2), 16000, 9000, 6000) == 9000
    assert c(R(mode=3, current=1000), 16000, 9000, 6000) == 10000
    assert c(R(mode=4, current=1000), 16000, 9000, 6000) == 8000
    assert c(R(mode=5), 16000, 4000, 6000) == 4000
    assert rules.is_solar(R(mode=5)) and not rules.is_solar(R(mode=1))
    assert rules.needs_share(R(mode=1)) and not rules.needs_share(R(mode=0))


def test_evaluate_pure():
    rs = [R(mode=5, time=600, dur=480), R(mode=0, current=6000)]
    assert rules.evaluate(rs, MON, 700, 16000, 7000) == 7000
    assert rules.evaluate(rs, MON, 300, 16000, 7000) == 6000
    assert rules.evaluate(rs, MON, 700, 16000, 7000) == rules.evaluate(rs, MON, 700, 16000, 7000)


def test_sufficient_with_solar_threshold():
    r = R(mode=5, solar=6500)
    assert not rules.sufficient(r, 7000, 6000, 6000)  # surplus below the start threshold
    assert rules.sufficient(r, 7000, 7000, 6000)
    assert not rules.sufficient(R(mode=0), 5000, 0, 6000)  # below min


def test_gate_udur_undercut_bridged_then_stop():
    on = [-1]
    ms = [0]
    g = rules.gate
    assert g(on, ms, 0, 8000, True, 6000, 60000, 0) == 8000
    # falls below min: bridged at min for udur (60 s), then stops
    assert g(on, ms, 0, 3000, False, 6000, 60000, 30000) == 6000
    assert g(on, ms, 0, 3000, False, 6000, 60000, 29000) == 6000
    assert g(on, ms, 0, 3000, False, 6000, 60000, 1000) == 0
    assert on[0] == 0
    # must be sufficient for udur before it starts again; a dip restarts the wait
    assert g(on, ms, 0, 7000, True, 6000, 60000, 40000) == 0
    assert g(on, ms, 0, 3000, False, 6000, 60000, 1000) == 0
    assert g(on, ms, 0, 7000, True, 6000, 60000, 40000) == 0
    assert g(on, ms, 0, 7000, True, 6000, 60000, 20000) == 7000
    assert on[0] == 1


def test_gate_zero_udur_and_fresh_session():
    on = [-1]
    ms = [0]
    assert rules.gate(on, ms, 0, 3000, False, 6000, 0, 0) == 0  # starts closed
    assert on[0] == 0
    assert rules.gate(on, ms, 0, 6000, True, 6000, 0, 1000) == 6000
    assert rules.gate(on, ms, 0, 5900, False, 6000, 0, 1000) == 0


# ---- rules inside the balancer (lbsite: cars follow their limits, rotation 0) --------
def test_reason_texts():
    t = reasons.reason_text
    assert t(0) == "" and t(1) == "no vehicle" and t(13) == "max_total_current L3"
    assert t(22) == "paused: vehicle idle" and t(23) == "phase switching" and t(24) == "max_phase_skew"
    assert t(25) == "paused: phase skew"
    assert t(26) == "rule 1" and t(36) == "rule 11+"
    assert t(37) == "rule 1 (solar)" and t(49) == "user rule 2" and t(69) == "user rule 11+ (solar)"


def test_rules_cap_and_reasons():
    b = mk(2, 40000)
    car(b, 0)
    car(b, 1)
    b.rules_e[0] = [{"days": 127, "mode": 0, "current": 10000, "enabled": True}]
    b.rules_u[1] = [{"days": 127, "mode": 1, "current": -3000, "enabled": True}]
    cyc(b, 0)
    assert list(b.limit) == [10000, 13000]
    assert why(b, 0) == "rule 1" and why(b, 1) == "user rule 1"
    b.ovr[1] = OVR_IGN_USER_RULES
    cyc(b, 1000)
    assert list(b.limit) == [10000, 16000]
    b.rules_e[0] = [{"days": 127, "mode": 0, "time": 0, "dur": 60, "current": 6000}]
    b.minute = 120  # rules exist, none applies: no charging
    cyc(b, 2000)
    assert b.limit[0] == 0 and why(b, 0) == "rules: no rule applies" and b.paused[0] == 0


def test_solar_rule_uses_grid_export():
    b = mk(1, 32000, solar_shift=0)
    car(b, 0, mx=32000)
    b.rules_e[0] = [{"days": 127, "mode": 5, "current": 0, "udur": 0}]
    cyc(b, 0, house=(-3000, -3000, -3000))  # 9 A exported in total: 3 A per phase
    assert b.surplus == 9000 and b.limit[0] == 0 and why(b, 0) == "rule 1 (solar)"
    cyc(b, 1000, house=(-8000, -8000, -8000))
    cyc(b, 2000, house=(-8000, -8000, -8000))
    assert b.limit[0] == 8000
    # charging at 8 A: the surplus still counts its own draw as available
    cyc(b, 3000, house=(-8000, -8000, -8000))
    assert b.surplus == 24000 and b.limit[0] == 8000


def test_solar_from_production_meter():
    b = mk(1, 32000, solar_shift=0, meter_mode=METER_CONSUMPTION)
    car(b, 0, ph=1)
    b.rules_e[0] = [{"days": 127, "mode": 5}]
    b.set_production(4000, 4000, 4000, 0)
    cyc(b, 0, house=(1000, 1000, 1000))
    assert b.surplus == 9000 and b.limit[0] == 9000
