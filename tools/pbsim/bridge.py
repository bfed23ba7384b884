"""The bridge between the firmware's tty and pymodbus: pty pair, RTU framing, wire time.

    firmware <-> pty B slave (published path, --link) | pty B master
                    <-> bridge (asyncio: framing, wire time, faults, request log)
                    <-> pty A master | pty A slave <-> pymodbus serial RTU server

All pty fds are in raw mode. The bridge keeps its own fd of pty B's slave open,
so the firmware may open/close/reopen the tty at any time.

Bus behaviour:
* Functions 3, 6, 16 are served by pymodbus. Any other function code with a
  valid CRC gets exception 1 (illegal function) from the bridge.
* Request framing (the pty carries no timing): fn 3/6 = 8 bytes, fn 16 =
  9 + byte count; anything else ends after 20 ms of silence. An incomplete
  frame is dropped after 20 ms of silence. A request with a bad CRC is dropped
  (no answer), like a real device does; it is logged with "error": "crc".
* Slave ids that do not exist (including broadcast id 0) get no answer (real
  RS-485 bus: silence). pymodbus' own "exception 4 for unknown id" never shows.
* Wire time (8N1 = 10 bits per byte, 11 with parity): a request reaches the
  device n*bits/baud s after its first byte was written (or after the previous
  reply finished, if later); the reply is written to the firmware's tty in one
  piece after t3.5 + latency + m*bits/baud s, where t3.5 = 3.5 characters
  (1750 us above 19200 baud) - the silence the device needs to see the end of
  the request. Requests are processed one at a time, in order.
* Faults (faults.py) and offline slaves apply to existing slaves only; every
  request is logged (reqlog.py).
"""
import asyncio
import os
import sys
import termios
import tty

from pbsim import faults as faultmod
from pbsim import frames

GAP_S = 0.020  # silence that ends a frame of unknown length
PYMODBUS_REPLY_TIMEOUT = 1.0


def _raw_pty():
    master, slave = os.openpty()
    tty.setraw(master, termios.TCSANOW)
    tty.setraw(slave, termios.TCSANOW)
    return master, slave


class Bridge:
    def __init__(self, store, faults, log, on_write, baud=9600, parity="N", wire=True,
                 latency_s=0.0, trace=None):
        self.store = store        # registers.Datastore: which slaves exist
        self.faults = faults      # faults.Faults
        self.log = log            # reqlog.RequestLog
        self.on_write = on_write  # on_write(sid, addr, values, t_ms) after a write was executed
        self.baud = baud
        self.bits = 10 if parity == "N" else 11
        self.wire = wire
        self.latency = latency_s
        self.trace = trace or (lambda msg: None)
        self.rxb = bytearray()    # from the firmware, not yet framed
        self.rxb_t = 0.0
        self.gap_handle = None
        self.rxa = bytearray()    # from pymodbus
        self.rxa_event = None
        self.queue = None
        self.last_tx_end = 0.0
        self.fds = []
        self.link = None
        self.worker = None

    # -- timing -------------------------------------------------------------
    def wire_s(self, nbytes):
        return nbytes * self.bits / self.baud if self.wire else 0.0

    def t35_s(self):
        if not self.wire:
            return 0.0
        return 0.00175 if self.baud > 19200 else 3.5 * self.bits / self.baud

    def bus_ms(self, t=None):
        """ms since start on the request log's clock (t: a loop time, default now)."""
        return int(((self.loop.time() if t is None else t) - self.t0) * 1000)

    async def _sleep_until(self, t):
        d = t - self.loop.time()
        if d > 0:
            await asyncio.sleep(d)

    # -- set-up -------------------------------------------------------------
    def open(self):
        """Create both pty pairs; return pty A's slave path (pymodbus' port)."""
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.rxa_event = asyncio.Event()
        self.queue = asyncio.Queue()
        self.ma, self.sa = _raw_pty()
        self.fds += [self.ma, self.sa]
        self.mb, self.sb = _raw_pty()
        self.fds += [self.mb, self.sb]
        os.set_blocking(self.ma, False)
        os.set_blocking(self.mb, False)
        return os.ttyname(self.sa)

    def publish(self, link=None):
        """The firmware's tty path; with link, also as that symlink (replacing a symlink)."""
        path = os.ttyname(self.sb)
        if not link:
            return path
        if os.path.islink(link):
            os.unlink(link)
        elif os.path.exists(link):
            raise SystemExit("pbsim: %s exists and is not a symlink" % link)
        os.symlink(path, link)
        self.link = link
        return link

    def start(self):
        self.loop.add_reader(self.mb, self._on_b)
        self.loop.add_reader(self.ma, self._on_a)
        self.worker = asyncio.create_task(self._work())

    async def stop(self):
        if self.worker is not None:
            self.worker.cancel()
            try:
                await self.worker
            except (asyncio.CancelledError, Exception):
                pass
        for fd in (self.ma, self.mb):
            self.loop.remove_reader(fd)

    def close(self):
        """Remove the symlink, close the ptys (safe to call twice)."""
        if self.link:
            try:
                if os.path.islink(self.link):
                    os.unlink(self.link)
            except OSError:
                pass
            self.link = None
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    # -- pty B: requests from the firmware ----------------------------------
    def _on_b(self):
        try:
            data = os.read(self.mb, 4096)
        except OSError:
            return
        if not data:
            return
        now = self.loop.time()
        if not self.rxb:
            self.rxb_t = now
        self.rxb += data
        self._split_b(now)

    def _split_b(self, now):
        while self.rxb:
            n = frames.request_len(self.rxb)
            if not n or len(self.rxb) < n:
                break
            frame = bytes(self.rxb[:n])
            del self.rxb[:n]
            self.queue.put_nowait((frame, self.rxb_t))
            self.rxb_t = now
        if self.gap_handle is not None:
            self.gap_handle.cancel()
            self.gap_handle = None
        if self.rxb:
            self.gap_handle = self.loop.call_later(max(GAP_S, self.t35_s()), self._gap)

    def _gap(self):
        self.gap_handle = None
        if not self.rxb:
            return
        frame = bytes(self.rxb)
        self.rxb.clear()
        if frames.request_len(frame) == 0:
            self.queue.put_nowait((frame, self.rxb_t))
        else:
            self.queue.put_nowait((frame, None))  # incomplete: log only

    # -- pty A: replies from pymodbus ----------------------------------------
    def _on_a(self):
        try:
            data = os.read(self.ma, 4096)
        except OSError:
            return
        if data:
            self.rxa += data
            self.rxa_event.set()

    async def _forward(self, frame):
        """Send one request to pymodbus, return its reply frame (or None)."""
        self.rxa.clear()
        self.rxa_event.clear()
        os.write(self.ma, frame)
        deadline = self.loop.time() + PYMODBUS_REPLY_TIMEOUT
        while True:
            n = frames.reply_len(self.rxa)
            if n and len(self.rxa) >= n:
                reply = bytes(self.rxa[:n])
                self.rxa.clear()
                return reply
            left = deadline - self.loop.time()
            if left <= 0:
                return None
            if n == 0:
                left = min(left, GAP_S)
            self.rxa_event.clear()
            try:
                await asyncio.wait_for(self.rxa_event.wait(), left)
            except asyncio.TimeoutError:
                if n == 0 and self.rxa:
                    reply = bytes(self.rxa)
                    self.rxa.clear()
                    return reply

    # -- request processing -------------------------------------------------
    async def _work(self):
        while True:
            frame, t_first = await self.queue.get()
            try:
                if t_first is None:
                    self._log_incomplete(frame)
                else:
                    await self._process(frame, t_first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one request kill the bus
                sys.stderr.write("pbsim: internal error: %r\n" % (exc,))

    def _log_incomplete(self, frame):
        """An incomplete frame: nobody answers."""
        self.log.incomplete += 1
        self.log.add({"t_ms": self.bus_ms(), "slave": frame[0],
                      "fn": frame[1] if len(frame) > 1 else None, "addr": None, "count": None,
                      "fault": None, "answered": False, "exc": None, "error": "incomplete"})

    async def _receive(self, frame, t_first):
        """Wait until the request has crossed the wire; return its log item."""
        t_done = max(t_first, self.last_tx_end) + self.wire_s(len(frame))
        await self._sleep_until(t_done)
        self.last_tx_end = t_done
        addr, count, values = frames.decode_request(frame)
        item = {"t_ms": self.bus_ms(t_done), "slave": frame[0], "fn": frame[1],
                "addr": addr, "count": count}
        if values is not None:
            item["values"] = values
        item.update({"fault": None, "answered": False, "exc": None, "error": None})
        return item

    def _addressed(self, frame, item):
        """The slave's statistics if it is there to answer, else None (logged)."""
        sid = frame[0]
        if not frames.crc_ok(frame):
            self.log.bad_crc += 1
            item["error"] = "crc"
        elif sid not in self.store:
            self.log.unknown += 1
            item["error"] = "unknown_slave"
        else:
            st = self.log.slave_stats(sid)
            st["requests"] += 1
            if sid not in self.faults.offline:
                return st
            item["fault"] = "offline"
            st["faults"]["offline"] += 1
        self.log.add(item)
        return None

    async def _execute(self, frame, item, kind, code):
        """The device's reply (before damage), or None; a write that succeeded has its effect."""
        sid, fn = frame[0], frame[1]
        if kind == "exception":
            return frames.exception_reply(sid, fn, code)
        if fn not in (3, 6, 16):
            return frames.exception_reply(sid, fn, 1)
        reply = await self._forward(frame)
        if reply is None:
            item["error"] = "no_reply"
        elif not reply[1] & 0x80 and fn in (6, 16):
            self.on_write(sid, item["addr"], item["values"], item["t_ms"])
        return reply

    async def _process(self, frame, t_first):
        item = await self._receive(frame, t_first)
        st = self._addressed(frame, item)
        if st is None:
            return
        sid = frame[0]
        kind, code = self.faults.pick(sid)
        item["fault"] = kind
        if kind:
            st["faults"][kind] += 1
        reply = None if kind == "timeout" else await self._execute(frame, item, kind, code)
        if reply is None:
            self.log.add(item)
            return
        if reply[1] & 0x80 and len(reply) >= 3:
            item["exc"] = reply[2]
            st["exceptions"] += 1
        reply = faultmod.damage(reply, kind, sid)
        await self._send(frame, reply, item, st)

    async def _send(self, frame, reply, item, st):
        """Write the reply after t3.5 + latency + its own wire time."""
        t_send = self.loop.time() + self.t35_s() + self.latency
        self.last_tx_end = t_send + self.wire_s(len(reply))
        await self._sleep_until(self.last_tx_end)
        item["answered"] = True
        st["answered"] += 1
        self.log.add(item)
        self._write_b(reply)
        self.trace("%s -> %s" % (frame.hex(), reply.hex()))

    def _write_b(self, data):
        while data:
            try:
                n = os.write(self.mb, data)
            except BlockingIOError:
                self.trace("pty full, reply dropped")  # the firmware is not reading
                return
            except OSError:
                return
            data = data[n:]
