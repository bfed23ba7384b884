"""Modbus TCP framing: MBAP checks, request checks, replies built in place (CPython and MicroPython)."""
import struct

from pblib import mbtcp


def hexs(b, n=None):
    return "".join("%02X" % x for x in (b if n is None else b[:n]))


def frame(tid, unit, fn, *words, proto=0, length=None, tail=b""):
    # an MBAP frame: fn then 16-bit words, then tail bytes; length field from the content unless given
    pdu = bytes([fn]) + b"".join(struct.pack(">H", w) for w in words) + tail
    if length is None:
        length = 1 + len(pdu)
    return bytearray(struct.pack(">HHHB", tid, proto, length, unit) + pdu)


def buf(f):
    # as the server holds it: in a slot buffer of 260 bytes
    b = bytearray(260)
    b[: len(f)] = f
    return b


def test_frame_len_of_good_headers():
    assert mbtcp.frame_len(frame(1, 1, 3, 8092, 1)) == 12
    assert mbtcp.frame_len(frame(0xFFFF, 255, 3, 0, 125)) == 12
    assert mbtcp.frame_len(frame(7, 1, 16, 8044, 4, tail=bytes([8]) + bytes(8))) == 21
    assert mbtcp.frame_len(frame(1, 1, 3, length=2)) == 8  # the smallest: unit id and function
    assert mbtcp.frame_len(frame(1, 1, 3, length=254)) == 260  # the largest, fills a slot buffer


def test_frame_len_of_bad_headers():
    assert mbtcp.frame_len(frame(1, 1, 3, 8092, 1, proto=1)) == 0
    assert mbtcp.frame_len(frame(1, 1, 3, 8092, 1, proto=0x100)) == 0
    for n in (0, 1, 255, 256, 0x1006, 0xFFFF):
        assert mbtcp.frame_len(frame(1, 1, 3, length=n)) == 0, n


def check(f):
    return mbtcp.check(buf(f), len(f))


def test_check_reads():
    assert check(frame(1, 1, 3, 8092, 1)) == 0
    assert check(frame(1, 1, 3, 8000, 125)) == 0
    assert check(frame(1, 1, 3, 8000, 126)) == 3
    assert check(frame(1, 1, 3, 8000, 0)) == 3
    assert check(frame(1, 1, 3, 65535, 1)) == 0  # the last register
    assert check(frame(1, 1, 3, 65535, 2)) == 2  # past it
    assert check(frame(1, 1, 3, 65411, 125)) == 0
    assert check(frame(1, 1, 3, 65412, 125)) == 2


def test_check_writes():
    assert check(frame(1, 1, 6, 8093, 160)) == 0
    assert check(frame(1, 1, 6, 65535, 0xFFFF)) == 0  # fn 6: the second word is a value, not a count
    assert check(frame(1, 1, 6, 8094, 0)) == 0
    assert check(frame(1, 1, 16, 8044, 4, tail=bytes([8, 0, 7, 0, 230, 0, 230, 0, 230]))) == 0
    assert check(frame(1, 1, 16, 8044, 123, tail=bytes([246]) + bytes(246))) == 0  # 7 + 253: the largest frame
    assert check(frame(1, 1, 16, 8044, 3, tail=bytes([8]) + bytes(8))) == 3  # byte count is not 2 * count
    assert check(frame(1, 1, 16, 8044, 0, tail=bytes([0]))) == 3
    assert check(frame(1, 1, 16, 65535, 2, tail=bytes([4]) + bytes(4))) == 2


def test_check_malformed_lengths():
    assert check(frame(1, 1, 3, 8092)) == -1  # no count
    assert check(frame(1, 1, 3, 8092, 1, tail=b"\x00")) == -1
    assert check(frame(1, 1, 6, 8093)) == -1
    assert check(frame(1, 1, 6, 8093, 1, 1)) == -1
    assert check(frame(1, 1, 16, 8044, 1)) == -1  # no byte count
    assert check(frame(1, 1, 16, 8044, 1, tail=bytes([2, 0]))) == -1  # truncated data
    assert check(frame(1, 1, 16, 8044, 1, tail=bytes([2, 0, 1, 0]))) == -1  # one byte too many
    assert check(frame(1, 1, 3)) == -1  # only the function code


def test_check_function_and_unit():
    assert check(frame(1, 1, 4, 8092, 1)) == 1  # read input registers: not served
    assert check(frame(1, 1, 1)) == 1  # any length is fine for an unknown function
    assert check(frame(1, 1, 0x83, 0, 1)) == 1
    assert check(frame(1, 1, 43, tail=bytes(200))) == 1
    for unit in (0, 1, 2, 3, 247, 255):
        assert check(frame(1, unit, 3, 8092, 1)) == 0, unit
    for unit in (248, 250, 254):
        assert check(frame(1, unit, 3, 8092, 1)) == 10, unit  # gateway path unavailable
        assert check(frame(1, unit, 4, 8092, 1)) == 10, unit
    assert check(frame(1, 248, 3, 8092)) == -1  # malformed first


def test_reply_read_in_place():
    b = buf(frame(0x1234, 1, 3, 8062, 2))
    b[9:13] = b"\xff\xff\xff\xff"  # the handler's data: power -1 W, over the request's address and count
    n = mbtcp.reply(b, 0, 2)
    assert hexs(b, n) == "1234" "0000" "0007" "01" "03" "04" "FFFFFFFF"
    b = buf(frame(0xFFFF, 255, 3, 0, 125))
    b[9:259] = bytes(range(250))
    n = mbtcp.reply(b, 0, 125)
    assert n == 259 and hexs(b, 9) == "FFFF0000" "00FD" "FF03FA" and b[9:259] == bytes(range(250))


def test_reply_writes_echo():
    f = frame(7, 1, 6, 8093, 160)
    b = buf(f)
    assert mbtcp.reply(b, 0, 160) == 12 and b[:12] == f
    f = frame(8, 2, 16, 8044, 4, tail=bytes([8, 0, 7, 0, 230, 0, 230, 0, 230]))
    b = buf(f)
    n = mbtcp.reply(b, 0, 4)
    assert hexs(b, n) == "0008" "0000" "0006" "02" "10" "1F6C" "0004"


def test_reply_exceptions():
    for code in (1, 2, 3, 4, 6, 10, 11):
        b = buf(frame(0xBEEF, 3, 3, 8092, 1))
        assert hexs(b, mbtcp.reply(b, code, 1)) == "BEEF" "0000" "0003" "03" "83" "%02X" % code
    b = buf(frame(1, 0, 16, 9000, 1, tail=bytes([2, 0, 1])))
    assert hexs(b, mbtcp.reply(b, 2, 1)) == "0001000000030090" "02"
    b = buf(frame(2, 1, 0x2B, tail=bytes(50)))  # unknown function, long frame
    n = mbtcp.reply(b, 1, 0)
    assert n == 9 and hexs(b, 9) == "000200000003" "01" "AB" "01"
    b = buf(frame(3, 1, 0x83, 0, 1))  # an exception code as a request: stays 0x83
    assert hexs(b, mbtcp.reply(b, 1, 1)) == "000300000003" "01" "83" "01"
