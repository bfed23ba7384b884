"""Modbus RTU: CRC-16, frame building/checking, and an asyncio bus master.

The pure parts (crc16, build, check_reply) run on CPython and MicroPython.
`Master` runs under MicroPython's asyncio (it needs `asyncio.StreamReader`
over a pollable UART, `asyncio.wait_for_ms`, `time.ticks_*`).

Why our own master: micropython-umodbus' RTU master waits in busy loops
(`time.sleep_us`), which would freeze the HTTP server for every bus
transaction, and its release cannot be installed from the package registry.
This one awaits the UART through the event loop, so HTTP keeps being served
while a request is on the wire. Frame buffers are allocated once.

The UART is passed in. It needs `write(buf)` and a non-blocking
`readinto(buf)` (returns 0/None when nothing is waiting) and must be
pollable by asyncio (machine.UART with timeout=0 on the board, a raw pty file
on the host). Optional: `txdone()` (ESP32), so the RS-485 driver-enable pin
is released right after the last stop bit rather than after a fixed sleep.
RAM: few functions on purpose — each one costs heap when loaded as .mpy.
"""
import asyncio
import time

from micropython import const

MAX_READ = const(125)  # registers in one function-03 reply
MAX_WRITE = const(123)  # registers in one function-16 request

# Error kinds (ModbusError.kind); HTTP maps TIMEOUT to 503, the rest to 502.
TIMEOUT = const(1)
EXCEPTION = const(2)
CRC = const(3)
WRONG_SLAVE = const(4)
TRUNCATED = const(5)
BAD_REPLY = const(6)

_KINDS = ("", "timeout", "", "crc error", "reply from wrong slave id", "truncated reply", "bad reply")
_EXC_NAMES = ("unknown", "illegal function", "illegal data address", "illegal data value",
              "server device failure", "acknowledge", "server device busy")

# CRC-16/MODBUS lookup table, little-endian 16-bit entries (512 bytes, no heap
# objects per entry).
_TABLE = (
    b"\x00\x00\xc1\xc0\x81\xc1\x40\x01\x01\xc3\xc0\x03\x80\x02\x41\xc2\x01\xc6\xc0\x06\x80\x07\x41\xc7"
    b"\x00\x05\xc1\xc5\x81\xc4\x40\x04\x01\xcc\xc0\x0c\x80\x0d\x41\xcd\x00\x0f\xc1\xcf\x81\xce\x40\x0e"
    b"\x00\x0a\xc1\xca\x81\xcb\x40\x0b\x01\xc9\xc0\x09\x80\x08\x41\xc8\x01\xd8\xc0\x18\x80\x19\x41\xd9"
    b"\x00\x1b\xc1\xdb\x81\xda\x40\x1a\x00\x1e\xc1\xde\x81\xdf\x40\x1f\x01\xdd\xc0\x1d\x80\x1c\x41\xdc"
    b"\x00\x14\xc1\xd4\x81\xd5\x40\x15\x01\xd7\xc0\x17\x80\x16\x41\xd6\x01\xd2\xc0\x12\x80\x13\x41\xd3"
    b"\x00\x11\xc1\xd1\x81\xd0\x40\x10\x01\xf0\xc0\x30\x80\x31\x41\xf1\x00\x33\xc1\xf3\x81\xf2\x40\x32"
    b"\x00\x36\xc1\xf6\x81\xf7\x40\x37\x01\xf5\xc0\x35\x80\x34\x41\xf4\x00\x3c\xc1\xfc\x81\xfd\x40\x3d"
    b"\x01\xff\xc0\x3f\x80\x3e\x41\xfe\x01\xfa\xc0\x3a\x80\x3b\x41\xfb\x00\x39\xc1\xf9\x81\xf8\x40\x38"
    b"\x00\x28\xc1\xe8\x81\xe9\x40\x29\x01\xeb\xc0\x2b\x80\x2a\x41\xea\x01\xee\xc0\x2e\x80\x2f\x41\xef"
    b"\x00\x2d\xc1\xed\x81\xec\x40\x2c\x01\xe4\xc0\x24\x80\x25\x41\xe5\x00\x27\xc1\xe7\x81\xe6\x40\x26"
    b"\x00\x22\xc1\xe2\x81\xe3\x40\x23\x01\xe1\xc0\x21\x80\x20\x41\xe0\x01\xa0\xc0\x60\x80\x61\x41\xa1"
    b"\x00\x63\xc1\xa3\x81\xa2\x40\x62\x00\x66\xc1\xa6\x81\xa7\x40\x67\x01\xa5\xc0\x65\x80\x64\x41\xa4"
    b"\x00\x6c\xc1\xac\x81\xad\x40\x6d\x01\xaf\xc0\x6f\x80\x6e\x41\xae\x01\xaa\xc0\x6a\x80\x6b\x41\xab"
    b"\x00\x69\xc1\xa9\x81\xa8\x40\x68\x00\x78\xc1\xb8\x81\xb9\x40\x79\x01\xbb\xc0\x7b\x80\x7a\x41\xba"
    b"\x01\xbe\xc0\x7e\x80\x7f\x41\xbf\x00\x7d\xc1\xbd\x81\xbc\x40\x7c\x01\xb4\xc0\x74\x80\x75\x41\xb5"
    b"\x00\x77\xc1\xb7\x81\xb6\x40\x76\x00\x72\xc1\xb2\x81\xb3\x40\x73\x01\xb1\xc0\x71\x80\x70\x41\xb0"
    b"\x00\x50\xc1\x90\x81\x91\x40\x51\x01\x93\xc0\x53\x80\x52\x41\x92\x01\x96\xc0\x56\x80\x57\x41\x97"
    b"\x00\x55\xc1\x95\x81\x94\x40\x54\x01\x9c\xc0\x5c\x80\x5d\x41\x9d\x00\x5f\xc1\x9f\x81\x9e\x40\x5e"
    b"\x00\x5a\xc1\x9a\x81\x9b\x40\x5b\x01\x99\xc0\x59\x80\x58\x41\x98\x01\x88\xc0\x48\x80\x49\x41\x89"
    b"\x00\x4b\xc1\x8b\x81\x8a\x40\x4a\x00\x4e\xc1\x8e\x81\x8f\x40\x4f\x01\x8d\xc0\x4d\x80\x4c\x41\x8c"
    b"\x00\x44\xc1\x84\x81\x85\x40\x45\x01\x87\xc0\x47\x80\x46\x41\x86\x01\x82\xc0\x42\x80\x43\x41\x83"
    b"\x00\x41\xc1\x81\x81\x80\x40\x40"
)


def crc16(buf, n=-1):
    """CRC-16/MODBUS of buf[:n] (whole buf when n < 0)."""
    t = _TABLE
    if n < 0:
        n = len(buf)
    c = 0xFFFF
    for i in range(n):
        j = ((c ^ buf[i]) & 0xFF) << 1
        c = (c >> 8) ^ (t[j] | (t[j + 1] << 8))
    return c


def build(buf, slave, fn, addr, x, data=None):
    """Request frame into buf; returns its length.

    fn 3: x = register count; fn 6: x = the value; fn 16: x ignored, data =
    big-endian register bytes.
    """
    if data is not None:
        x = len(data) >> 1
    buf[0] = slave
    buf[1] = fn
    buf[2] = addr >> 8
    buf[3] = addr & 0xFF
    buf[4] = x >> 8
    buf[5] = x & 0xFF
    n = 6
    if data is not None:
        buf[6] = len(data)
        buf[7 : 7 + len(data)] = data
        n = 7 + len(data)
    c = crc16(buf, n)
    buf[n] = c & 0xFF
    buf[n + 1] = c >> 8
    return n + 2


def reply_len(req):
    """Length of the normal reply to request frame req."""
    return 5 + 2 * ((req[4] << 8) | req[5]) if req[1] == 3 else 8


def check_reply(req, rep, n):
    """Validate reply rep[:n] against request req. Returns 0 or an error kind."""
    if n < 5:
        return TRUNCATED
    if rep[0] != req[0]:
        return WRONG_SLAVE
    fn = req[1]
    want = reply_len(req)
    if rep[1] == fn | 0x80:
        want = 5
    elif rep[1] != fn:
        return BAD_REPLY
    if n < want:
        return TRUNCATED
    if n > want:
        return BAD_REPLY
    if crc16(rep, n - 2) != rep[n - 2] | (rep[n - 1] << 8):
        return CRC
    if want == 5:
        return EXCEPTION
    if fn == 3:
        return 0 if rep[2] == n - 5 else BAD_REPLY
    # 06 echoes address+value, 16 echoes address+count
    return 0 if rep[2:6] == req[2:6] else BAD_REPLY


class ModbusError(Exception):
    """str(e) is the reply text: "modbus timeout", "modbus exception 2: illegal data address"."""

    def __init__(self, kind, code=0):
        if kind == EXCEPTION:
            text = "modbus exception %d: %s" % (code, _EXC_NAMES[code] if code < len(_EXC_NAMES) else "unknown")
        else:
            text = "modbus " + _KINDS[kind]
        super().__init__(text)
        self.kind = kind
        self.code = code


class Stats:
    """Communication statistics of one device (API.md §2 com_* fields)."""

    def __init__(self):
        self.errors = 0  # failed attempts (each retry counts)
        self.err = False  # the last transaction failed after its retries
        self.last_error = ""
        self.last_err_ms = None  # ticks_ms of the last failed attempt


class Master:
    """The single owner of one RS-485 bus.

    Requests from any task are serialised; `prio=True` (the control loop)
    goes ahead of every waiting normal request. A reply buffer returned by
    `read` stays valid until the caller's next await on this bus.
    Timing from the baud rate: 3.5 character frame gap (fixed 1750 us above
    19200 baud, as the Modbus serial line spec says), reply timeout =
    timeout_ms + wire time, inter-character timeout 1.5 characters but never
    below min_icto_ms (what the platform's RX path — UART FIFO timeout, pty
    scheduling — can resolve).
    """

    def __init__(self, uart, baud=9600, de=None, timeout_ms=100, retries=1, bits=10, min_icto_ms=3):
        self._uart = uart
        self._sr = asyncio.StreamReader(uart)
        self._de = de
        self._txdone = getattr(uart, "txdone", None)
        self.retries = retries
        self.timeout_ms = timeout_ms
        self._char_us = bits * 1000000 // baud
        self._gap_us = 1750 if baud > 19200 else 35 * self._char_us // 10
        self._icto_ms = max(min_icto_ms, (15 * self._char_us // 10 + 999) // 1000)
        self._tx = bytearray(256)
        self._txm = memoryview(self._tx)
        self._rx = bytearray(256)
        self._rxm = memoryview(self._rx)
        self._last_us = time.ticks_us()
        self._busy = False
        self._prio_waiting = 0
        self._free = asyncio.Event()
        self._stats = {}
        self.trace = None  # callable(slave, "tx"/"rx", memoryview) for diagnostics

    def stats(self, slave, fresh=False):
        """The statistics record of a slave id (fresh: a new one from now on)."""
        s = self._stats.get(slave)
        if s is None or fresh:
            s = self._stats[slave] = Stats()
        return s

    # prio: the control loop's lane, ahead of every waiting normal request.
    # quiet: a user's raw request: an exception reply is its answer, not a
    # communication error (not counted); a fault of the bus is counted as any.
    async def read(self, slave, addr, count, prio=False, quiet=False):
        """Function 03. Returns a memoryview of the 2*count data bytes."""
        if not 1 <= count <= MAX_READ:
            raise ValueError("bad count")
        await self._run(slave, 3, addr, count, None, prio, quiet)
        return self._rxm[3 : 3 + 2 * count]

    async def write1(self, slave, addr, value, prio=False, quiet=False):
        """Function 06 with a 16-bit value (0..65535)."""
        await self._run(slave, 6, addr, value & 0xFFFF, None, prio, quiet)

    async def writen(self, slave, addr, data, prio=False, quiet=False):
        """Function 16; data = big-endian register bytes (2..246 bytes)."""
        if not 2 <= len(data) <= 2 * MAX_WRITE or len(data) & 1:
            raise ValueError("bad count")
        await self._run(slave, 16, addr, 0, data, prio, quiet)

    async def _run(self, slave, fn, addr, x, data, prio, quiet):
        # bus ownership: one transaction at a time, the prio lane first
        if prio:
            self._prio_waiting += 1
        try:
            while self._busy or (not prio and self._prio_waiting):
                await self._free.wait()
        finally:
            if prio:
                self._prio_waiting -= 1
        self._busy = True
        try:
            n = build(self._tx, slave, fn, addr, x, data)
            st = self.stats(slave)
            kind = 0
            for _ in range(1 + self.retries):
                kind = await self._once(n)
                if not kind:
                    st.err = False
                    return
                if kind == EXCEPTION:
                    if quiet:  # (a user's request the device refused: its answer, no fault of the bus)
                        raise ModbusError(kind, self._rx[2])
                    st.errors += 1
                    st.last_err_ms = time.ticks_ms()
                    break  # the device answered: asking again will not change it
                st.errors += 1
                st.last_err_ms = time.ticks_ms()
            st.err = True
            e = ModbusError(kind, self._rx[2] if kind == EXCEPTION else 0)
            st.last_error = e.args[0]
            raise e
        finally:
            self._busy = False
            self._free.set()
            self._free.clear()  # woken waiters are already scheduled

    async def _once(self, n):
        """One request and its reply on the wire. Returns 0 or an error kind."""
        u = self._uart
        tx = self._txm
        wait = self._gap_us - time.ticks_diff(time.ticks_us(), self._last_us)
        if wait > 0:
            await asyncio.sleep_ms((wait + 999) // 1000)
        while u.readinto(self._rx):
            pass  # bytes of a cancelled or late reply must not be taken for ours
        de = self._de
        got = 0
        try:
            if de:
                de.value(1)
            off = 0
            while off < n:
                off += u.write(tx[off:n]) or 0
                if off < n:
                    await asyncio.sleep_ms(0)
            if self._txdone:
                await asyncio.sleep_ms(n * self._char_us // 1000)
                while not self._txdone():
                    await asyncio.sleep_ms(0)
            if de:
                de.value(0)
            if self.trace:
                self.trace(self._tx[0], "tx", tx[:n])
            # the reply: complete by its length (known from the request, or
            # 5 bytes for an exception); a started frame must keep coming
            want = reply_len(self._tx)
            deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms + (want + 8) * self._char_us // 1000 + 1)
            rx = self._rxm
            while got < want:
                left = time.ticks_diff(deadline, time.ticks_ms())
                if got:
                    left = min(left, self._icto_ms)
                if left <= 0:
                    break
                try:
                    k = await asyncio.wait_for_ms(self._sr.readinto(rx[got:want]), left)
                except asyncio.TimeoutError:
                    break
                if k:
                    got += k
                    if got >= 2 and self._rx[1] & 0x80:
                        want = 5
        finally:
            if de:
                de.value(0)
            self._last_us = time.ticks_us()
        if not got:
            return TIMEOUT
        if self.trace:
            self.trace(self._tx[0], "rx", self._rxm[:got])
        return check_reply(self._tx, self._rx, got)
