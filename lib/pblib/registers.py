"""Power Brain register maps and the `ADDR[d|q|s]` codec of API.md §1.

A map entry is (addr, key_suffix, kind, regs, access) — `entries(map)`
yields them in map order:
- kind is the value type: "" 16-bit unsigned, "d" 32-bit signed, "q" 64-bit
  signed, "s" string (2 ASCII bytes per register, high byte first).
- key_suffix is what `read=all` prints after the address; it differs from
  kind only for 8004 (32-bit, printed without suffix as in the source).
- access: R read-only, RW read/write (device keeps it in flash), W write-only,
  V read/write volatile (the only ones the control loop may write).
A map itself is a bytes constant of 4 bytes an entry (address - 8000, kind
code | 4 if printed without suffix, registers, access): a few hundred bytes
instead of kilobytes of tuples on the heap.
"""
from micropython import const

R = const(1)
W = const(2)
RW = const(3)
V = const(7)  # RW | volatile

_KINDS = ("", "d", "q", "s")
# Generated from REGISTERS.md; per entry: address - 8000, kind (0 "", 1 d, 2 q,
# 3 s; | 4 = printed without suffix), registers, access (1 R, 2 W, 3 RW, 7 V).
# Common block 8000..8071 and 8120; the EVSE adds 8086 disconnect_cp (V),
# 8087 relay_select (V), 8092 cp_state, 8093 charging_cur_limit [0.1 A] (V),
# 8094 charging_enable (V), 8096s last_rfid, 8112 meter_type, 8113 features.
_COMMON = (
    b"\x00\x01\x02\x01\x02\x00\x01\x01\x03\x00\x01\x01\x04\x05\x02\x01\x06\x00\x01\x01\x07\x00\x01\x01\x08\x03\x08\x01\x10\x03\x10\x01\x28\x00\x01\x03\x29\x00\x01\x01\x2a\x01\x02\x03\x2c\x00\x01\x03"
    b"\x2d\x00\x01\x03\x2e\x00\x01\x03\x2f\x00\x01\x03\x32\x02\x04\x03\x36\x01\x02\x01\x38\x00\x01\x01\x39\x00\x01\x01\x3a\x02\x04\x03\x3e\x01\x02\x01\x40\x01\x02\x01\x42\x01\x02\x01\x44\x01\x02\x01"
    b"\x46\x00\x01\x02\x47\x00\x01\x01\x78\x01\x02\x01"
)
METER = _COMMON
EVSE = _COMMON + (
    b"\x56\x00\x01\x07\x57\x00\x01\x07\x5c\x00\x01\x01\x5d\x00\x01\x07\x5e\x00\x01\x07\x60\x03\x0f\x01\x70\x00\x01\x01\x71\x00\x01\x01"
)


def entries(regmap):
    """(addr, key_suffix, kind, regs, access) of every entry, in map order."""
    for i in range(0, len(regmap), 4):
        k = regmap[i + 1]
        kind = _KINDS[k & 3]
        yield 8000 + regmap[i], "" if k & 4 else kind, kind, regmap[i + 2], regmap[i + 3]


_WIDTH = {"": 1, "d": 2, "q": 4}
# what a write may hold: 16-bit -32768..65535 (two's complement, API.md §1); d and q are
# signed (REGISTERS.md: read back as written, never as a different number)
_LIMITS = {"": (-0x8000, 0xFFFF), "d": (-0x80000000, 0x7FFFFFFF), "q": (-(1 << 63), (1 << 63) - 1)}


class CodecError(ValueError):
    pass


def parse_addr(text):
    """'8062d' -> (8062, 'd'). Raises CodecError("bad register address")."""
    kind = ""
    if text and text[-1] in "dqs":
        kind = text[-1]
        text = text[:-1]
    if not text or not text.isdigit() or len(text) > 5:
        raise CodecError("bad register address")
    addr = int(text)
    if addr > 0xFFFF:
        raise CodecError("bad register address")
    return addr, kind


def find(regmap, addr):
    """The map entry starting at addr, or None."""
    for e in entries(regmap):
        if e[0] == addr:
            return e
    return None


def _covering(regmap, addr):
    for e in entries(regmap):
        if e[0] <= addr < e[0] + e[3]:
            return e
    return None


def width(regmap, addr, kind):
    """Registers one value of `kind` at addr occupies."""
    if kind == "s":
        e = find(regmap, addr)
        if e is None or e[2] != "s":
            raise CodecError("bad modbus register size")
        return e[3]
    return _WIDTH[kind]


def decode(buf, off, kind, regs):
    """Value of `kind` from big-endian register bytes buf[off:off+2*regs]."""
    if kind == "s":
        end = off + 2 * regs
        i = off
        while i < end and buf[i]:
            i += 1
        # ASCII by the register map; a byte >= 128 (noise, a foreign device)
        # shows as "?" rather than failing the whole read with UnicodeError
        b = bytearray(buf[off:i])
        for i in range(len(b)):
            if b[i] > 127:
                b[i] = 63
        return str(b, "utf-8")
    v = 0
    for i in range(off, off + 2 * _WIDTH[kind]):
        v = (v << 8) | buf[i]
    if kind == "d" and v & 0x80000000:
        v -= 0x100000000
    elif kind == "q" and v >> 63:
        v -= 1 << 64
    return v


def encode(buf, off, kind, regs, value):
    """Write value into buf[off:off+2*regs]; raises CodecError when it does not fit."""
    if kind == "s":
        if not isinstance(value, str):
            raise CodecError("bad value")
        b = value.encode()
        if len(b) > 2 * regs:
            raise CodecError("value out of range")
        for i in range(2 * regs):
            buf[off + i] = b[i] if i < len(b) else 0
        return
    lo, hi = _LIMITS[kind]
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise CodecError("value out of range")
    n = 2 * _WIDTH[kind]
    if value < 0:
        value += 1 << (8 * n)
    for i in range(n - 1, -1, -1):
        buf[off + i] = value & 0xFF
        value >>= 8


def check_write(regmap, addr, kind, count):
    """Validate writing `count` values of `kind` from addr against the map.

    Every value must either match a map entry exactly (same start and size)
    or lie wholly outside the map (passed through: the device decides).
    Returns the total register count.
    """
    w = width(regmap, addr, kind) if kind == "s" else _WIDTH[kind]
    a = addr
    for _ in range(count):
        for r in range(a, a + w):
            e = _covering(regmap, r)
            if e is None:
                continue
            if e[0] != a or e[3] != w or (e[2] == "s") != (kind == "s"):
                raise CodecError("bad modbus register size")
            if not e[4] & W:
                raise CodecError("register is read-only")
        a += w
    if a - addr > 123:
        raise CodecError("bad count")
    return a - addr


def runs(regmap):
    """Contiguous (start, regs) blocks of a map in ascending order, each ≤ 125 registers."""
    out = []
    for e in sorted(entries(regmap)):
        if out and out[-1][0] + out[-1][1] == e[0] and out[-1][1] + e[3] <= 125:
            out[-1] = (out[-1][0], out[-1][1] + e[3])
        else:
            out.append((e[0], e[3]))
    return out


def parse_int(text):
    """Decimal integer from a query value; a fraction is dropped toward zero
    ("7.0" is 7: clients build values from floats, INTEGRATIONS.md §1);
    CodecError("bad value") otherwise."""
    t = text.strip()
    s = t[1:] if t[:1] in "+-" else t
    i = s.find(".")
    if i >= 0:
        if not s[i + 1 :].isdigit() and s[i + 1 :]:
            raise CodecError("bad value")
        t = t[: len(t) - len(s) + i]
        s = s[:i]
    if not s or not s.isdigit() or len(s) > 20:
        raise CodecError("bad value")
    return int(t)


def parse_values(text):
    """'[7,230,230,230 ]' -> [7, 230, 230, 230]."""
    t = text.strip()
    if len(t) < 2 or t[0] != "[" or t[-1] != "]":
        raise CodecError("bad value")
    t = t[1:-1].strip()
    if not t:
        raise CodecError("bad value")
    return [parse_int(x) for x in t.split(",")]
