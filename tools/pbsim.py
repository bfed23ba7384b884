#!/usr/bin/env python3
"""pbsim - simulated RS-485 bus of cFos Power Brain devices (CPython only).

The firmware (MicroPython unix port) opens a pty as its UART; behind that pty
this program emulates the Modbus RTU bus with one EVSE (slave 1), two S0 meters
(slaves 2 and 3) and optionally more EVSEs. The Modbus server is pymodbus
(3.16, `ModbusSerialServer` + `SimDevice`/`SimData` datastore) - an independent
implementation, not our own code.

Architecture::

    firmware <-> pty B slave (published path, --link) | pty B master
                    <-> bridge (asyncio: framing, wire time, faults, request log)
                    <-> pty A master | pty A slave <-> pymodbus serial RTU server

All pty fds are in raw mode. The bridge keeps its own fd of pty B's slave open,
so the firmware may open/close/reopen the tty at any time.

CLI
---
    .venv/bin/python tools/pbsim.py [options]

    --link PATH         also publish the firmware's tty as symlink PATH (replaced
                        if it is a symlink; removed at exit). READY reports PATH.
    --baud N            line speed for the wire-time emulation (default 9600)
    --parity N|E|O      parity (default N); E/O add one bit per character
    --control-host H    control server address (default 127.0.0.1)
    --control-port N    control server TCP port (default 0 = pick a free port)
    --evse-ids LIST     EVSE slave ids, comma separated (default: the scenario's
                        "evse_ids", else "1"). Meters are always slaves 2 and 3.
    --scenario FILE     JSON scenario (see below); turns the physics on at start
    --speed X           physics time factor (default 1.0; 10 = ten times faster)
    --latency-ms N      extra device turnaround before a reply (default 0)
    --no-wire-time      deliver frames immediately (no baud-rate emulation)
    --verbose           pymodbus log + bridge trace on stderr (default: silent)

After the ptys exist and pymodbus listens, exactly one line goes to stdout:

    READY {"tty": "<path the firmware must open>", "control": <port>, "baud": <baud>}

SIGINT/SIGTERM: clean exit with status 0 (symlink removed, no traceback).

Bus behaviour
-------------
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
* Register maps (REGISTERS.md): only mapped registers exist. Anything else
  (also a read/write spanning a gap) gets exception 2. Mapped ranges:
    all devices:  8000-8031, 8040-8047, 8050-8071, 8120-8121
    EVSEs also:   8086-8087, 8092-8094, 8096-8110, 8112-8113
  Factory values: meters 2 and 3 reproduce the document (`read=all` of meter2,
  `read=8002&count=10` of meter1); 8040 = 2 (meter1), 41 (meter2), the id
  (EVSE). EVSE: serial "6d31-0c2a-77e1" (id 1; "6d31-0c2a-77xx" = 0x77e0+id for
  others), 8057 = 1, 8086 = 0, 8087 = 0, 8092 = 0, 8093 = 0, 8094 = 0, 8096s = "",
  8112 = 1, 8113 = 0x100.
* Read-only registers (access "r" in REGISTERS.md) reject writes with exception
  2 (pymodbus' readonly flag). rw/w registers accept any 16-bit value.
  Writing 8040 (slave_id) stores the value but does not change the bus id.
* Writing 8070 (any value) resets 8050q (pulses) to 0; 8070 reads back 0 (the
  fn 6 echo still shows the written value). Writing 8086 = N > 0 reads back 0;
  with physics on it opens the CP for N s (cp_state 0, no current) and wakes a
  car that had "stopped drawing".

Control channel
---------------
TCP 127.0.0.1:<control>, JSON lines: one object per line in, one per line out,
`{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Several clients may be
connected at once. Slave ids are integers. Commands:

  {"cmd":"ping"}                              -> {"ok":true,"pong":true}
  {"cmd":"fault","slave":1,"kind":K,"count":N,"code":C}
        The next N requests to that (existing) slave get fault K (N=-1: until
        cleared, N=0: clear this slave's fault; default N=1). Replaces any
        fault pending for that slave. Kinds:
          timeout      request swallowed: not executed, no answer
          crc          executed, answer sent with both CRC bytes inverted
          exception    NOT executed; bridge answers [id, fn|0x80, C, crc]
                       (C default 4)
          wrong_slave  executed, answer carries id (slave % 247) + 1, CRC
                       recomputed (only the id is wrong)
          truncated    executed, answer with its last 3 bytes dropped
  {"cmd":"fault_rate","rate":0.2,"kinds":[...],"seed":1,"code":4}
        Each request to an existing slave without a pending explicit fault gets
        a random fault (kind drawn from kinds, default all five) with
        probability rate (seeded RNG, deterministic for a given request
        sequence). rate 0 disables.
  {"cmd":"clear_faults"}                      explicit faults, fault_rate, offline flags
  {"cmd":"set_regs","slave":s,"addr":a,"values":[...]}
        raw write into the datastore (also read-only registers; values
        -32768..65535 stored as 16 bit); every address must be mapped.
  {"cmd":"get_regs","slave":s,"addr":a,"count":n} -> {"ok":true,"values":[...]}
  {"cmd":"requests","since":k,"slave":s,"limit":n}   (slave, limit optional)
        -> {"ok":true,"next":m,"first":f,"items":[...]} items with seq >= k from
        a ring of the last 5000 requests; m = seq for the next call; f = oldest
        seq still held. seq runs on across `reset`. Item:
          {"seq","t_ms" (ms since start, request fully received), "slave","fn",
           "addr","count" (null when not decodable), "values" (fn 6/16 only),
           "fault": null|"timeout"|"crc"|"exception"|"wrong_slave"|"truncated"|"offline",
           "answered": bool (something was sent back),
           "exc": null|n (exception code in the reply),
           "error": null|"crc"|"incomplete"|"unknown_slave"|"no_reply"}
        An item is logged before its reply is written to the tty.
  {"cmd":"stats"} -> {"ok":true,"slaves":{"1":{"requests","answered","exceptions",
        "faults":{kind:n}}},"unknown_slave":n,"bad_crc":n,"incomplete":n}
  {"cmd":"reset"}   factory register values, no faults, not offline, physics
                    off and cleared, request log and stats cleared.
  Physics (each turns the physics on, except `offline`; see below):
  {"cmd":"plug","slave":1,"car":{"phases":7,"max_ma":16000,"need_wh":20000}}
        car defaults: phases 7, max_ma 16000, need_wh null (= never full)
  {"cmd":"unplug","slave":1}
  {"cmd":"house","ma":[l1,l2,l3],"noise_ma":0}  (or one int for all phases;
        replaces a scenario profile)
  {"cmd":"pv","ma":n}   PV current on each phase (or [l1,l2,l3]); replaces a profile
  {"cmd":"car_stop_drawing","slave":1,"on":true}   needs a plugged car
  {"cmd":"offline","slave":1,"on":true}  device stops answering (logged as
        fault "offline"); does not turn the physics on
  {"cmd":"physics","on":true,"speed":X,"ramp_ma_per_s":N}  (all optional;
        on:false freezes the registers at their last values)
  {"cmd":"scenario","file":PATH} or {"cmd":"scenario","data":{...}}
        restart the physics with this scenario (registers are not reset)
  {"cmd":"state"} -> {"ok":true,"physics":bool,"t_ms","speed","ramp_ma_per_s",
        "house_ma":[3],"pv_ma":[3],"evses":{"1":{...}},"meters":{"2":{...}},
        "offline":[ids],"faults":{...}}

Physics (integer, deterministic; off by default: registers stay static)
----------------------------------------------------------------------
A tick every 100/speed ms of real time (at least 5 ms) advances physics time
by 100 ms (speed < 1: 100*speed ms; speed > 20: 5 ms*speed). Per EVSE:
  no car -> cp_state 0, no current;
  car, CP opened by 8086 -> cp_state 0, no current;
  car, charging not allowed (8094 != 1 or 8093 < 60) or car full -> cp_state 1,
      current 0 at once;
  car allowed but "stopped drawing" -> cp_state 2, current 0 at once;
  otherwise cp_state 2 and each car phase (car bitmask; only L1 if 8087 == 1)
      ramps by ramp_ma_per_s (default 5000 mA/s) toward min(8093*100, max_ma).
  Registers: 8092, 8064d/8066d/8068d = mA // 100 (0.1 A), 8062d = sum(I*V) W
  with V from 8045..8047, 8058q += Wh (sub-Wh kept in mWs), 8050q += S0 pulses
  (8042d pulses/kWh), 8054d = ms per pulse, 8056 = 0 while power flows else 1.
Meters, by role (default: slave 2 "grid", slave 3 "house"):
  grid  = house + all EVSE currents (through each EVSE's grid_phases) - pv,
          per phase, signed (negative = export); 8062d signed;
  house = house load; pv = pv current; evse = sum of listed "evses";
  static = never touched. 8058q integrates import only (export in `state`).
House load: static or a step profile [[t_s,l1,l2,l3],...] (value of the last
step with t_s <= physics time) plus optional uniform noise +-noise_ma (seeded).
PV: static or [[t_s, ma],...]. Unplug resets cp_state and currents to 0.

Scenario JSON (all keys optional)::

  {"name": "...", "description": "...",
   "evse_ids": [1], "speed": 1, "ramp_ma_per_s": 5000, "seed": 1,
   "house": {"profile": [[0, 3000, 2000, 1000]], "noise_ma": 0}  | [l1,l2,l3],
   "pv": {"profile": [[0, 0]]} | n,
   "meters": {"2": {"role": "grid"}, "3": {"role": "evse", "evses": [1]}},
   "evses": {"1": {"grid_phases": [0, 1, 2], "car": {...plugged at t=0...}}},
   "events": [[t_s, {"cmd": "plug", ...}], ...]}

  Meters are slaves 2 and 3 only; roles grid|house|pv|evse|static. grid_phases
  maps EVSE phase L1..L3 to grid phase index (phase rotation). events run any
  control command (except scenario/reset) at physics time t_s. Unknown keys
  are an error. --speed is the default of "speed". Examples:
  tools/scenarios/default.json, tools/scenarios/house_step.json.

Python helpers (for tests): `launch(args) -> (Popen, info)`, `Client(port)`
with `.cmd(name, **params) -> dict` (raises PbsimError when ok is false).
"""

import argparse
import asyncio
import collections
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import termios
import tty

HERE = os.path.dirname(os.path.abspath(__file__))

METER1 = 2
METER2 = 3
FAULT_KINDS = ("timeout", "crc", "exception", "wrong_slave", "truncated")
LOG_SIZE = 5000
GAP_S = 0.020  # silence that ends a frame of unknown length
PYMODBUS_REPLY_TIMEOUT = 1.0
TICK_S = 0.1
TICK_MS = 100

# ---------------------------------------------------------------------------
# Register maps
# ---------------------------------------------------------------------------


def str_regs(text, nregs):
    """ASCII string -> registers, 2 chars per register, high byte first, NUL-padded."""
    raw = text.encode("ascii")
    if len(raw) > 2 * nregs:
        raise ValueError("string too long")
    raw = raw.ljust(2 * nregs, b"\0")
    return [(raw[2 * i] << 8) | raw[2 * i + 1] for i in range(nregs)]


def int_regs(value, nregs):
    """Signed/unsigned integer -> nregs registers, high word first."""
    value &= (1 << (16 * nregs)) - 1
    return [(value >> (16 * (nregs - 1 - i))) & 0xFFFF for i in range(nregs)]


def regs_int(regs):
    """Registers (high word first) -> signed integer."""
    value = 0
    for r in regs:
        value = (value << 16) | (r & 0xFFFF)
    bits = 16 * len(regs)
    if value >> (bits - 1):
        value -= 1 << bits
    return value


def tdiv(a, b):
    """Integer division truncating toward zero."""
    q = abs(a) // b
    return q if a >= 0 else -q


def device_map(kind, slave_id):
    """Register map of one device: list of (addr, [factory regs], readonly)."""
    if kind == "evse":
        serial = "6d31-0c2a-%04x" % ((0x77E0 + slave_id) & 0xFFFF)
        own_id = slave_id
        flags = 1
    else:
        serial = "fcf5-c46d-310c"
        own_id = 41 if slave_id == METER2 else slave_id
        flags = 0
    m = [
        (8000, [0xCF05, 0x0000], True),   # vendor_id
        (8002, [1], True),                # product_id
        (8003, [257], True),              # device_id
        (8004, [256, 0], True),           # product_version + product_build
        (8006, [256], True),              # mapping_version
        (8007, [0], True),                # padding_1
        (8008, str_regs(serial, 8), True),
        (8016, str_regs("cFos Power Brain", 16), True),
        (8040, [own_id], False),          # slave_id
        (8041, [1], True),                # input
        (8042, int_regs(1000, 2), False),  # pulsesperkwh
        (8044, [1], False),               # phases
        (8045, [230, 230, 230], False),   # voltage_l1..l3
        (8050, int_regs(0, 4), False),    # pulses
        (8054, int_regs(0, 2), True),     # timeperpulse
        (8056, [0], True),                # level
        (8057, [flags], True),            # flags
        (8058, int_regs(0, 4), False),    # energy
        (8062, int_regs(-1, 2), True),    # power
        (8064, int_regs(0, 2), True),     # current_l1
        (8066, int_regs(0, 2), True),     # current_l2
        (8068, int_regs(0, 2), True),     # current_l3
        (8070, [0], False),               # reset_pulses
        (8071, [0], True),                # reserved
        (8120, int_regs(0, 2), True),     # reserved
    ]
    if kind == "evse":
        m += [
            (8086, [0], False),           # disconnect_cp
            (8087, [0], False),           # relay_select
            (8092, [0], True),            # cp_state
            (8093, [0], False),           # charging_cur_limit
            (8094, [0], False),           # charging_enable
            (8096, str_regs("", 15), True),  # last_rfid
            (8112, [1], True),            # meter_type
            (8113, [0x100], True),        # features
        ]
    m.sort(key=lambda e: e[0])
    return m


# ---------------------------------------------------------------------------
# Modbus RTU helpers
# ---------------------------------------------------------------------------


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
    """-> (addr, count, values) or Nones."""
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


def set_raw(fd):
    tty.setraw(fd, termios.TCSANOW)


# ---------------------------------------------------------------------------
# Physics
# ---------------------------------------------------------------------------

SCENARIO_KEYS = {"name", "description", "evse_ids", "speed", "ramp_ma_per_s", "seed",
                 "house", "pv", "meters", "evses", "events"}
METER_ROLES = ("grid", "house", "pv", "evse", "static")


class CmdError(Exception):
    pass


def _int(v, what):
    if isinstance(v, bool) or not isinstance(v, int):
        raise CmdError("%s must be an integer" % what)
    return v


def _phases3(v, what):
    if isinstance(v, list):
        if len(v) != 3:
            raise CmdError("%s needs 3 values" % what)
        return [_int(x, what) for x in v]
    x = _int(v, what)
    return [x, x, x]


def _car(spec):
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise CmdError("car must be an object")
    car = {"phases": 7, "max_ma": 16000, "need_wh": None, "stopped": False}
    for k, v in spec.items():
        if k not in ("phases", "max_ma", "need_wh"):
            raise CmdError("unknown car key %r" % k)
        car[k] = None if (k == "need_wh" and v is None) else _int(v, k)
    if not 1 <= car["phases"] <= 7:
        raise CmdError("car phases must be a bitmask 1..7")
    return car


class Physics:
    def __init__(self, sim):
        self.sim = sim
        self.clear()

    def clear(self):
        self.on = False
        self.t_ms = 0
        self.speed = self.sim.speed
        self.ramp = 5000
        self.rng = random.Random(1)
        self.house_static = [0, 0, 0]
        self.house_profile = None
        self.noise = 0
        self.pv_static = [0, 0, 0]
        self.pv_profile = None
        self.house = [0, 0, 0]
        self.pv = [0, 0, 0]
        self.events = []
        self.evses = {}
        for sid in self.sim.evse_ids:
            self.evses[sid] = {"car": None, "cur": [0, 0, 0], "cp": 0, "power": 0,
                               "delivered_mws": 0, "e_acc": 0, "p_acc": 0,
                               "disconnect_ms": 0, "grid_phases": [0, 1, 2]}
        self.meters = {}
        for sid, role in ((METER1, "grid"), (METER2, "house")):
            self.meters[sid] = {"role": role, "evses": [], "cur": [0, 0, 0], "power": 0,
                                "e_acc": 0, "p_acc": 0, "export_mws": 0}

    # -- scenario -----------------------------------------------------------
    def load_scenario(self, sc):
        if not isinstance(sc, dict):
            raise CmdError("scenario must be an object")
        bad = set(sc) - SCENARIO_KEYS
        if bad:
            raise CmdError("unknown scenario keys: %s" % ", ".join(sorted(bad)))
        if "evse_ids" in sc:
            ids = [_int(i, "evse_ids") for i in sc["evse_ids"]]
            if sorted(ids) != sorted(self.sim.evse_ids):
                raise CmdError("scenario evse_ids %s differ from the bus %s"
                               % (ids, self.sim.evse_ids))
        self.clear()
        self.on = True
        self.speed = float(sc.get("speed", self.sim.speed))
        self.ramp = _int(sc.get("ramp_ma_per_s", 5000), "ramp_ma_per_s")
        self.rng = random.Random(sc.get("seed", 1))
        house = sc.get("house")
        if isinstance(house, dict):
            self.house_profile = self._profile(house.get("profile", [[0, 0, 0, 0]]), 4)
            self.noise = _int(house.get("noise_ma", 0), "noise_ma")
        elif house is not None:
            self.house_static = _phases3(house, "house")
        pv = sc.get("pv")
        if isinstance(pv, dict):
            self.pv_profile = self._profile(pv.get("profile", [[0, 0]]), 2)
        elif pv is not None:
            self.pv_static = _phases3(pv, "pv")
        for key, m in (sc.get("meters") or {}).items():
            sid = int(key)
            if sid not in self.meters:
                raise CmdError("meter %s: meters are slaves 2 and 3" % key)
            role = m.get("role", "static")
            if role not in METER_ROLES:
                raise CmdError("meter role must be one of %s" % (METER_ROLES,))
            self.meters[sid]["role"] = role
            self.meters[sid]["evses"] = [int(i) for i in m.get("evses", [])]
        for key, e in (sc.get("evses") or {}).items():
            sid = int(key)
            if sid not in self.evses:
                raise CmdError("evse %s is not on the bus" % key)
            gp = e.get("grid_phases", [0, 1, 2])
            if sorted(gp) != [0, 1, 2]:
                raise CmdError("grid_phases must be a permutation of [0,1,2]")
            self.evses[sid]["grid_phases"] = list(gp)
            if e.get("car") is not None:
                self.evses[sid]["car"] = _car(e["car"])
        events = []
        for ev in sc.get("events") or []:
            if not (isinstance(ev, list) and len(ev) == 2 and isinstance(ev[1], dict)):
                raise CmdError("event must be [t_s, {command}]")
            if ev[1].get("cmd") in ("scenario", "reset"):
                raise CmdError("event command %r not allowed" % ev[1].get("cmd"))
            events.append((int(round(float(ev[0]) * 1000)), ev[1]))
        events.sort(key=lambda e: e[0])
        self.events = events
        self._inputs()
        self.apply()

    @staticmethod
    def _profile(p, width):
        if not isinstance(p, list) or not p:
            raise CmdError("profile must be a non-empty list")
        out = []
        for row in p:
            if not isinstance(row, list) or len(row) != width:
                raise CmdError("profile rows need %d values" % width)
            out.append((int(round(float(row[0]) * 1000)), [_int(x, "profile") for x in row[1:]]))
        out.sort(key=lambda r: r[0])
        return out

    @staticmethod
    def _at(profile, t_ms):
        val = profile[0][1]
        for t, v in profile:
            if t <= t_ms:
                val = v
            else:
                break
        return val

    # -- commands -----------------------------------------------------------
    def turn_on(self):
        if not self.on:
            self.on = True
            self.t_ms = 0

    def evse(self, sid):
        if sid not in self.evses:
            raise CmdError("slave %s is not an EVSE" % sid)
        return self.evses[sid]

    def disconnect_cp(self, sid, seconds):
        if sid in self.evses:
            self.evses[sid]["disconnect_ms"] = seconds * 1000

    # -- simulation ---------------------------------------------------------
    def _inputs(self):
        if self.house_profile is not None:
            base = self._at(self.house_profile, self.t_ms)
        else:
            base = self.house_static
        if self.noise:
            n = self.noise
            self.house = [max(0, b + self.rng.randint(-n, n)) for b in base]
        else:
            self.house = list(base)
        if self.pv_profile is not None:
            v = self._at(self.pv_profile, self.t_ms)[0]
            self.pv = [v, v, v]
        else:
            self.pv = list(self.pv_static)

    def tick(self, dt_ms):
        """Advance physics time by dt_ms and update all registers."""
        self.t_ms += dt_ms
        while self.events and self.events[0][0] <= self.t_ms:
            _, cmd = self.events.pop(0)
            try:
                self.sim.dispatch(dict(cmd))
            except CmdError as exc:
                self.sim.trace("scenario event %r failed: %s" % (cmd, exc))
        self._inputs()
        for sid, ev in self.evses.items():
            self._step_evse(sid, ev, dt_ms)
        self._meters(dt_ms)

    def apply(self):
        """Update registers from the current state without advancing time."""
        for sid, ev in self.evses.items():
            self._step_evse(sid, ev, 0)
        self._meters(0)

    def _volts(self, sid):
        return self.sim.reg_get(sid, 8045, 3)

    def _integrate(self, sid, st, power, dt_ms):
        """Energy (import) and S0 pulses into 8058q / 8050q; keeps sub-units."""
        if power > 0 and dt_ms:
            st["e_acc"] += power * dt_ms           # mWs
            wh = st["e_acc"] // 3600000
            if wh:
                st["e_acc"] -= wh * 3600000
                self.sim.reg_set(sid, 8058, int_regs(regs_int(self.sim.reg_get(sid, 8058, 4)) + wh, 4))
            ppk = regs_int(self.sim.reg_get(sid, 8042, 2))
            if ppk > 0:
                st["p_acc"] += power * dt_ms * ppk
                pulses = st["p_acc"] // 3600000000
                if pulses:
                    st["p_acc"] -= pulses * 3600000000
                    self.sim.reg_set(sid, 8050, int_regs(regs_int(self.sim.reg_get(sid, 8050, 4)) + pulses, 4))
        ppk = regs_int(self.sim.reg_get(sid, 8042, 2))
        tpp = 3600000000 // (power * ppk) if power > 0 and ppk > 0 else 0
        self.sim.reg_set(sid, 8054, int_regs(min(tpp, 0x7FFFFFFF), 2))
        self.sim.reg_set(sid, 8056, [0 if power else 1])

    def _write_electric(self, sid, cur, power):
        self.sim.reg_set(sid, 8062, int_regs(power, 2))
        for i, addr in enumerate((8064, 8066, 8068)):
            self.sim.reg_set(sid, addr, int_regs(tdiv(cur[i], 100), 2))

    def _step_evse(self, sid, ev, dt_ms):
        lim = self.sim.reg_get(sid, 8093, 1)[0]
        enable = self.sim.reg_get(sid, 8094, 1)[0]
        relay = self.sim.reg_get(sid, 8087, 1)[0]
        car = ev["car"]
        target = [0, 0, 0]
        ramp = False
        if car is None:
            ev["cp"] = 0
        elif ev["disconnect_ms"] > 0:
            ev["cp"] = 0
            ev["disconnect_ms"] = max(0, ev["disconnect_ms"] - dt_ms)
            if ev["disconnect_ms"] == 0:
                car["stopped"] = False
        else:
            allowed = enable == 1 and lim >= 60
            full = car["need_wh"] is not None and ev["delivered_mws"] >= car["need_wh"] * 3600000
            if not allowed or full:
                ev["cp"] = 1
            else:
                ev["cp"] = 2
                if not car["stopped"]:
                    mask = 1 if relay == 1 else car["phases"]
                    amps = min(lim * 100, car["max_ma"])
                    target = [amps if mask >> i & 1 else 0 for i in range(3)]
                    ramp = True
        cur = ev["cur"]
        step = self.ramp * dt_ms // 1000
        for i in range(3):
            if not ramp or target[i] == 0:
                cur[i] = 0
            elif cur[i] < target[i]:
                cur[i] = min(target[i], cur[i] + step)
            else:
                cur[i] = max(target[i], cur[i] - step)
        volts = self._volts(sid)
        power = sum(cur[i] * volts[i] for i in range(3)) // 1000
        ev["power"] = power
        if dt_ms and power > 0:
            ev["delivered_mws"] += power * dt_ms
        self._integrate(sid, ev, power, dt_ms)
        self.sim.reg_set(sid, 8092, [ev["cp"]])
        self._write_electric(sid, cur, power)

    def _grid_evse(self, ids=None):
        g = [0, 0, 0]
        for sid, ev in self.evses.items():
            if ids is not None and sid not in ids:
                continue
            for i in range(3):
                g[ev["grid_phases"][i]] += ev["cur"][i]
        return g

    def _meters(self, dt_ms):
        for sid, m in self.meters.items():
            role = m["role"]
            if role == "static":
                continue
            if role == "grid":
                e = self._grid_evse()
                cur = [self.house[i] + e[i] - self.pv[i] for i in range(3)]
            elif role == "house":
                cur = list(self.house)
            elif role == "pv":
                cur = list(self.pv)
            else:
                cur = self._grid_evse(m["evses"])
            volts = self._volts(sid)
            power = tdiv(sum(cur[i] * volts[i] for i in range(3)), 1000)
            m["cur"] = cur
            m["power"] = power
            if power < 0 and dt_ms:
                m["export_mws"] += -power * dt_ms
            self._integrate(sid, m, power, dt_ms)
            self._write_electric(sid, cur, power)

    def state(self):
        evses = {}
        for sid, ev in self.evses.items():
            car = None if ev["car"] is None else dict(ev["car"])
            evses[str(sid)] = {
                "car": car, "cp_state": ev["cp"], "current_ma": list(ev["cur"]),
                "power_w": ev["power"], "delivered_wh": ev["delivered_mws"] // 3600000,
                "limit_da": self.sim.reg_get(sid, 8093, 1)[0],
                "enable": self.sim.reg_get(sid, 8094, 1)[0],
                "relay_select": self.sim.reg_get(sid, 8087, 1)[0],
                "energy_wh": regs_int(self.sim.reg_get(sid, 8058, 4)),
                "disconnect_ms": ev["disconnect_ms"], "grid_phases": list(ev["grid_phases"]),
            }
        meters = {}
        for sid, m in self.meters.items():
            meters[str(sid)] = {
                "role": m["role"], "evses": list(m["evses"]), "current_ma": list(m["cur"]),
                "power_w": m["power"], "import_wh": regs_int(self.sim.reg_get(sid, 8058, 4)),
                "export_wh": m["export_mws"] // 3600000,
            }
        return {"physics": self.on, "t_ms": self.t_ms, "speed": self.speed,
                "ramp_ma_per_s": self.ramp, "house_ma": list(self.house),
                "pv_ma": list(self.pv), "evses": evses, "meters": meters}


# ---------------------------------------------------------------------------
# The simulator: pymodbus server, bridge, control server
# ---------------------------------------------------------------------------


class Sim:
    def __init__(self, args):
        self.args = args
        self.baud = args.baud
        self.bits = 10 if args.parity == "N" else 11
        self.wire = not args.no_wire_time
        self.latency = args.latency_ms / 1000.0
        self.speed = args.speed
        self.verbose = args.verbose
        self.scenario = None
        if args.scenario:
            with open(args.scenario) as f:
                self.scenario = json.load(f)
        if args.evse_ids:
            ids = [int(x) for x in args.evse_ids.split(",") if x.strip()]
        elif self.scenario and "evse_ids" in self.scenario:
            ids = [int(x) for x in self.scenario["evse_ids"]]
        else:
            ids = [1]
        for i in ids:
            if not 1 <= i <= 247 or i in (METER1, METER2):
                raise SystemExit("pbsim: bad EVSE id %d (1..247, not 2 or 3)" % i)
        if len(set(ids)) != len(ids):
            raise SystemExit("pbsim: duplicate EVSE id")
        self.evse_ids = ids
        self.maps = {}
        for i in ids:
            self.maps[i] = device_map("evse", i)
        self.maps[METER1] = device_map("meter", METER1)
        self.maps[METER2] = device_map("meter", METER2)
        self.physics = Physics(self)
        self.log = collections.deque(maxlen=LOG_SIZE)
        self.seq = 0
        self.faults = {}
        self.offline = set()
        self.rate = 0.0
        self.rate_kinds = list(FAULT_KINDS)
        self.rate_code = 4
        self.rate_rng = random.Random(1)
        self.reset_stats()
        self.rxb = bytearray()
        self.rxb_t = 0.0
        self.gap_handle = None
        self.rxa = bytearray()
        self.rxa_event = None
        self.queue = None
        self.last_tx_end = 0.0
        self.link = None
        self.fds = []

    # -- helpers ------------------------------------------------------------
    def trace(self, msg):
        if self.verbose:
            sys.stderr.write("pbsim: %s\n" % msg)
            sys.stderr.flush()

    def wire_s(self, nbytes):
        return nbytes * self.bits / self.baud if self.wire else 0.0

    def t35_s(self):
        if not self.wire:
            return 0.0
        return 0.00175 if self.baud > 19200 else 3.5 * self.bits / self.baud

    def reset_stats(self):
        self.stats = {}
        self.unknown = self.bad_crc = self.incomplete = 0

    def slave_stats(self, sid):
        st = self.stats.get(sid)
        if st is None:
            st = {"requests": 0, "answered": 0, "exceptions": 0,
                  "faults": dict((k, 0) for k in FAULT_KINDS + ("offline",))}
            self.stats[sid] = st
        return st

    # -- datastore access (pymodbus' own register lists) --------------------
    def _block(self, sid):
        start, _n, regs, flags = self.server.context.devices[sid].block["x"]
        return start, regs, flags

    def mapped(self, sid, addr, count):
        start, regs, flags = self._block(sid)
        off = addr - start
        if off < 0 or off + count > len(regs):
            return False
        return all(flags[off + i] & 15 != 1 for i in range(count))  # 1 = DataType.INVALID

    def reg_get(self, sid, addr, count):
        start, regs, _ = self._block(sid)
        return list(regs[addr - start:addr - start + count])

    def reg_set(self, sid, addr, values):
        start, regs, _ = self._block(sid)
        for i, v in enumerate(values):
            regs[addr - start + i] = v & 0xFFFF

    def factory(self):
        for sid, m in self.maps.items():
            for addr, vals, _ro in m:
                self.reg_set(sid, addr, vals)

    # -- startup ------------------------------------------------------------
    async def start(self):
        from pymodbus import FramerType
        from pymodbus.server import ModbusSerialServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        self.loop = asyncio.get_running_loop()
        self.rxa_event = asyncio.Event()
        self.queue = asyncio.Queue()
        self.t0 = self.loop.time()
        self.ma, self.sa = os.openpty()
        self.mb, self.sb = os.openpty()
        self.fds = [self.ma, self.sa, self.mb, self.sb]
        for fd in self.fds:
            set_raw(fd)
        os.set_blocking(self.ma, False)
        os.set_blocking(self.mb, False)
        self.tty_a = os.ttyname(self.sa)
        self.tty_b = os.ttyname(self.sb)
        devices = []
        for sid, m in self.maps.items():
            data = [SimData(addr, values=list(vals), datatype=DataType.REGISTERS, readonly=ro)
                    for addr, vals, ro in m]
            devices.append(SimDevice(id=sid, simdata=data))
        self.server = ModbusSerialServer(
            devices, framer=FramerType.RTU, port=self.tty_a, baudrate=self.baud,
            parity=self.args.parity, bytesize=8, stopbits=1, ignore_missing_devices=True)
        await self.server.serve_forever(background=True)
        for _ in range(200):  # the serial "connection" is set up with call_soon
            if self.server.transport is not None:
                break
            await asyncio.sleep(0.005)
        self.factory()
        self.loop.add_reader(self.mb, self._on_b)
        self.loop.add_reader(self.ma, self._on_a)
        self.ctl = await asyncio.start_server(self._client, self.args.control_host,
                                              self.args.control_port, limit=1 << 22)
        self.control_port = self.ctl.sockets[0].getsockname()[1]
        self.tasks = [asyncio.create_task(self._worker()), asyncio.create_task(self._ticker())]
        if self.scenario is not None:
            self.physics.load_scenario(self.scenario)
        tty_path = self.tty_b
        if self.args.link:
            link = self.args.link
            if os.path.islink(link):
                os.unlink(link)
            elif os.path.exists(link):
                raise SystemExit("pbsim: %s exists and is not a symlink" % link)
            os.symlink(self.tty_b, link)
            self.link = link
            tty_path = link
        return tty_path

    async def stop(self):
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self.ctl.close()
        try:
            await asyncio.wait_for(self.ctl.wait_closed(), 1.0)
        except (asyncio.TimeoutError, Exception):
            pass
        for fd in (self.ma, self.mb):
            self.loop.remove_reader(fd)
        try:
            await self.server.shutdown()
        except Exception:
            pass
        self.cleanup()

    def cleanup(self):
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
        except (BlockingIOError, InterruptedError):
            return
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
            n = request_len(self.rxb)
            if n and len(self.rxb) >= n:
                frame = bytes(self.rxb[:n])
                del self.rxb[:n]
                self.queue.put_nowait((frame, self.rxb_t))
                self.rxb_t = now
                continue
            break
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
        if request_len(frame) == 0:
            self.queue.put_nowait((frame, self.rxb_t))
        else:
            self.queue.put_nowait((frame, None))  # incomplete: log only

    # -- pty A: replies from pymodbus ----------------------------------------
    def _on_a(self):
        try:
            data = os.read(self.ma, 4096)
        except (BlockingIOError, InterruptedError, OSError):
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
            n = reply_len(self.rxa)
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
    def _pick_fault(self, sid):
        f = self.faults.get(sid)
        if f is not None:
            kind, code = f["kind"], f["code"]
            if f["count"] > 0:
                f["count"] -= 1
                if f["count"] == 0:
                    del self.faults[sid]
            return kind, code
        if self.rate > 0 and self.rate_rng.random() < self.rate:
            return self.rate_rng.choice(self.rate_kinds), self.rate_code
        return None, None

    async def _sleep_until(self, t):
        d = t - self.loop.time()
        if d > 0:
            await asyncio.sleep(d)

    async def _worker(self):
        while True:
            frame, t_first = await self.queue.get()
            try:
                await self._process(frame, t_first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one request kill the bus
                sys.stderr.write("pbsim: internal error: %r\n" % (exc,))

    def _log(self, item):
        item["seq"] = self.seq
        self.seq += 1
        self.log.append(item)

    async def _process(self, frame, t_first):
        if t_first is None:  # incomplete frame, nobody answers
            self.incomplete += 1
            t_ms = int((self.loop.time() - self.t0) * 1000)
            self._log({"t_ms": t_ms, "slave": frame[0], "fn": frame[1] if len(frame) > 1 else None,
                       "addr": None, "count": None, "fault": None, "answered": False,
                       "exc": None, "error": "incomplete"})
            return
        t_start = max(t_first, self.last_tx_end)
        t_done = t_start + self.wire_s(len(frame))
        await self._sleep_until(t_done)
        sid, fn = frame[0], frame[1]
        addr, count, values = decode_request(frame)
        item = {"t_ms": int((t_done - self.t0) * 1000), "slave": sid, "fn": fn,
                "addr": addr, "count": count}
        if values is not None:
            item["values"] = values
        item.update({"fault": None, "answered": False, "exc": None, "error": None})
        self.last_tx_end = t_done
        if not crc_ok(frame):
            self.bad_crc += 1
            item["error"] = "crc"
            self._log(item)
            return
        if sid not in self.maps:
            self.unknown += 1
            item["error"] = "unknown_slave"
            self._log(item)
            return
        st = self.slave_stats(sid)
        st["requests"] += 1
        if sid in self.offline:
            item["fault"] = "offline"
            st["faults"]["offline"] += 1
            self._log(item)
            return
        kind, code = self._pick_fault(sid)
        item["fault"] = kind
        if kind:
            st["faults"][kind] += 1
        if kind == "timeout":
            self._log(item)
            return
        if kind == "exception":
            reply = add_crc(bytes((sid, (fn | 0x80) & 0xFF, code & 0xFF)))
        elif fn not in (3, 6, 16):
            reply = add_crc(bytes((sid, (fn | 0x80) & 0xFF, 1)))
        else:
            reply = await self._forward(frame)
            if reply is None:
                item["error"] = "no_reply"
                self._log(item)
                return
            if not reply[1] & 0x80 and fn in (6, 16):
                self._after_write(sid, addr, values)
        if reply[1] & 0x80 and len(reply) >= 3:
            item["exc"] = reply[2]
            st["exceptions"] += 1
        if kind == "crc":
            reply = reply[:-2] + bytes((reply[-2] ^ 0xFF, reply[-1] ^ 0xFF))
        elif kind == "wrong_slave":
            reply = add_crc(bytes(((sid % 247) + 1,)) + reply[1:-2])
        elif kind == "truncated":
            reply = reply[:-3]
        t_send = self.loop.time() + self.t35_s() + self.latency
        self.last_tx_end = t_send + self.wire_s(len(reply))
        await self._sleep_until(self.last_tx_end)
        item["answered"] = True
        st["answered"] += 1
        self._log(item)
        self._write_b(reply)
        self.trace("%s -> %s" % (frame.hex(), reply.hex()))

    def _write_b(self, data):
        while data:
            try:
                n = os.write(self.mb, data)
            except BlockingIOError:
                n = 0  # pty full: the firmware is not reading; drop the rest
                self.trace("pty full, reply dropped")
                return
            except OSError:
                return
            data = data[n:]

    def _after_write(self, sid, addr, values):
        end = addr + len(values)
        if addr <= 8070 < end:
            self.reg_set(sid, 8050, [0, 0, 0, 0])
            self.reg_set(sid, 8070, [0])
            st = self.physics.evses.get(sid) or self.physics.meters.get(sid)
            if st is not None:
                st["p_acc"] = 0
        if sid in self.physics.evses and addr <= 8086 < end:
            v = values[8086 - addr]
            self.reg_set(sid, 8086, [0])
            if v > 0 and v < 0x8000:
                self.physics.disconnect_cp(sid, v)
                if self.physics.on:
                    self.physics.apply()

    # -- physics ticker -----------------------------------------------------
    async def _ticker(self):
        nxt = self.loop.time()
        while True:
            speed = self.physics.speed if self.physics.speed > 0 else 1.0
            interval = TICK_S if speed <= 1 else max(TICK_S / speed, 0.005)
            dt_ms = max(1, int(round(interval * speed * 1000)))
            nxt += interval
            now = self.loop.time()
            if nxt < now - 1.0:
                nxt = now + interval
            await asyncio.sleep(max(0.0, nxt - now))
            if self.physics.on:
                try:
                    self.physics.tick(dt_ms)
                except Exception as exc:
                    sys.stderr.write("pbsim: physics error: %r\n" % (exc,))

    # -- control server -----------------------------------------------------
    async def _client(self, reader, writer):
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ConnectionError, asyncio.LimitOverrunError, ValueError):
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                    if not isinstance(msg, dict):
                        raise CmdError("expected a JSON object")
                    res = self.dispatch(msg)
                except (ValueError, CmdError) as exc:
                    res = {"ok": False, "error": str(exc) if isinstance(exc, CmdError)
                           else "bad json: %s" % exc}
                except Exception as exc:
                    res = {"ok": False, "error": "internal: %r" % (exc,)}
                writer.write((json.dumps(res) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    def _slave(self, msg, evse=False):
        if "slave" not in msg:
            raise CmdError("missing slave")
        sid = _int(msg["slave"], "slave")
        if sid not in self.maps:
            raise CmdError("no slave %d on the bus" % sid)
        if evse and sid not in self.physics.evses:
            raise CmdError("slave %d is not an EVSE" % sid)
        return sid

    def dispatch(self, msg):
        cmd = msg.get("cmd")
        fn = getattr(self, "cmd_" + cmd, None) if isinstance(cmd, str) else None
        if fn is None:
            raise CmdError("unknown cmd %r" % (cmd,))
        res = fn(msg)
        out = {"ok": True}
        if res:
            out.update(res)
        return out

    def cmd_ping(self, msg):
        return {"pong": True}

    def cmd_fault(self, msg):
        sid = self._slave(msg)
        kind = msg.get("kind")
        if kind not in FAULT_KINDS:
            raise CmdError("kind must be one of %s" % ", ".join(FAULT_KINDS))
        count = _int(msg.get("count", 1), "count")
        code = _int(msg.get("code", 4), "code")
        if not 0 <= code <= 255:
            raise CmdError("code must be 0..255")
        if count == 0:
            self.faults.pop(sid, None)
        elif count < -1:
            raise CmdError("count must be -1, 0 or positive")
        else:
            self.faults[sid] = {"kind": kind, "count": count, "code": code}

    def cmd_fault_rate(self, msg):
        rate = msg.get("rate", 0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise CmdError("rate must be 0..1")
        kinds = msg.get("kinds", list(FAULT_KINDS))
        if not kinds or any(k not in FAULT_KINDS for k in kinds):
            raise CmdError("kinds must be a non-empty subset of %s" % ", ".join(FAULT_KINDS))
        self.rate = float(rate)
        self.rate_kinds = list(kinds)
        self.rate_code = _int(msg.get("code", 4), "code")
        self.rate_rng = random.Random(msg.get("seed", 1))

    def cmd_clear_faults(self, msg):
        self.faults.clear()
        self.rate = 0.0
        self.offline.clear()

    def cmd_set_regs(self, msg):
        sid = self._slave(msg)
        addr = _int(msg.get("addr"), "addr")
        values = msg.get("values")
        if not isinstance(values, list) or not values:
            raise CmdError("values must be a non-empty list")
        for v in values:
            if not -32768 <= _int(v, "value") <= 65535:
                raise CmdError("value out of range")
        if not self.mapped(sid, addr, len(values)):
            raise CmdError("address range not mapped")
        self.reg_set(sid, addr, values)

    def cmd_get_regs(self, msg):
        sid = self._slave(msg)
        addr = _int(msg.get("addr"), "addr")
        count = _int(msg.get("count", 1), "count")
        if count < 1 or not self.mapped(sid, addr, count):
            raise CmdError("address range not mapped")
        return {"values": self.reg_get(sid, addr, count)}

    def cmd_requests(self, msg):
        since = _int(msg.get("since", 0), "since")
        slave = msg.get("slave")
        limit = msg.get("limit")
        items = []
        for it in self.log:
            if it["seq"] < since or (slave is not None and it["slave"] != slave):
                continue
            items.append(it)
            if limit is not None and len(items) >= limit:
                break
        nxt = items[-1]["seq"] + 1 if (limit is not None and items and len(items) >= limit) \
            else max(self.seq, since)
        first = self.log[0]["seq"] if self.log else self.seq
        return {"next": nxt, "first": first, "items": items}

    def cmd_stats(self, msg):
        return {"slaves": dict((str(k), v) for k, v in sorted(self.stats.items())),
                "unknown_slave": self.unknown, "bad_crc": self.bad_crc,
                "incomplete": self.incomplete}

    def cmd_reset(self, msg):
        self.faults.clear()
        self.rate = 0.0
        self.offline.clear()
        self.physics.clear()
        self.factory()
        self.log.clear()
        self.reset_stats()

    def cmd_plug(self, msg):
        sid = self._slave(msg, evse=True)
        self.physics.turn_on()
        ev = self.physics.evse(sid)
        ev["car"] = _car(msg.get("car"))
        ev["delivered_mws"] = 0
        self.physics.apply()

    def cmd_unplug(self, msg):
        sid = self._slave(msg, evse=True)
        self.physics.turn_on()
        ev = self.physics.evse(sid)
        ev["car"] = None
        ev["cur"] = [0, 0, 0]
        ev["delivered_mws"] = 0
        ev["disconnect_ms"] = 0
        self.physics.apply()

    def cmd_house(self, msg):
        self.physics.turn_on()
        self.physics.house_static = _phases3(msg.get("ma"), "ma")
        self.physics.house_profile = None
        self.physics.noise = _int(msg.get("noise_ma", 0), "noise_ma")
        self.physics._inputs()
        self.physics.apply()

    def cmd_pv(self, msg):
        self.physics.turn_on()
        self.physics.pv_static = _phases3(msg.get("ma"), "ma")
        self.physics.pv_profile = None
        self.physics._inputs()
        self.physics.apply()

    def cmd_car_stop_drawing(self, msg):
        sid = self._slave(msg, evse=True)
        ev = self.physics.evse(sid)
        if ev["car"] is None:
            raise CmdError("no car plugged at slave %d" % sid)
        self.physics.turn_on()
        ev["car"]["stopped"] = bool(msg.get("on", True))
        self.physics.apply()

    def cmd_offline(self, msg):
        sid = self._slave(msg)
        if msg.get("on", True):
            self.offline.add(sid)
        else:
            self.offline.discard(sid)

    def cmd_physics(self, msg):
        if "speed" in msg:
            sp = msg["speed"]
            if isinstance(sp, bool) or not isinstance(sp, (int, float)) or sp <= 0:
                raise CmdError("speed must be > 0")
            self.physics.speed = float(sp)
        if "ramp_ma_per_s" in msg:
            self.physics.ramp = _int(msg["ramp_ma_per_s"], "ramp_ma_per_s")
        if msg.get("on", True):
            self.physics.turn_on()
            self.physics.apply()
        else:
            self.physics.on = False

    def cmd_scenario(self, msg):
        if "data" in msg:
            sc = msg["data"]
        elif "file" in msg:
            try:
                with open(msg["file"]) as f:
                    sc = json.load(f)
            except (OSError, ValueError) as exc:
                raise CmdError("cannot load scenario: %s" % exc)
        else:
            raise CmdError("scenario needs file or data")
        self.physics.load_scenario(sc)

    def cmd_state(self, msg):
        st = self.physics.state()
        st["offline"] = sorted(self.offline)
        st["faults"] = dict((str(k), dict(v)) for k, v in self.faults.items())
        st["fault_rate"] = self.rate
        return st


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(prog="pbsim", description="Simulated Power Brain RS-485 bus")
    p.add_argument("--link", help="publish the firmware tty as this symlink")
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--parity", choices=("N", "E", "O"), default="N")
    p.add_argument("--control-host", default="127.0.0.1")
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--evse-ids", default=None)
    p.add_argument("--scenario")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--no-wire-time", action="store_true")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.baud <= 0 or args.speed <= 0 or args.latency_ms < 0:
        p.error("baud and speed must be > 0, latency >= 0")
    return args


def quiet_logging(verbose):
    lg = logging.getLogger("pymodbus")
    if verbose:
        from pymodbus import pymodbus_apply_logging_config
        pymodbus_apply_logging_config(logging.DEBUG)
    else:
        lg.addHandler(logging.NullHandler())
        lg.propagate = False
        lg.setLevel(logging.CRITICAL + 1)


async def amain(args):
    sim = Sim(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        tty_path = await sim.start()
        sys.stdout.write("READY %s\n" % json.dumps(
            {"tty": tty_path, "control": sim.control_port, "baud": sim.baud}))
        sys.stdout.flush()
        await stop.wait()
        await sim.stop()
    finally:
        sim.cleanup()
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_logging(args.verbose)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
            return 2
        raise
    except (OSError, ValueError, CmdError) as exc:
        sys.stderr.write("pbsim: %s\n" % exc)
        return 2


# ---------------------------------------------------------------------------
# Helpers for tests (import pbsim; pytest has tools/ on its path)
# ---------------------------------------------------------------------------


class PbsimError(Exception):
    pass


class Client:
    """Blocking JSON-lines client for the control channel."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.f = self.sock.makefile("rwb")

    def cmd(self, cmd, **params):
        msg = dict(params)
        msg["cmd"] = cmd
        return self.raw(msg)

    def raw(self, msg, check=True):
        self.f.write((json.dumps(msg) + "\n").encode())
        self.f.flush()
        line = self.f.readline()
        if not line:
            raise PbsimError("control connection closed")
        res = json.loads(line)
        if check and not res.get("ok"):
            raise PbsimError(res.get("error"))
        return res

    def close(self):
        try:
            self.f.close()
        finally:
            self.sock.close()


def launch(args=(), python=None, timeout=15.0, **popen_kw):
    """Start pbsim as a subprocess; return (Popen, READY info dict)."""
    import select
    cmd = [python or sys.executable, os.path.join(HERE, "pbsim.py")] + list(args)
    popen_kw.setdefault("stdout", subprocess.PIPE)
    proc = subprocess.Popen(cmd, **popen_kw)
    fd = proc.stdout.fileno()
    buf = b""
    end = _now() + timeout
    while b"\n" not in buf:
        left = end - _now()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise PbsimError("pbsim did not become ready: %r" % buf)
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode()
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise PbsimError("unexpected first line: %r" % line)
    return proc, json.loads(line[6:])


def _now():
    import time
    return time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
