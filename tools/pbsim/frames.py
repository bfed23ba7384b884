"""Modbus RTU frames: CRC-16, frame lengths, request decoding, exception replies."""


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def add_crc(body):
    c = crc16(body)
    return bytes(body) + bytes((c & 0xFF, c >> 8))


def crc_ok(frame):
    return len(frame) >= 4 and crc16(frame[:-2]) == (frame[-2] | (frame[-1] << 8))


def exception_reply(sid, fn, code):
    return add_crc(bytes((sid, (fn | 0x80) & 0xFF, code & 0xFF)))


def request_len(buf):
    """Length of the request frame starting buf: int, None (need more), 0 (unknown: gap)."""
    if len(buf) < 2:
        return None
    fn = buf[1]
    if fn in (3, 6):
        return 8
    if fn == 16:
        return 9 + buf[6] if len(buf) >= 7 else None
    return 0


def reply_len(buf):
    """Length of the reply frame starting buf: int, None (need more), 0 (unknown: gap)."""
    if len(buf) < 2:
        return None
    fn = buf[1]
    if fn & 0x80:
        return 5
    if fn == 3:
        return 5 + buf[2] if len(buf) >= 3 else None
    if fn in (6, 16):
        return 8
    return 0


def decode_request(frame):
    """-> (addr, count, values) of a fn 3/6/16 request, else (None, None, None)."""
    fn = frame[1]
    if fn == 3 and len(frame) == 8:
        return (frame[2] << 8) | frame[3], (frame[4] << 8) | frame[5], None
    if fn == 6 and len(frame) == 8:
        return (frame[2] << 8) | frame[3], 1, [(frame[4] << 8) | frame[5]]
    if fn == 16 and len(frame) >= 9:
        n = frame[6] // 2
        vals = [(frame[7 + 2 * i] << 8) | frame[8 + 2 * i] for i in range(n)]
        return (frame[2] << 8) | frame[3], (frame[4] << 8) | frame[5], vals
    return None, None, None
