# pblib.mqtt's packet code against the bytes MQTT 3.1.1 (and RFC 1035 for the
# DNS query) defines. Runs under CPython (pytest) and MicroPython (tools/mptest.py).
from pblib import mqtt


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError("no %s" % exc.__name__)


def test_remaining_length_encoding_at_every_boundary():
    # MQTT 3.1.1 table 2.4: the first and last value of each length
    cases = [
        (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"), (2097152, b"\x80\x80\x80\x01"),
        (268435455, b"\xff\xff\xff\x7f"), (321, b"\xc1\x02"),
    ]
    for n, enc in cases:
        b = bytearray(8)
        assert mqtt.put_len(b, 3, n) == 3 + len(enc), n
        assert bytes(b[3 : 3 + len(enc)]) == enc, n
        assert mqtt.get_len(b"\x30" + enc + b"rest", 1) == (n, 1 + len(enc)), n


def test_remaining_length_of_five_bytes_is_an_error():
    _raises(ValueError, mqtt.get_len, b"\xff\xff\xff\xff\x01", 0)


def test_connect_minimal():
    # fixed header, "MQTT", level 4, flags: clean session only, keepalive 60, client id
    assert bytes(mqtt.connect_packet("pb1", 60)) == b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03pb1"


def test_connect_with_retained_will_user_and_password():
    p = bytes(mqtt.connect_packet("c", 0x1234, "user", "pw", ("pb/status", "offline", True)))
    body = (b"\x00\x04MQTT\x04\xe6\x12\x34"  # user 0x80, password 0x40, will retain 0x20, will 0x04, clean 0x02
            b"\x00\x01c\x00\x09pb/status\x00\x07offline\x00\x04user\x00\x02pw")
    assert p == b"\x10" + bytes((len(body),)) + body


def test_connect_flags_each_alone():
    def flags(**kw):
        return mqtt.connect_packet("c", 60, kw.get("user"), kw.get("password"), kw.get("will"))[9]

    assert flags(will=("t", b"x", False)) == 0x06  # will, QoS 0, no retain
    assert flags(user="u") == 0x82
    assert flags(user="", password="") == 0xC2  # empty strings are still present
    assert flags() == 0x02


def test_connect_long_enough_for_a_two_byte_length():
    p = mqtt.connect_packet("c" * 200, 60)
    assert bytes(p[:3]) == b"\x10\xd4\x01"  # 10 + 2 + 200 = 212
    assert len(p) == 3 + 212


def test_publish_exact_bytes_and_retain_flag():
    b = bytearray(64)
    e = mqtt.put_publish(b, 5, "pb/E1/state", b'{"p":1}', False)
    want = b"\x30\x14\x00\x0bpb/E1/state" + b'{"p":1}'
    assert e == 5 + len(want) and bytes(b[5:e]) == want
    e = mqtt.put_publish(b, 0, "a", "", True)  # empty payload, retained
    assert bytes(b[:e]) == b"\x31\x03\x00\x01a"


def test_publish_two_byte_length():
    b = bytearray(300)
    e = mqtt.put_publish(b, 0, "t", b"x" * 200)
    assert bytes(b[:6]) == b"\x30\xcb\x01\x00\x01t"  # 2 + 1 + 200 = 203
    assert e == 3 + 203


def test_publish_that_does_not_fit_leaves_the_buffer_alone():
    b = bytearray(12)
    assert mqtt.put_publish(b, 2, "abc", b"12345") == -1  # needs 2 + 2 + 3 + 5 = 12 from offset 2
    assert b == bytearray(12)
    assert mqtt.put_publish(b, 0, "abc", b"12345") == 12  # exactly fits


def test_publish_refuses_bad_topics():
    b = bytearray(64)
    for t in ("", "a/+/b", "a/#"):
        _raises(ValueError, mqtt.put_publish, b, 0, t, b"x")


def test_parse_publish_qos0_and_qos1():
    body = b"\x00\x0epb/E1/set/curr" + b"16000"
    assert mqtt.parse_publish(0x30, body, len(body)) == ("pb/E1/set/curr", b"16000")
    body1 = b"\x00\x03a/b\x00\x07on"  # QoS 1: packet id 7 before the payload
    assert mqtt.parse_publish(0x32, body1, len(body1)) == ("a/b", b"on")
    buf = bytearray(64)  # the client's receive buffer: only [:n] counts
    buf[: len(body)] = body
    assert mqtt.parse_publish(0x31, buf, len(body)) == ("pb/E1/set/curr", b"16000")
    u = "pb/\u00e9".encode()
    body2 = bytes((0, len(u))) + u
    assert mqtt.parse_publish(0x30, body2, len(body2)) == ("pb/\u00e9", b"")


def test_parse_publish_malformed():
    _raises(ValueError, mqtt.parse_publish, 0x30, b"\x00\x09abc", 5)  # topic longer than the packet
    _raises(ValueError, mqtt.parse_publish, 0x30, b"\x00\x02\xff\xfe", 4)  # not UTF-8


def test_subscribe_packet():
    p = bytes(mqtt.subscribe_packet(0x0102, ["pb/+/set/#", "homeassistant/status"]))
    body = b"\x01\x02\x00\x0apb/+/set/#\x00\x00\x14homeassistant/status\x00"
    assert p == b"\x82" + bytes((len(body),)) + body


def test_dns_query_bytes():
    b = bytearray(64)
    n = mqtt.dns_query(b, 0xBEEF, "broker.lan")
    assert bytes(b[:n]) == (b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # id, RD, 1 question
                            b"\x06broker\x03lan\x00\x00\x01\x00\x01")  # A, IN
    _raises(ValueError, mqtt.dns_query, b, 1, "a..b")


def _reply(qid, rcode=0, answers=b"", count=0):
    q = b"\x06broker\x03lan\x00\x00\x01\x00\x01"
    return (bytes((qid >> 8, qid & 255, 0x81, 0x80 | rcode, 0, 1, 0, count, 0, 0, 0, 0)) + q + answers)


CNAME = b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x05\x02mq\xc0\x13"  # broker.lan CNAME mq.lan
A = b"\xc0\x2a\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\xa8\x01\x32"  # mq.lan A 192.168.1.50


def test_dns_answer_follows_to_the_a_record():
    r = _reply(0x1234, answers=CNAME + A, count=2)
    assert mqtt.dns_answer(r, len(r), 0x1234) == "192.168.1.50"
    buf = bytearray(512)
    buf[: len(r)] = r
    assert mqtt.dns_answer(buf, len(r), 0x1234) == "192.168.1.50"


def test_dns_answer_other_id_or_a_query_is_no_reply():
    r = _reply(0x1234, answers=A, count=1)
    assert mqtt.dns_answer(r, len(r), 0x1235) is None
    q = bytearray(64)
    n = mqtt.dns_query(q, 0x1234, "broker.lan")
    assert mqtt.dns_answer(q, n, 0x1234) is None  # QR bit clear
    assert mqtt.dns_answer(r, 11, 0x1234) is None


def test_dns_answer_errors():
    nx = _reply(7, rcode=3)
    _raises(ValueError, mqtt.dns_answer, nx, len(nx), 7)
    only_cname = _reply(7, answers=CNAME, count=1)
    _raises(ValueError, mqtt.dns_answer, only_cname, len(only_cname), 7)
    cut = _reply(7, answers=A, count=1)
    _raises(ValueError, mqtt.dns_answer, cut, len(cut) - 2, 7)  # address cut off


def test_numeric_host():
    assert mqtt._ip("192.168.1.5") == "192.168.1.5"
    for h in ("broker.lan", "1.2.3", "1.2.3.256", "1.2.3.4.5", "", "a.b.c.d", "1.2.3.-4"):
        assert mqtt._ip(h) is None, h


def test_room_is_what_a_publish_can_take():
    # Client.room(): the bytes free in the outgoing buffer, counting the
    # sent head that publish() moves out of the way (not while it is being written)
    c = mqtt.Client("c", "127.0.0.1", buf_size=64)
    assert c.room() == 64
    assert c.publish("t", b"x" * 10)  # 2 + 2 + 1 + 10 = 15 bytes
    assert c.room() == 49
    c._h = 15  # (as the writer does once the head packet is out)
    assert c.room() == 64
    c._out = True  # the head is being written: it cannot move
    assert c.room() == 49
    c._out = False
    assert c.publish("t", b"y" * 59) is True and c.room() == 0  # 64 bytes, after moving the queue
    assert c.publish("t", b"") is False and c.dropped == 1
