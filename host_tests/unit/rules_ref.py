"""Charging rules (API.md section 8): the reference of the rule semantics, for the tests.

Pure, integer-only, one small function per step. pblib.balancer evaluates the
same semantics itself, inline and allocation-free (see the end of this module);
host_tests/test_balancer_props.py checks that its results equal these. Not part
of the firmware.

A rule is the dict stored in the configuration::

    {"days": bits (bit0 Monday .. bit6 Sunday), "mode": 0..5, "current": mA,
     "enabled": bool, "udur": s, "time": minute of day, "dur": minutes,
     "expr": str, "input": str, "price_level": n, "solar": mA}

Missing keys read as: days 0, mode 0, current 0, enabled true, udur 0, time 0,
dur 0, expr/input "" and price_level 0, solar 0.

Which rule applies (cFos semantics)
  A rule set (the EVSE's, or the user's while that user's session is active) is
  searched in order; the first *active* rule that applies wins, the rest are
  ignored. A rule is active when it is enabled, its mode is 0..5 and it uses no
  `expr`, `input` or `price_level` (those are stored but inactive until
  implemented, API.md section 8). It applies on the days whose bit is set
  (days 0 = never), from `time` for `dur` minutes (dur 0 or >= 1440 = all day). A
  window that crosses midnight belongs to the day it starts on: Fri 21:00 + 540
  applies Fri 21:00..24:00 and Sat 00:00..06:00 if Friday's bit is set.
  A set with at least one active rule of which none applies yields 0 (no
  charging); a set without active rules has no effect. When both the EVSE's and
  the user's set yield a value the smaller one counts.

What a rule yields (mA per phase; `surplus` is the solar surplus available to
this EVSE in mA per phase, `share` what the balancer would give without rules)
  0 absolute           current
  1 relative           share + current   (current is usually negative)
  2 solar surplus      max(surplus, min_charging_cur): charge with the surplus,
                       topped up from the grid to the minimum
  3 relative to solar  surplus + current
  4 solar minus        surplus - current
  5 solar only         surplus: charge only from surplus
  Negative results count as 0. A result never raises an EVSE above its
  balancer share: rules only lower limits (the budget stays the hard bound).
  `solar` (modes 2..5, when > 0): the start threshold: the rule's value only
  counts as "enough" while the surplus is at least `solar` mA.

udur (seconds; the undercut duration, see `gate`)
  A result below the EVSE's minimum (or a solar rule below its `solar`
  threshold) is bridged at the minimum for `udur` seconds before charging
  stops; once stopped, the result must stay sufficient for `udur` seconds before
  charging starts again. At plug-in the gate starts open when the first result
  is sufficient. Time is kept as elapsed-ms counters, so no clock wraps.
"""
from micropython import const

_MODE_ABS = const(0)
_MODE_REL = const(1)
_MODE_SOLAR = const(2)
_MODE_SOLAR_REL = const(3)
_MODE_SOLAR_MINUS = const(4)
_MODE_SOLAR_ONLY = const(5)

_NONE_APPLIES = const(-1)  # select(): active rules exist, none applies -> 0 mA
_NO_RULES = const(-2)  # select(): no active rule -> no effect

_DAY = const(1440)


def active(rule):
    """True when the rule takes part in the evaluation (enabled, implemented)."""
    if not rule.get("enabled", True):
        return False
    m = rule.get("mode", 0)
    if m < 0 or m > 5:
        return False
    if rule.get("expr", "") or rule.get("input", "") or rule.get("price_level", 0):
        return False
    return True


def applies(rule, weekday, minute):
    """Does the rule's day/time window cover weekday (0 = Monday) and minute of day?"""
    days = rule.get("days", 0)
    dur = rule.get("dur", 0)
    if dur <= 0 or dur >= _DAY:
        return (days >> weekday) & 1 == 1
    t = rule.get("time", 0) % _DAY
    if minute >= t:
        return minute < t + dur and (days >> weekday) & 1 == 1
    # before today's start: inside only the tail of yesterday's window
    end = t + dur - _DAY
    if end > 0 and minute < end:
        return (days >> ((weekday + 6) % 7)) & 1 == 1
    return False


def select(rules, weekday, minute):
    """Index of the first active rule that applies, _NONE_APPLIES or _NO_RULES."""
    if not rules:
        return _NO_RULES
    seen = False
    for k in range(len(rules)):
        r = rules[k]
        if not active(r):
            continue
        seen = True
        if applies(r, weekday, minute):
            return k
    return _NONE_APPLIES if seen else _NO_RULES


def is_solar(rule):
    return rule.get("mode", 0) >= _MODE_SOLAR


def needs_share(rule):
    """Mode 1 needs the balancer's share; the balancer evaluates it in a second pass."""
    return rule.get("mode", 0) == _MODE_REL


def current(rule, share, surplus, min_cur):
    """The rule's current in mA per phase (>= 0); see the module docstring."""
    m = rule.get("mode", 0)
    c = rule.get("current", 0)
    if m == _MODE_ABS:
        v = c
    elif m == _MODE_REL:
        v = share + c
    elif m == _MODE_SOLAR:
        v = surplus if surplus > min_cur else min_cur
    elif m == _MODE_SOLAR_REL:
        v = surplus + c
    elif m == _MODE_SOLAR_MINUS:
        v = surplus - c
    else:
        v = surplus
    return v if v > 0 else 0


def sufficient(rule, c, surplus, min_cur):
    """Is result c enough to charge (>= min, and for solar rules surplus >= `solar`)?"""
    if c < min_cur:
        return False
    if rule.get("mode", 0) >= _MODE_SOLAR:
        s = rule.get("solar", 0)
        if s > 0 and surplus < s:
            return False
    return True


def evaluate(rules, weekday, minute, share, surplus, min_cur=0):
    """Pure value of one rule set: -1 = no effect, else the cap in mA (0 = stop).

    udur is not applied here (it needs history: see `gate`)."""
    k = select(rules, weekday, minute)
    if k == _NO_RULES:
        return -1
    if k == _NONE_APPLIES:
        return 0
    return current(rules[k], share, surplus, min_cur)


def gate(on, ms, i, c, ok, min_cur, udur_ms, dt_ms):
    """udur state machine of EVSE i; returns the cap in mA (0 = stop).

    on[i]: -1 unknown (fresh session), 1 charging allowed, 0 stopped by the rule;
    ms[i]: elapsed ms of the current undercut/overcut. c: the rule result,
    ok: sufficient(...), dt_ms: time since the previous cycle."""
    o = on[i]
    if o < 0:
        o = 1 if ok else 0
        ms[i] = 0
    if o:
        if ok:
            on[i] = 1
            ms[i] = 0
            return c
        t = ms[i] + dt_ms
        if t >= udur_ms:
            on[i] = 0
            ms[i] = 0
            return 0
        on[i] = 1
        ms[i] = t
        return c if c > min_cur else min_cur
    if ok:
        t = ms[i] + dt_ms
        if t >= udur_ms:
            on[i] = 1
            ms[i] = 0
            return c
        ms[i] = t
    else:
        ms[i] = 0
    on[i] = 0
    return 0


# ---- applied by the balancer ---------------------------------------------------------
# pblib.balancer evaluates these same semantics itself, inline and allocation-free:
# EVSE i's rule set and its active user's are evaluated in the balancer's service
# order (so solar surplus goes to the EVSEs in that order: each takes its result
# times its phase count from what is left), combined (the smaller result counts, a
# set that yields "none applies" means 0) and passed through `gate` with the udur
# of the deciding rule (the last one when none applies). The result caps the EVSE.
# host_tests/test_balancer_props.py checks that the balancer's results equal this
# module's.
