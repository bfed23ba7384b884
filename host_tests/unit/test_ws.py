"""pblib.ws pure parts: URL parsing, the handshake key, frame heads, masking, frame lengths.

Runs under CPython (pytest) and the MicroPython unix port (test_micropython_units.py).
Expected bytes come from RFC 6455 (§1.3 the accept key, §5.7 the masked "Hello").
"""
from pblib import ws


def raises(fn, *args):
    try:
        fn(*args)
    except ValueError:
        return True
    return False


def test_parse_url():
    assert ws.parse_url("ws://cs.example:8180/steve/websocket/CentralSystemService/CP_1") == (
        False, "cs.example", 8180, "/steve/websocket/CentralSystemService/CP_1")
    assert ws.parse_url("wss://cs.example/ocpp/CP1") == (True, "cs.example", 443, "/ocpp/CP1")
    assert ws.parse_url("ws://10.0.0.2") == (False, "10.0.0.2", 80, "/")
    assert ws.parse_url("ws://h:1/p?x=1") == (False, "h", 1, "/p?x=1")
    assert ws.parse_url("ws://[::1]:9000/cp") == (False, "::1", 9000, "/cp")
    assert ws.parse_url("wss://[fe80::1]/") == (True, "fe80::1", 443, "/")


def test_parse_url_rejects():
    for url in ("", "http://h/", "ws:/h", "ws://", "ws://:80/", "ws://h:0/", "ws://h:65536/", "ws://h:x/",
                "ws://u:p@h/", "ws://h/a b", "ws://h/a\r\nX: y", "ws://h/#frag", "ws://[::1/", "ws://[::1]x/",
                "ws://h/\u00e9", "WS://h/"):
        assert raises(ws.parse_url, url), url


def test_accept_key_rfc6455():
    assert ws.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_head_lengths():
    key = b"\x01\x02\x03\x04"
    buf = bytearray(14)
    assert ws.head(buf, ws.TEXT, 0, key) == 6
    assert bytes(buf[:6]) == b"\x81\x80\x01\x02\x03\x04"
    assert ws.head(buf, ws.TEXT, 125, key) == 6
    assert bytes(buf[:6]) == b"\x81\xfd\x01\x02\x03\x04"
    assert ws.head(buf, ws.BINARY, 126, key) == 8
    assert bytes(buf[:8]) == b"\x82\xfe\x00\x7e\x01\x02\x03\x04"
    assert ws.head(buf, ws.TEXT, 65535, key) == 8
    assert bytes(buf[:4]) == b"\x81\xfe\xff\xff"
    assert ws.head(buf, ws.TEXT, 65536, key) == 14
    assert bytes(buf) == b"\x81\xff\x00\x00\x00\x00\x00\x01\x00\x00\x01\x02\x03\x04"
    assert ws.head(buf, ws.CLOSE, 2, key) == 6
    assert buf[0] == 0x88 and buf[1] == 0x82
    assert ws.head(buf, ws.PONG, 3, key) == 6
    assert buf[0] == 0x8A


def test_mask_rfc6455_hello():
    key = b"\x37\xfa\x21\x3d"
    buf = bytearray(11)
    n = ws.head(buf, ws.TEXT, 5, key)
    ws.mask(buf, n, b"Hello", 0, 5, key, 0)
    assert bytes(buf) == b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    out = bytearray(5)
    ws.mask(out, 0, buf, n, 5, key, 0)  # masking twice gives the text back
    assert bytes(out) == b"Hello"


def test_mask_in_pieces_equals_whole():
    # the client masks a long message through its small send buffer piece by piece
    key = b"\xa1\x0b\x5c\xf7"
    src = bytes((i * 7 + 3) & 255 for i in range(1000))
    whole = bytearray(1000)
    ws.mask(whole, 0, src, 0, 1000, key, 0)
    pieces = bytearray(1000)
    j = 0
    for k in (1, 3, 250, 6, 513, 227):
        ws.mask(pieces, j, src, j, k, key, j)
        j += k
    assert j == 1000 and pieces == whole
    assert whole != bytearray(src)


def test_frame_len_server_frames():
    # server frames are unmasked: 2, 4 or 10 head bytes
    assert ws.frame_len(b"\x81\x05Hello", 0, 7) == (2, 5)
    assert ws.frame_len(b"\x81\x7d", 0, 2) == (2, 125)
    assert ws.frame_len(b"\x82\x7e\x00\x7e", 0, 4) == (4, 126)
    assert ws.frame_len(b"\x82\x7e\xff\xff", 0, 4) == (4, 65535)
    assert ws.frame_len(b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 0, 10) == (10, 65536)
    assert ws.frame_len(b"\x81\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", 0, 10) == (10, (1 << 63) - 1)
    # a masked one (which the client then refuses) has 4 more head bytes
    assert ws.frame_len(b"\x81\x85\x37\xfa\x21\x3d", 0, 6) == (6, 5)
    # at an offset
    assert ws.frame_len(b"xx\x89\x00", 2, 4) == (2, 0)


def test_frame_len_needs_more():
    assert ws.frame_len(b"", 0, 0) == (0, 0)
    assert ws.frame_len(b"\x81", 0, 1) == (0, 0)
    assert ws.frame_len(b"\x81\x7e\x00", 0, 3) == (0, 0)
    assert ws.frame_len(b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00", 0, 9) == (0, 0)
    assert ws.frame_len(b"\x81\x85\x37\xfa\x21", 0, 5) == (0, 0)
    assert ws.frame_len(b"\x81\x05Hello", 0, 1) == (0, 0)  # n counts, not len(buf)


def test_round_trip_125_126_1000():
    # what the client writes, read back as a server would: head, key, unmasked payload
    key = b"\x10\x20\x30\x40"
    for n in (0, 1, 125, 126, 1000):
        src = bytes((i * 13) & 255 for i in range(n))
        buf = bytearray(n + 14)
        h = ws.head(buf, ws.BINARY, n, key)
        ws.mask(buf, h, src, 0, n, key, 0)
        hl, k = ws.frame_len(buf, 0, h + n)
        assert (hl, k) == (h, n)
        assert buf[0] == 0x82 and buf[1] & 0x80
        out = bytearray(n)
        ws.mask(out, 0, buf, hl, n, bytes(buf[hl - 4 : hl]), 0)
        assert bytes(out) == src
