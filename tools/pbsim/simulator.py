"""The simulator: pymodbus server, bridge, physics, relays and control server, started together.

What writes do besides storing the value (only when the write was executed,
that is answered without exception; a `crc` fault still executes it):
* 8070 (any value) resets 8050q (pulses) to 0; 8070 reads back 0 (the fn 6
  echo still shows the written value).
* 8086 = N > 0 reads back 0; with physics on it opens the CP for N s
  (cp_state 0, no current) and wakes a car that had "stopped drawing".
* 8087 moves the EVSE's phase relay (relay.py) if its 8113 has bit 8.
"""
import asyncio
import json
import sys

from pbsim import control, scenario
from pbsim.bridge import Bridge
from pbsim.faults import Faults
from pbsim.physics import Physics, run_ticks
from pbsim.registers import (DISCONNECT_CP, FEATURES, METER1, METER2, PULSES, RELAY_SELECT,
                             RESET_PULSES, Datastore)
from pbsim.relay import Relays
from pbsim.reqlog import RequestLog


def evse_ids_of(option, sc):
    """EVSE slave ids from --evse-ids, else the scenario's "evse_ids", else [1]."""
    if option:
        ids = [int(x) for x in option.split(",") if x.strip()]
    elif sc and "evse_ids" in sc:
        ids = [int(x) for x in sc["evse_ids"]]
    else:
        ids = [1]
    for i in ids:
        if not 1 <= i <= 247 or i in (METER1, METER2):
            raise SystemExit("pbsim: bad EVSE id %d (1..247, not 2 or 3)" % i)
    if len(set(ids)) != len(ids):
        raise SystemExit("pbsim: duplicate EVSE id")
    return ids


class Simulator:
    def __init__(self, args):
        self.args = args
        self.verbose = args.verbose
        self.scenario = None
        if args.scenario:
            with open(args.scenario) as f:
                self.scenario = json.load(f)
        self.evse_ids = evse_ids_of(args.evse_ids, self.scenario)
        self.store = Datastore(self.evse_ids)
        self.faults = Faults()
        self.log = RequestLog()
        self.relays = Relays(self.store, self.evse_ids)
        self.physics = Physics(self.store, self.relays, self.evse_ids, args.speed,
                               run_event=self.dispatch, trace=self.trace)
        self.bridge = Bridge(self.store, self.faults, self.log, self.after_write, baud=args.baud,
                             parity=args.parity, wire=not args.no_wire_time,
                             latency_s=args.latency_ms / 1000.0, trace=self.trace)
        self.baud = args.baud
        self.server = self.ctl = None
        self.control_port = None
        self.tasks = []

    def trace(self, msg):
        if self.verbose:
            sys.stderr.write("pbsim: %s\n" % msg)
            sys.stderr.flush()

    def dispatch(self, msg):
        """Run one control command (also scenario events); -> its reply."""
        return control.dispatch(self, msg)

    # -- start and stop -----------------------------------------------------
    async def start(self):
        """Ptys, pymodbus, bridge, control server, physics; -> the firmware's tty path."""
        port = self.bridge.open()
        await self._start_pymodbus(port)
        self.store.factory()
        self.bridge.start()
        self.ctl = await control.start_server(self, self.args.control_host, self.args.control_port)
        self.control_port = self.ctl.sockets[0].getsockname()[1]
        self.tasks = [asyncio.create_task(run_ticks(self.physics))]
        if self.scenario is not None:
            self.load_scenario(self.scenario)
        return self.bridge.publish(self.args.link)

    async def _start_pymodbus(self, port):
        from pymodbus import FramerType
        from pymodbus.server import ModbusSerialServer
        self.server = ModbusSerialServer(
            self.store.sim_devices(), framer=FramerType.RTU, port=port, baudrate=self.baud,
            parity=self.args.parity, bytesize=8, stopbits=1, ignore_missing_devices=True)
        await self.server.serve_forever(background=True)
        for _ in range(200):  # the serial "connection" is set up with call_soon
            if self.server.transport is not None:
                break
            await asyncio.sleep(0.005)
        self.store.attach(self.server.context)

    async def stop(self):
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        await self.bridge.stop()
        self.ctl.close()
        try:
            await asyncio.wait_for(self.ctl.wait_closed(), 1.0)
        except (asyncio.TimeoutError, Exception):
            pass
        try:
            await self.server.shutdown()
        except Exception:
            pass
        self.cleanup()

    def cleanup(self):
        self.bridge.close()

    # -- what the devices do ------------------------------------------------
    def after_write(self, sid, addr, values, t_ms):
        """Side effects of an executed bus write of values at addr."""
        end = addr + len(values)
        if addr <= RESET_PULSES < end:
            self.store.set(sid, PULSES, [0, 0, 0, 0])
            self.store.set(sid, RESET_PULSES, [0])
            st = self.physics.evses.get(sid) or self.physics.meters.get(sid)
            if st is not None:
                st["p_acc"] = 0
        if sid not in self.physics.evses:
            return
        if addr <= DISCONNECT_CP < end:
            v = values[DISCONNECT_CP - addr]
            self.store.set(sid, DISCONNECT_CP, [0])
            if 0 < v < 0x8000:
                self.physics.disconnect_cp(sid, v)
                if self.physics.on:
                    self.physics.apply()
        if addr <= RELAY_SELECT < end:
            self.follow_relay(sid, t_ms)

    def follow_relay(self, sid, t_ms=None):
        """Let the relay follow 8087 (after a write of 8087 or 8113); t_ms: when (default now)."""
        t_ms = self.bridge.bus_ms() if t_ms is None else t_ms
        ev = self.physics.evses[sid]
        if self.relays.follow(sid, ev["cur"], t_ms, self.physics.t_ms) and self.physics.on:
            self.physics.apply()

    def set_features(self, sid, value):
        self.store.set(sid, FEATURES, [value])
        self.follow_relay(sid)

    def load_scenario(self, sc):
        plan = scenario.parse(sc, self.evse_ids, (METER1, METER2), self.physics.default_speed)
        scenario.apply(self.physics, plan)
        for sid, spec in plan["evses"].items():
            if spec["features"] is not None:
                self.store.set(sid, FEATURES, [spec["features"]])
                self.follow_relay(sid)
        self.physics.apply()

    def reset(self):
        """Factory registers, no faults, physics off and cleared, relays at three phases,
        request log and statistics cleared."""
        self.faults.clear()
        self.physics.clear()
        self.relays.clear()
        self.store.factory()
        self.log.clear()
