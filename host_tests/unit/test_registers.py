"""Register codec and maps (API.md §1, REGISTERS.md) on both interpreters."""
from pblib import registers as r
from unitcheck import raises

METER_KEYS = ("8000d 8002 8003 8004 8006 8007 8008s 8016s 8040 8041 8042d 8044 8045 8046 "
              "8047 8050q 8054d 8056 8057 8058q 8062d 8064d 8066d 8068d 8070 8071 8120d").split()


def test_parse_addr():
    assert r.parse_addr("8062d") == (8062, "d")
    assert r.parse_addr("8050q") == (8050, "q")
    assert r.parse_addr("8016s") == (8016, "s")
    assert r.parse_addr("8002") == (8002, "")
    for bad in ("", "d", "80x2", "-1", "65536", "8002x", "8002dd", " 8002", "1e3"):
        e = raises(r.CodecError, r.parse_addr, bad)
        assert e.args[0] == "bad register address", bad


def test_meter_map_keys_are_the_documents():
    assert [str(e[0]) + e[1] for e in r.entries(r.METER)] == METER_KEYS


def test_evse_map_keys_order():
    keys = [str(e[0]) + e[1] for e in r.entries(r.EVSE)]
    assert keys[: len(METER_KEYS)] == METER_KEYS
    assert keys[len(METER_KEYS):] == ["8086", "8087", "8092", "8093", "8094", "8096s", "8112", "8113"]


def test_runs_cover_only_mapped_registers():
    assert r.runs(r.METER) == [(8000, 32), (8040, 8), (8050, 22), (8120, 2)]
    assert r.runs(r.EVSE) == [(8000, 32), (8040, 8), (8050, 22), (8086, 2), (8092, 3),
                              (8096, 15), (8112, 2), (8120, 2)]


def test_decode_document_values():
    b = bytes([0xCF, 0x05, 0, 0])
    assert r.decode(b, 0, "d", 2) == -821755904
    assert r.decode(bytes([1, 0, 0, 0]), 0, "d", 2) == 16777216
    assert r.decode(b"\xff\xff\xff\xff", 0, "d", 2) == -1
    assert r.decode(b"\xff\xff", 0, "", 1) == 65535
    assert r.decode(b"\xff" * 8, 0, "q", 4) == -1
    assert r.decode(b"\x7f" + b"\xff" * 7, 0, "q", 4) == (1 << 63) - 1
    s = b"cFos Power Brain" + b"\x00" * 16
    assert r.decode(s, 0, "s", 16) == "cFos Power Brain"
    assert r.decode(b"fcf5-c46d-310c\x00\x00", 0, "s", 8) == "fcf5-c46d-310c"
    assert r.decode(b"ab\x00c", 0, "s", 2) == "ab"


def test_encode_roundtrip_and_ranges():
    buf = bytearray(8)
    for kind, regs, v in (("", 1, 7), ("", 1, 65535), ("d", 2, -821755904), ("q", 4, 1), ("q", 4, -2)):
        r.encode(buf, 0, kind, regs, v)
        got = r.decode(buf, 0, kind, regs)
        want = v if kind else v & 0xFFFF
        assert got == want, (kind, v, got)
    r.encode(buf, 0, "", 1, -1)
    assert buf[0] == 0xFF and buf[1] == 0xFF
    for kind, regs, v in (("", 1, 65536), ("", 1, -32769), ("d", 2, 1 << 32), ("q", 4, 1 << 64), ("", 1, True),
                          # d and q are signed: what does not read back as written is out of range
                          ("d", 2, 0x80000000), ("d", 2, 4294967295), ("q", 4, 1 << 63), ("d", 2, -0x80000001)):
        e = raises(r.CodecError, r.encode, buf, 0, kind, regs, v)
        assert e.args[0] == "value out of range"
    for kind, regs, v in (("d", 2, 0x7FFFFFFF), ("d", 2, -0x80000000), ("q", 4, (1 << 63) - 1), ("q", 4, -(1 << 63))):
        r.encode(buf, 0, kind, regs, v)
        assert r.decode(buf, 0, kind, regs) == v, (kind, v)
    r.encode(buf, 0, "s", 4, "abc")
    assert bytes(buf) == b"abc\x00\x00\x00\x00\x00"
    assert raises(r.CodecError, r.encode, buf, 0, "s", 2, "abcde").args[0] == "value out of range"


def test_check_write_sizes():
    assert r.check_write(r.EVSE, 8044, "", 1) == 1
    assert r.check_write(r.EVSE, 8044, "", 4) == 4  # values=[7,230,230,230]
    assert r.check_write(r.EVSE, 8050, "q", 1) == 4
    assert r.check_write(r.EVSE, 8093, "", 1) == 1
    assert raises(r.CodecError, r.check_write, r.EVSE, 8044, "d", 1).args[0] == "bad modbus register size"
    assert raises(r.CodecError, r.check_write, r.EVSE, 8050, "", 1).args[0] == "bad modbus register size"
    assert raises(r.CodecError, r.check_write, r.EVSE, 8051, "", 1).args[0] == "bad modbus register size"
    assert raises(r.CodecError, r.check_write, r.EVSE, 8062, "d", 1).args[0] == "register is read-only"
    assert raises(r.CodecError, r.check_write, r.METER, 8002, "", 1).args[0] == "register is read-only"
    assert raises(r.CodecError, r.check_write, r.EVSE, 8047, "", 4).args[0] == "bad modbus register size"
    # outside the map: passed through for the device to judge
    assert r.check_write(r.EVSE, 9000, "d", 2) == 4
    assert raises(r.CodecError, r.check_write, r.EVSE, 9000, "", 124).args[0] == "bad count"


def test_parse_values_and_ints():
    assert r.parse_values("[7,230,230,230 ]") == [7, 230, 230, 230]
    assert r.parse_values("[ -1 , 2]") == [-1, 2]
    assert r.parse_int("-5") == -5
    assert r.parse_int("+5") == 5
    # a decimal fraction is dropped toward zero (INTEGRATIONS.md §1: clients build values from floats)
    assert (r.parse_int("7.0"), r.parse_int("-7.9"), r.parse_int("8029.999999999999"), r.parse_int("5.")) == (7, -7, 8029, 5)
    assert r.parse_values("[1.5, 2.0]") == [1, 2]
    for bad in ("", "[]", "[1,,2]", "7,8", "[a]", "[1.x]", "[1"):
        assert raises(r.CodecError, r.parse_values, bad).args[0] == "bad value", bad
    for bad in ("", "x", ".5", "1.0.0", "1.e5", "0x10", "--1", " ", "1.-0"):
        assert raises(r.CodecError, r.parse_int, bad).args[0] == "bad value", bad
