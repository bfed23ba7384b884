"""RTU framing and CRC: exact bytes on the wire (CPython and MicroPython)."""
from pblib import rtu


def hexs(b, n=None):
    return "".join("%02X" % x for x in (b if n is None else b[:n]))


def test_crc16_known_vectors():
    assert rtu.crc16(bytes([0x01, 0x03, 0x00, 0x00, 0x00, 0x0A])) == 0xCDC5
    assert rtu.crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS check value
    assert rtu.crc16(b"") == 0xFFFF
    assert rtu.crc16(b"\x01\x03\x00\x00", 2) == rtu.crc16(b"\x01\x03")


def test_build_read_frame_bytes():
    buf = bytearray(256)
    n = rtu.build(buf, 1, 3, 0, 10)
    assert hexs(buf, n) == "01030000000AC5CD"
    n = rtu.build(buf, 2, 3, 8002, 10)  # meter1 read=8002&count=10
    assert n == 8
    assert hexs(buf, 6) == "02031F42000A"
    assert rtu.crc16(buf, 8) == 0  # a frame with its CRC checks to zero


def test_build_write_frames():
    buf = bytearray(256)
    n = rtu.build(buf, 1, 6, 8044, 7)
    assert hexs(buf, n - 2) == "01061F6C0007"
    assert rtu.crc16(buf, n) == 0
    n = rtu.build(buf, 1, 16, 8044, 0, bytes([0, 7, 0, 230, 0, 230, 0, 230]))
    assert n == 7 + 8 + 2
    assert hexs(buf, n - 2) == "01101F6C00040800070" + "0E600E600E6"
    assert rtu.crc16(buf, n) == 0


def _reply(*body):
    b = bytearray(body) + b"\x00\x00"
    c = rtu.crc16(b, len(b) - 2)
    b[-2] = c & 0xFF
    b[-1] = c >> 8
    return b


def test_check_reply_ok_and_each_error():
    req = bytearray(8)
    rtu.build(req, 2, 3, 8062, 2)
    good = _reply(2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF)
    assert rtu.check_reply(req, good, len(good)) == 0
    bad = bytearray(good)
    bad[-1] ^= 0x55
    assert rtu.check_reply(req, bad, len(bad)) == rtu.CRC
    other = _reply(3, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF)
    assert rtu.check_reply(req, other, len(other)) == rtu.WRONG_SLAVE
    assert rtu.check_reply(req, good, len(good) - 3) == rtu.TRUNCATED
    assert rtu.check_reply(req, good, 3) == rtu.TRUNCATED
    exc = _reply(2, 0x83, 2)
    assert rtu.check_reply(req, exc, 5) == rtu.EXCEPTION
    wrongfn = _reply(2, 4, 4, 0, 0, 0, 0)
    assert rtu.check_reply(req, wrongfn, len(wrongfn)) == rtu.BAD_REPLY
    badcount = _reply(2, 3, 2, 0, 0, 0, 0)
    assert rtu.check_reply(req, badcount, len(badcount)) == rtu.BAD_REPLY


def test_check_write_echo():
    req = bytearray(8)
    rtu.build(req, 1, 6, 8093, 160)
    echo = bytearray(req)
    assert rtu.check_reply(req, echo, 8) == 0
    wrong = _reply(1, 6, 0x1F, 0x9D, 0, 161)
    assert rtu.check_reply(req, wrong, 8) == rtu.BAD_REPLY


def test_error_texts():
    assert str(rtu.ModbusError(rtu.EXCEPTION, 2)) == "modbus exception 2: illegal data address"
    assert str(rtu.ModbusError(rtu.EXCEPTION, 1)) == "modbus exception 1: illegal function"
    assert str(rtu.ModbusError(rtu.EXCEPTION, 99)) == "modbus exception 99: unknown"
    assert str(rtu.ModbusError(rtu.TIMEOUT)) == "modbus timeout"
    assert str(rtu.ModbusError(rtu.CRC)) == "modbus crc error"
    assert str(rtu.ModbusError(rtu.WRONG_SLAVE)) == "modbus reply from wrong slave id"
    assert str(rtu.ModbusError(rtu.TRUNCATED)) == "modbus truncated reply"
