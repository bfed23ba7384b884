"""The OCPP charging-profile arithmetic (pbctl/integrations/ocpp_calls.py):
dateTime parsing, A/W to mA, schedules (absolute, recurring, relative),
stack levels and purposes, validation. Exact values.

Runs under CPython (pytest) and the MicroPython unix port (test_micropython_units.py).
"""
from unitcheck import raises

from pblib.ocppj import OcppError
from pbctl.integrations import ocpp_calls as oc

T0 = 1796589000  # 2026-12-06T20:30:00Z


def prof(pid, purpose, periods, unit="A", kind="Absolute", stack=0, **kw):
    sched = {"chargingRateUnit": unit, "chargingSchedulePeriod": [
        dict({"startPeriod": s, "limit": v}, **({"numberPhases": ph} if ph else {})) for s, v, ph in periods]}
    for k in ("duration", "startSchedule"):
        if k in kw:
            sched[k] = kw.pop(k)
    p = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
         "chargingProfileKind": kind, "chargingSchedule": sched}
    p.update(kw)
    return p


def code(f, *a):
    try:
        f(*a)
    except OcppError as e:
        return e.code
    raise AssertionError("no OcppError")


def test_time():
    assert oc.days(1970, 1, 1) == 0
    assert oc.days(2000, 3, 1) == 11017
    assert oc.parse_time("2026-12-06T20:30:00Z") == T0
    assert oc.parse_time("2026-12-06T20:30:00.123Z") == T0
    assert oc.parse_time("2026-12-06T21:30:00+01:00") == T0
    assert oc.parse_time("2026-12-06T19:00:00-01:30") == T0
    assert oc.parse_time("2024-02-29T00:00:00Z") == 1709164800
    assert code(oc.parse_time, "2026-1x-06T20:30:00Z") == "TypeConstraintViolation"


def test_units():
    assert oc.to_ma(16, False, 3) == 16000
    assert oc.to_ma(6.5, False, 3) == 6500
    assert oc.to_ma(11040, True, 3) == 16000  # 11040 W / (3 x 230 V)
    assert oc.to_ma(3680, True, 1) == 16000
    assert oc.to_ma(5000, True, 3) == 7246  # rounded down


def test_absolute_schedule_with_duration():
    pr = oc.parse_profile(0, prof(1, "ChargePointMaxProfile", [(0, 10, 0), (60, 6, 0), (120, 8.5, 0)],
                                  duration=300, startSchedule="2026-12-06T20:30:00Z"), T0 - 5)
    assert pr[:10] == (1, 0, 0, 0, -1, 0, T0, 300, 0, 0)
    assert list(pr[10]) == [0, 10000, 60, 6000, 120, 8500]
    assert oc.limit_at(pr, T0 - 1, -1) == (-1, T0)
    assert oc.limit_at(pr, T0, -1) == (10000, T0 + 60)
    assert oc.limit_at(pr, T0 + 59, -1) == (10000, T0 + 60)
    assert oc.limit_at(pr, T0 + 60, -1) == (6000, T0 + 120)
    assert oc.limit_at(pr, T0 + 299, -1) == (8500, T0 + 300)
    assert oc.limit_at(pr, T0 + 300, -1) == (-1, oc._FOREVER)
    # no startSchedule: from when it was set
    pr = oc.parse_profile(0, prof(1, "ChargePointMaxProfile", [(0, 10, 0)]), T0)
    assert pr[6] == T0 and oc.limit_at(pr, T0 + 10 ** 6, -1) == (10000, oc._FOREVER)


def test_recurring_daily_and_relative():
    pr = oc.parse_profile(1, prof(3, "TxDefaultProfile", [(0, 16, 0), (3600, 6, 0)], kind="Recurring",
                                  recurrencyKind="Daily", startSchedule="2026-12-01T20:00:00Z", duration=7200), T0)
    # day 5 after the start, 30 min in: 16 A until the hour
    assert oc.limit_at(pr, T0, -1) == (16000, T0 + 1800)
    assert oc.limit_at(pr, T0 + 1800, -1) == (6000, T0 + 5400)
    assert oc.limit_at(pr, T0 + 5400, -1) == (-1, T0 - 1800 + 86400)
    assert oc.limit_at(pr, T0 - 1800 + 86400, -1) == (16000, T0 + 86400 + 1800)
    assert code(oc.parse_profile, 1, prof(3, "TxDefaultProfile", [(0, 16, 0)], kind="Recurring",
                                          recurrencyKind="Daily"), T0) == "OccurenceConstraintViolation"
    rel = oc.parse_profile(1, prof(4, "TxProfile", [(0, 10, 0), (600, 32, 0)], kind="Relative"), T0)
    assert rel[6] == -1
    assert oc.limit_at(rel, T0, -1) == (-1, oc._FOREVER)  # no transaction: nothing to be relative to
    assert oc.limit_at(rel, T0 + 100, T0) == (10000, T0 + 600)
    assert oc.limit_at(rel, T0 + 600, T0) == (32000, oc._FOREVER)


def test_valid_from_to():
    pr = oc.parse_profile(0, prof(1, "ChargePointMaxProfile", [(0, 10, 0)], validFrom="2026-12-06T20:31:00Z",
                                  validTo="2026-12-06T20:32:00Z"), T0)
    assert oc.limit_at(pr, T0, -1) == (-1, T0 + 60)
    assert oc.limit_at(pr, T0 + 60, -1) == (10000, T0 + 120)
    assert oc.limit_at(pr, T0 + 120, -1) == (-1, oc._FOREVER)


def test_composite_stack_levels_and_purposes():
    ps = [
        oc.parse_profile(0, prof(1, "ChargePointMaxProfile", [(0, 20, 0)], stack=0), T0),
        oc.parse_profile(0, prof(2, "ChargePointMaxProfile", [(0, 12, 0), (60, 25, 0)], stack=1), T0),
        oc.parse_profile(0, prof(3, "TxDefaultProfile", [(0, 10, 0)]), T0),  # every connector
        oc.parse_profile(2, prof(4, "TxDefaultProfile", [(0, 8, 0)]), T0),  # connector 2's own
        oc.parse_profile(1, prof(5, "TxProfile", [(0, 6, 0)], transactionId=77), T0),
    ]
    # the highest stack level wins, even when it is looser
    assert oc.composite(ps, 1, T0, -1, -1) == (12000, 10000, T0 + 60)
    assert oc.composite(ps, 1, T0 + 60, -1, -1)[0] == 25000
    # connector 2: its own TxDefaultProfile before connector 0's
    assert oc.composite(ps, 2, T0, -1, -1)[1] == 8000
    # connector 1 with transaction 77: the TxProfile; another transaction: the default
    assert oc.composite(ps, 1, T0, 77, T0)[1] == 6000
    assert oc.composite(ps, 1, T0, 78, T0)[1] == 10000
    assert oc.composite([], 1, T0, 77, T0) == (-1, -1, oc._FOREVER)


def test_malformed_profiles():
    ok = prof(1, "TxProfile", [(0, 10, 0)])
    assert code(oc.parse_profile, 1, dict(ok, stackLevel=-1), T0) == "PropertyConstraintViolation"
    assert code(oc.parse_profile, 1, dict(ok, chargingProfilePurpose="Foo"), T0) == "PropertyConstraintViolation"
    assert code(oc.parse_profile, 1, prof(1, "TxProfile", [(5, 10, 0)]), T0) == "PropertyConstraintViolation"
    assert code(oc.parse_profile, 1, prof(1, "TxProfile", [(0, 10, 0), (0, 8, 0)]), T0) == \
        "PropertyConstraintViolation"
    assert code(oc.parse_profile, 1, prof(1, "TxProfile", [(0, -1, 0)]), T0) == "PropertyConstraintViolation"
    assert code(oc.parse_profile, 1, prof(1, "TxProfile", [(0, 10, 4)]), T0) == "PropertyConstraintViolation"
    assert code(oc.parse_profile, 1, prof(1, "TxProfile", [(0, "10", 0)]), T0) == "TypeConstraintViolation"
    assert code(oc.parse_profile, 1, prof(1, "TxProfile", [(i * 10, 10, 0) for i in range(25)]), T0) == \
        "OccurenceConstraintViolation"
    p = dict(ok)
    del p["chargingSchedule"]
    assert code(oc.parse_profile, 1, p, T0) == "OccurenceConstraintViolation"
    assert code(oc.parse_profile, 1, prof(1, "TxProfile", [(0, 10, 0)], startSchedule="yesterday"), T0) == \
        "TypeConstraintViolation"
    assert raises(OcppError, oc.parse_profile, 1, prof(1, "TxProfile", []), T0).code == \
        "OccurenceConstraintViolation"
