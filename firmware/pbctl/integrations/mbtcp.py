"""Modbus TCP gateway: the Power Brain's own network interface (INTEGRATIONS.md
§2), for energy managers such as evcc (its `cfos` charger and meter).

Params: `modbus_tcp` 0 off / 1 read-only / 2 reads and control writes;
`modbus_tcp_port` the base port (default 4701). Listens on base, base+1 and
base+2 (the board's HTTP host); on port base+k the unit ids 0 and 255 mean bus
id k+1, any unit id 1..247 selects the Power Brain device with that bus id.
A unit id with no configured bus device: exception 10, no bus traffic.

Reads (fn 3):
- answered from the control loop's last poll, with no bus traffic, when the
  whole read lies in what it reads: 8000..8031, 8045..8047, 8057 and, on
  EVSEs, 8112..8113 (read once, at the device's first poll: "static"; a box
  that refused 8112..8113 gets those reads passed on) and 8058..8069, on EVSEs
  8092..8094 (every poll: "polled"; 8093/8094 are what is in force on the box).
  A device that missed its last poll (or, a meter, is disabled and so not
  polled) gives exception 11 for polled registers; static ones are still
  answered once read; before its first good poll everything cached gives 11
  (energy is never served before the device was read). Power -1 (unknown) is
  served as the sum of currents x voltages. Values as the device sent them
  (a meter's `invert` is undone).
- any other read goes to the device through control.rtu_read, behind the
  control loop's transactions: the device's exception is passed on, no answer
  gives 11, no reply within 2 s (the bus busy with the control loop's and the
  API's transactions) gives 6.

Writes (fn 6, 16; only with modbus_tcp 2, else exception 1), never passed to
the bus: requests to the control task from source 0 (devices.Evse.caps):
- 8093 charging_cur_limit (0.1 A): a cap of value x 100 mA; a value below the
  EVSE's minimum (0 included) stops it until a value >= the minimum comes.
  **Decision:** the cap stays until the gateway stops or another value comes.
- 8094 charging_enable: 1 allows, 0 disables charging; other values: exc 3.
- 8087 relay_select: 1 asks for one phase, 0 for three (devices.Evse.phase_wish;
  phase switching honours it); other values: exc 3.
- 8086 disconnect_cp: N > 0 s is written to the box by the control task's next
  pass that writes it (as the limits: not while it is offline, never with
  lb_enabled off); 0 does nothing.
Any other register, or a meter: exc 2. A fn 16 is checked whole first, then
queued whole (all or nothing); a full request queue: exc 6. The reply echoes
once the control pass that applied the request has written (control.settle;
not within 2 s: exc 11, the request stands). Stopping the gateway (off, other
settings) withdraws its caps, disables and phase wishes.

Limits (pblib.mbtcp.Server): at most 4 clients over the three ports, 60 s
idle, 20 requests/s per connection, malformed frames close that connection;
app.admit() is asked before a connection is taken (heap reserve).
"""
import asyncio
from micropython import const

from pblib import mbtcp, rtu

_SOURCE = const(0)  # devices.Evse.caps index of Modbus TCP
_WAIT_MS = const(2000)  # a bus read or a settle at most


def settings(p):
    return (p["modbus_tcp"], p["modbus_tcp_port"])


def start(app, s):
    return Gateway(app, s[0], s[1])


def device(devices, unit):
    """The Power Brain device with bus id `unit`, or None."""
    for d in devices:
        if d.rtu and d.slave() == unit:
            return d
    return None


def cached(d, addr, count, out):
    """Fill out (2*count bytes) from d's last poll -> 0, 11 (not available
    now), or -1 (not all of it is cached: ask the device)."""
    st = d.static
    evse = d.is_evse
    end = addr + count
    # which registers: all in one of the cached blocks?
    for r in range(addr, end):
        if not (8000 <= r < 8032 or 8045 <= r < 8048 or 8057 <= r < 8070
                or evse and (8092 <= r < 8095 or 8112 <= r < 8114 and (st is None or len(st) >= 70))):
            return -1
    if st is None:
        return 11  # never read yet
    fresh = d.seen and not d.missed and (evse or d.cfg["device_enabled"]) and (not evse or d.state != 6)
    sign = -1 if d.cfg.get("invert") else 1
    i = 0
    for r in range(addr, end):
        if r < 8032:
            v = st[2 * (r - 8000)] << 8 | st[2 * (r - 8000) + 1]
        elif r < 8048:
            v = d.voltage[r - 8045]
        elif r == 8057:
            v = st[64] << 8 | st[65]
        elif r >= 8112:
            v = st[66 + 2 * (r - 8112)] << 8 | st[67 + 2 * (r - 8112)]
        elif not fresh:
            return 11
        elif r < 8062:  # energy, 64 bits
            v = d.energy >> (16 * (8061 - r))
        elif r < 8064:  # power, 32 bits
            v = sign * d.power >> (16 * (8063 - r))
        elif r < 8070:  # currents, 32 bits, 0.1 A
            v = (sign * d.cur[(r - 8064) >> 1]) // 100 >> (16 * (1 - (r & 1)))
        elif r == 8092:
            v = d.cp
        else:  # 8093, 8094: in force on the box
            v = d.dev_limit // 100 if r == 8093 else d.dev_enable
            if v < 0:
                return 11
        out[i] = v >> 8 & 255
        out[i + 1] = v & 255
        i += 2
    return 0


def check_write(d, addr, count, data):
    """A write's requests [(register, value)] -> list, or an exception code."""
    if not d.is_evse:
        return 2
    reqs = []
    for k in range(count):
        r = addr + k
        v = data[2 * k] << 8 | data[2 * k + 1]
        if r == 8094 or r == 8087:
            if v > 1:
                return 3
        elif r != 8093 and r != 8086:
            return 2
        if r != 8086 or v:
            reqs.append((r, v))
    return reqs


class Gateway:
    def __init__(self, app, mode, base):
        self.app = app
        self.mode = mode
        self.base = base
        self.error = ""
        self.cached = self.bus_reads = self.writes = 0
        self.srv = mbtcp.Server(self.handler)
        self.srv.admit = app.admit
        self._task = asyncio.create_task(self._listen())

    async def _listen(self):
        host = getattr(self.app.board, "HTTP_HOST", "0.0.0.0")
        try:
            for k in range(3):
                await self.srv.start(host, self.base + k, k + 1)
        except Exception as e:  # (a port in use): the others keep listening
            self.error = repr(e)
            print("pbctl: mbtcp:", self.error)

    def stop(self):
        try:
            self.app.control.release(_SOURCE)
        except Exception as e:  # (never Busy: release is queued beyond the limit)
            print("pbctl: mbtcp:", repr(e))
        self._task.cancel()
        asyncio.create_task(self.srv.close())

    def status(self):
        s = self.srv
        return {"mode": self.mode, "port": self.base, "error": self.error,
                "clients": sum(1 for x in s._st if x), "requests": s.requests, "exceptions": s.exceptions,
                "cached": self.cached, "bus_reads": self.bus_reads, "writes": self.writes,
                "refused": s.refused, "shed": s.shed, "malformed": s.malformed, "idle": s.idle,
                "timeouts": s.timeouts, "throttled": s.throttled}

    async def handler(self, unit, fn, addr, count, data, out):
        d = device(self.app.site.devices, unit)
        if d is None:
            return 10
        ctl = self.app.control
        if fn == 3:
            c = cached(d, addr, count, out)
            if c >= 0:
                if not c:
                    self.cached += 1
                return c
            self.bus_reads += 1
            try:
                await asyncio.wait_for_ms(self._read(ctl, unit, addr, count, out), _WAIT_MS)
            except asyncio.TimeoutError:
                return 6
            except rtu.ModbusError as e:
                return e.code if e.kind == rtu.EXCEPTION and e.code else 11
            return 0
        if self.mode != 2:
            return 1
        reqs = check_write(d, addr, count, data)
        if type(reqs) is int:
            return reqs
        if ctl.room() < len(reqs):
            return 6
        seq = 0
        for r, v in reqs:
            if r == 8093:
                seq = ctl.cap(d.dev_id, _SOURCE, max(100, v * 100))
            elif r == 8094:
                seq = ctl.enable(d.dev_id, _SOURCE, v == 1)
            elif r == 8087:
                seq = ctl.phase_wish(d.dev_id, 1 if v else 3)
            else:
                seq = ctl.disconnect(d.dev_id, v)
        self.writes += 1
        if seq and not await ctl.settle(seq, _WAIT_MS):
            return 11
        return 0

    async def _read(self, ctl, unit, addr, count, out):
        v = await ctl.rtu_read(unit, addr, count)
        out[:] = v  # (before any other await: v is the bus master's buffer)
