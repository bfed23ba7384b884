"""pblib.ocppj pure parts: message decoding with its CALLERROR codes, payload checks.

Runs under CPython (pytest) and the MicroPython unix port (test_micropython_units.py).
"""
from pblib import ocppj


def bad(data):
    try:
        ocppj.decode(data)
    except ocppj.OcppError as e:
        return e.code, e.id, e.t
    raise AssertionError("decoded: %r" % (data,))


def fails(obj, spec):
    try:
        ocppj.check(obj, spec)
    except ocppj.OcppError as e:
        return e.code, e.description
    raise AssertionError("passed: %r" % (obj,))


def test_decode_the_three_kinds():
    assert ocppj.decode(b'[2,"19223201","BootNotification",{"chargePointVendor":"x"}]') == [
        2, "19223201", "BootNotification", {"chargePointVendor": "x"}]
    assert ocppj.decode('[3, "19223201", {"status": "Accepted"}]') == [3, "19223201", {"status": "Accepted"}]
    assert ocppj.decode(b'[4,"162376037","NotSupported","SetDisplayMessage is not supported",{}]') == [
        4, "162376037", "NotSupported", "SetDisplayMessage is not supported", {}]
    assert ocppj.decode(b'[2,"' + b"i" * 36 + b'","Heartbeat",{}]')[1] == "i" * 36


def test_decode_not_json():
    # the id of a broken CALL is found in its text; a CALLERROR can be answered
    assert bad(b'[2, "abc", "Heartbeat", {') == ("FormationViolation", "abc", 2)
    # (MicroPython's json takes "," and ":" loosely, so "not JSON" here means bad tokens or an early end)
    assert bad(b' [ 2 ,\t"x-1","Authorize",{"idTag":nul}]') == ("FormationViolation", "x-1", 2)
    assert bad('[2,"\u00e9t\u00e9","A",{x}]') == ("FormationViolation", "\u00e9t\u00e9", 2)
    # no id to be found: dropped
    for data in (b"hello", b"", b"[2,", b'[2,"unterminated', b'[2,"",', b'[3,"x",{', b'[2,"a\\"b","A",',
                 b'[2,"' + b"i" * 37 + b'",', b"\xff\xfe"):
        assert bad(data) == ("FormationViolation", None, 0), data


def test_decode_too_deep():
    # CPython: not JSON; MicroPython at 96 KB: no heap for 5000 nested lists (then InternalError would
    # be the answer, had an id been found); dropped either way
    assert bad(b"[" * 5000) in (("FormationViolation", None, 0), ("InternalError", None, 0))


def test_decode_wrong_shapes():
    assert bad(b'{"a":1}') == ("FormationViolation", None, 0)
    assert bad(b"[]") == ("FormationViolation", None, 0)
    assert bad(b'"[2]"') == ("FormationViolation", None, 0)
    assert bad(b"5") == ("FormationViolation", None, 0)
    # unknown message types: PropertyConstraintViolation (as the PyPI ocpp library), answerable if an id is there
    assert bad(b'[5,"x",{}]') == ("PropertyConstraintViolation", "x", 0)
    assert bad(b'[1,"x"]') == ("PropertyConstraintViolation", "x", 0)
    assert bad(b'["2","x","A",{}]') == ("PropertyConstraintViolation", "x", 0)
    assert bad(b'[2.0,"x","A",{}]') == ("PropertyConstraintViolation", "x", 0)
    assert bad(b'[true,"x","A",{}]') == ("PropertyConstraintViolation", "x", 0)
    assert bad(b"[9]") == ("PropertyConstraintViolation", None, 0)
    # a CALL of the wrong shape
    assert bad(b'[2,"x","A"]') == ("FormationViolation", "x", 2)
    assert bad(b'[2,"x","A",{},1]') == ("FormationViolation", "x", 2)
    assert bad(b'[2,"x",7,{}]') == ("FormationViolation", "x", 2)
    assert bad(b'[2,"x","A",[]]') == ("FormationViolation", "x", 2)
    assert bad(b'[2,"x","A",null]') == ("FormationViolation", "x", 2)
    # answers of the wrong shape: typed, so that they are not answered
    assert bad(b'[3,"x",[]]') == ("FormationViolation", "x", 3)
    assert bad(b'[3,"x"]') == ("FormationViolation", "x", 3)
    assert bad(b'[4,"x","GenericError"]') == ("FormationViolation", "x", 4)
    assert bad(b'[4,"x",1,"",{}]') == ("FormationViolation", "x", 4)
    # no usable id
    assert bad(b'[2,7,"A",{}]') == ("FormationViolation", None, 2)
    assert bad(b'[2,"","A",{}]') == ("FormationViolation", None, 2)
    assert bad(b'[2,"' + b"i" * 37 + b'","A",{}]') == ("FormationViolation", None, 2)
    assert bad(b"[2]") == ("FormationViolation", None, 2)


def test_decode_keeps_description():
    try:
        ocppj.decode(b'[2,"x","A"]')
    except ocppj.OcppError as e:
        assert e.description == "bad call" and str(e) == "bad call"


def test_ocpp_error():
    e = ocppj.OcppError("NotSupported", "no such thing", {"k": 1})
    assert (e.code, e.description, e.details) == ("NotSupported", "no such thing", {"k": 1})
    assert ocppj.OcppError("GenericError").details is None


BOOT = "chargePointVendor=s20 chargePointModel=s20 chargePointSerialNumber?=s25 firmwareVersion?=s50"
CONF = "status=eAccepted/Pending/Rejected currentTime=t interval=i0:"


def test_check_passes():
    p = {"chargePointVendor": "pbctl", "chargePointModel": "Power Brain", "extra": [1]}
    assert ocppj.check(p, BOOT) is p
    assert ocppj.check({"status": "Pending", "currentTime": "2026-07-05T10:00:00.000Z", "interval": 0}, CONF)
    spec = "n=d f=d b=b o=o a=a3 k=i-5:5 s=s"
    assert ocppj.check({"n": 1, "f": 2.5, "b": False, "o": {}, "a": [1, 2, 3], "k": -5, "s": ""}, spec)
    assert ocppj.check({"n": 1, "f": 1, "b": True, "o": {"x": 1}, "a": [], "k": 5, "s": "x" * 300}, spec)


def test_check_missing_is_occurence():
    assert fails({"chargePointVendor": "x"}, BOOT) == ("OccurenceConstraintViolation", "chargePointModel: missing")
    assert fails({}, "a?=i b=i") == ("OccurenceConstraintViolation", "b: missing")


def test_check_types():
    T = "TypeConstraintViolation"
    assert fails({"chargePointVendor": 12, "chargePointModel": "m"}, BOOT) == (T, "chargePointVendor: invalid")
    assert fails({"chargePointVendor": "x" * 21, "chargePointModel": "m"}, BOOT)[0] == T  # CiString20Type
    assert fails({"i": True}, "i=i")[0] == T  # JSON true is no integer
    assert fails({"i": 1.0}, "i=i")[0] == T
    assert fails({"i": "1"}, "i=i")[0] == T
    assert fails({"d": "1.5"}, "d=d")[0] == T
    assert fails({"d": False}, "d=d")[0] == T
    assert fails({"b": 1}, "b=b")[0] == T
    assert fails({"o": []}, "o=o")[0] == T
    assert fails({"a": {}}, "a=a")[0] == T
    assert fails({"e": 1}, "e=eA/B")[0] == T
    assert fails({"x": None}, "x?=s")[0] == T  # null is not a missing field
    assert fails([], BOOT) == (T, "payload: not an object")


def test_check_values():
    P = "PropertyConstraintViolation"
    assert fails({"status": "accepted", "currentTime": "2026-07-05T10:00:00Z", "interval": 1}, CONF) == (
        P, "status: invalid")
    assert fails({"status": "Accepted", "currentTime": "2026-07-05T10:00:00Z", "interval": -1}, CONF) == (
        P, "interval: invalid")
    assert fails({"k": 6}, "k=i-5:5")[0] == P
    assert fails({"k": -6}, "k=i-5:5")[0] == P
    assert fails({"k": 1 << 70}, "k=i:100")[0] == P
    assert fails({"e": "A/B"}, "e=eA/B")[0] == P
    assert fails({"a": [1, 2, 3, 4]}, "a=a3") == ("OccurenceConstraintViolation", "a: invalid")


def test_check_datetime():
    T = "TypeConstraintViolation"
    good = ("2026-07-05T10:00:00Z", "2026-07-05T10:00:00.123+02:00", "2026-07-05T10:00:00")
    for s in good:
        assert ocppj.check({"t": s}, "t=t")
    for s in ("2026-07-05 10:00:00Z", "2026-7-5T10:00:00Z", "20260705T100000Z", "2026-07-05T10:00", "",
              "2026-07-05T10:00:00" + "0" * 30, "2026-07-05T1a:00:00Z", "\u00e9026-07-05T10:00:00Z"):
        assert fails({"t": s}, "t=t")[0] == T, s
