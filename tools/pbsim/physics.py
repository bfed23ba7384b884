"""EV, house load and PV models: integer, deterministic; off by default (registers stay static).

A tick every 100/speed ms of real time (at least 5 ms) advances physics time
by 100 ms (speed < 1: 100*speed ms; speed > 20: 5 ms*speed). Per EVSE:
  no car -> cp_state 0, no current;
  car, CP opened by 8086 -> cp_state 0, no current;
  car, charging not allowed (8094 != 1 or 8093 < 60) or car full -> cp_state 1,
      current 0 at once (a car with "stop_ms" > 0 that was drawing keeps
      drawing, cp_state 2, for stop_ms of physics time after charging was
      withdrawn, as a slow car does);
  car allowed but "stopped drawing" -> cp_state 2, current 0 at once;
  otherwise cp_state 2 and each car phase (car bitmask; only L1 while the
      phase relay is at one phase, relay.py) ramps by ramp_ma_per_s (default
      5000 mA/s) toward min(8093*100, max_ma).
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
Car (plug): {"phases": 7, "max_ma": 16000, "need_wh": null (= never full),
"stop_ms": 0}.
"""
import asyncio
import random
import sys

from pbsim.checks import CmdError, as_int
from pbsim.registers import (CHARGING_CUR_LIMIT, CHARGING_ENABLE, CP_STATE, ENERGY, METER1, METER2,
                             PULSES, RELAY_SELECT, VOLTAGE_L1)

TICK_S = 0.1
METER_ROLES = ("grid", "house", "pv", "evse", "static")
CAR_KEYS = ("phases", "max_ma", "need_wh", "stop_ms")
_MWS_PER_WH = 3600000


def tdiv(a, b):
    """Integer division truncating toward zero."""
    q = abs(a) // b
    return q if a >= 0 else -q


def new_car(spec):
    """A car from its plug/scenario spec (None = all defaults)."""
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise CmdError("car must be an object")
    car = {"phases": 7, "max_ma": 16000, "need_wh": None, "stop_ms": 0, "stopped": False}
    for k, v in spec.items():
        if k not in CAR_KEYS:
            raise CmdError("unknown car key %r" % k)
        car[k] = None if (k == "need_wh" and v is None) else as_int(v, k)
    if not 1 <= car["phases"] <= 7:
        raise CmdError("car phases must be a bitmask 1..7")
    if car["stop_ms"] < 0:
        raise CmdError("car stop_ms must be >= 0")
    return car


def step_at(profile, t_ms):
    """Value of the last step of [(t_ms, value), ...] at or before t_ms (else the first)."""
    val = profile[0][1]
    for t, v in profile:
        if t > t_ms:
            break
        val = v
    return val


def new_evse():
    return {"car": None, "cur": [0, 0, 0], "cp": 0, "power": 0, "delivered_mws": 0,
            "e_acc": 0, "p_acc": 0, "disconnect_ms": 0, "hold_ms": 0, "grid_phases": [0, 1, 2]}


def new_meter(role):
    return {"role": role, "evses": [], "cur": [0, 0, 0], "power": 0,
            "e_acc": 0, "p_acc": 0, "export_mws": 0}


class Physics:
    def __init__(self, store, relays, evse_ids, speed=1.0, run_event=None, trace=None):
        self.store = store          # registers.Datastore
        self.relays = relays        # relay.Relays
        self.evse_ids = list(evse_ids)
        self.default_speed = speed  # --speed
        self.run_event = run_event  # run_event(command dict) for scenario events
        self.trace = trace or (lambda msg: None)
        self.clear()

    def clear(self):
        self.on = False
        self.t_ms = 0
        self.speed = self.default_speed
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
        self.evses = dict((sid, new_evse()) for sid in self.evse_ids)
        self.meters = {METER1: new_meter("grid"), METER2: new_meter("house")}

    # -- commands -----------------------------------------------------------
    def turn_on(self):
        if not self.on:
            self.on = True
            self.t_ms = 0

    def evse(self, sid):
        if sid not in self.evses:
            raise CmdError("slave %s is not an EVSE" % sid)
        return self.evses[sid]

    def plug(self, sid, car):
        ev = self.evse(sid)
        ev["car"] = car
        ev["delivered_mws"] = 0
        ev["hold_ms"] = 0

    def unplug(self, sid):
        ev = self.evse(sid)
        ev["car"] = None
        ev["cur"] = [0, 0, 0]
        ev["delivered_mws"] = 0
        ev["disconnect_ms"] = 0
        ev["hold_ms"] = 0

    def disconnect_cp(self, sid, seconds):
        if sid in self.evses:
            self.evses[sid]["disconnect_ms"] = seconds * 1000

    def set_house(self, ma, noise):
        self.house_static = ma
        self.house_profile = None
        self.noise = noise
        self.update_inputs()

    def set_pv(self, ma):
        self.pv_static = ma
        self.pv_profile = None
        self.update_inputs()

    # -- simulation ---------------------------------------------------------
    def update_inputs(self):
        """House load and PV at the current physics time."""
        base = self.house_static if self.house_profile is None else step_at(self.house_profile, self.t_ms)
        if self.noise:
            n = self.noise
            self.house = [max(0, b + self.rng.randint(-n, n)) for b in base]
        else:
            self.house = list(base)
        if self.pv_profile is not None:
            v = step_at(self.pv_profile, self.t_ms)[0]
            self.pv = [v, v, v]
        else:
            self.pv = list(self.pv_static)

    def tick(self, dt_ms):
        """Advance physics time by dt_ms, run due scenario events, update all registers."""
        self.t_ms += dt_ms
        while self.events and self.events[0][0] <= self.t_ms:
            _, cmd = self.events.pop(0)
            try:
                self.run_event(dict(cmd))
            except CmdError as exc:
                self.trace("scenario event %r failed: %s" % (cmd, exc))
        self.update_inputs()
        self._step_all(dt_ms)

    def apply(self):
        """Update registers from the current state without advancing time."""
        self._step_all(0)

    def _step_all(self, dt_ms):
        for sid, ev in self.evses.items():
            self._step_evse(sid, ev, dt_ms)
        self._meters(dt_ms)

    def _integrate(self, sid, st, power, dt_ms):
        """Energy (import) and S0 pulses into 8058q / 8050q; keeps sub-units."""
        ppk = self.store.get_int(sid, 8042, 2)
        if power > 0 and dt_ms:
            st["e_acc"] += power * dt_ms           # mWs
            wh = st["e_acc"] // _MWS_PER_WH
            if wh:
                st["e_acc"] -= wh * _MWS_PER_WH
                self.store.set_int(sid, ENERGY, self.store.get_int(sid, ENERGY, 4) + wh, 4)
            if ppk > 0:
                st["p_acc"] += power * dt_ms * ppk
                pulses = st["p_acc"] // (1000 * _MWS_PER_WH)
                if pulses:
                    st["p_acc"] -= pulses * 1000 * _MWS_PER_WH
                    self.store.set_int(sid, PULSES, self.store.get_int(sid, PULSES, 4) + pulses, 4)
        tpp = 1000 * _MWS_PER_WH // (power * ppk) if power > 0 and ppk > 0 else 0
        self.store.set_int(sid, 8054, min(tpp, 0x7FFFFFFF), 2)
        self.store.set(sid, 8056, [0 if power else 1])

    def _write_electric(self, sid, cur, power):
        self.store.set_int(sid, 8062, power, 2)
        for i, addr in enumerate((8064, 8066, 8068)):
            self.store.set_int(sid, addr, tdiv(cur[i], 100), 2)

    def _power(self, sid, cur):
        volts = self.store.get(sid, VOLTAGE_L1, 3)
        return tdiv(sum(cur[i] * volts[i] for i in range(3)), 1000)

    def _target(self, sid, ev, dt_ms):
        """Set the CP state; -> (per-phase target mA, ramp) or None to hold the current."""
        car = ev["car"]
        if car is None:
            ev["cp"] = 0
            return [0, 0, 0], False
        if ev["disconnect_ms"] > 0:
            ev["cp"] = 0
            ev["hold_ms"] = 0
            ev["disconnect_ms"] = max(0, ev["disconnect_ms"] - dt_ms)
            if ev["disconnect_ms"] == 0:
                car["stopped"] = False
            return [0, 0, 0], False
        lim = self.store.get1(sid, CHARGING_CUR_LIMIT)
        allowed = self.store.get1(sid, CHARGING_ENABLE) == 1 and lim >= 60
        full = car["need_wh"] is not None and ev["delivered_mws"] >= car["need_wh"] * _MWS_PER_WH
        if full:
            ev["hold_ms"] = 0
        elif allowed:  # how long the car would go on drawing if charging were withdrawn now
            ev["hold_ms"] = car["stop_ms"] if not car["stopped"] and any(ev["cur"]) else 0
        if full or not allowed:
            ev["hold_ms"] = max(0, ev["hold_ms"] - dt_ms)
            if ev["hold_ms"] > 0 and not car["stopped"]:  # a slow car still draws
                ev["cp"] = 2
                return None
            ev["cp"] = 1
            return [0, 0, 0], False
        ev["cp"] = 2
        if car["stopped"]:
            return [0, 0, 0], False
        mask = 1 if self.relays.one_phase(sid) else car["phases"]
        amps = min(lim * 100, car["max_ma"])
        return [amps if mask >> i & 1 else 0 for i in range(3)], True

    def _step_evse(self, sid, ev, dt_ms):
        target = self._target(sid, ev, dt_ms)
        cur = ev["cur"]
        if target is not None:
            _ramp_toward(cur, target[0], target[1], self.ramp * dt_ms // 1000)
        if self.relays.one_phase(sid):  # the relay connects EVSE L1 only
            cur[1] = cur[2] = 0
        power = self._power(sid, cur)
        ev["power"] = power
        if dt_ms and power > 0:
            ev["delivered_mws"] += power * dt_ms
        self._integrate(sid, ev, power, dt_ms)
        self.store.set(sid, CP_STATE, [ev["cp"]])
        self._write_electric(sid, cur, power)

    def _grid_evse(self, ids=None):
        g = [0, 0, 0]
        for sid, ev in self.evses.items():
            if ids is not None and sid not in ids:
                continue
            for i in range(3):
                g[ev["grid_phases"][i]] += ev["cur"][i]
        return g

    def _meter_current(self, m):
        role = m["role"]
        if role == "grid":
            e = self._grid_evse()
            return [self.house[i] + e[i] - self.pv[i] for i in range(3)]
        if role == "house":
            return list(self.house)
        if role == "pv":
            return list(self.pv)
        return self._grid_evse(m["evses"])

    def _meters(self, dt_ms):
        for sid, m in self.meters.items():
            if m["role"] == "static":
                continue
            cur = self._meter_current(m)
            power = self._power(sid, cur)
            m["cur"] = cur
            m["power"] = power
            if power < 0 and dt_ms:
                m["export_mws"] += -power * dt_ms
            self._integrate(sid, m, power, dt_ms)
            self._write_electric(sid, cur, power)

    # -- state --------------------------------------------------------------
    def evse_state(self, sid):
        ev = self.evses[sid]
        st = {"car": None if ev["car"] is None else dict(ev["car"]), "cp_state": ev["cp"],
              "current_ma": list(ev["cur"]), "power_w": ev["power"],
              "delivered_wh": ev["delivered_mws"] // _MWS_PER_WH,
              "limit_da": self.store.get1(sid, CHARGING_CUR_LIMIT),
              "enable": self.store.get1(sid, CHARGING_ENABLE),
              "relay_select": self.store.get1(sid, RELAY_SELECT),
              "energy_wh": self.store.get_int(sid, ENERGY, 4),
              "disconnect_ms": ev["disconnect_ms"], "grid_phases": list(ev["grid_phases"])}
        st.update(self.relays.status(sid))
        return st

    def meter_state(self, sid):
        m = self.meters[sid]
        return {"role": m["role"], "evses": list(m["evses"]), "current_ma": list(m["cur"]),
                "power_w": m["power"], "import_wh": self.store.get_int(sid, ENERGY, 4),
                "export_wh": m["export_mws"] // _MWS_PER_WH}

    def state(self):
        return {"physics": self.on, "t_ms": self.t_ms, "speed": self.speed,
                "ramp_ma_per_s": self.ramp, "house_ma": list(self.house), "pv_ma": list(self.pv),
                "evses": dict((str(sid), self.evse_state(sid)) for sid in self.evses),
                "meters": dict((str(sid), self.meter_state(sid)) for sid in self.meters)}


def _ramp_toward(cur, target, ramp, step):
    """Move each phase's current toward its target by step mA (0 at once when not ramping)."""
    for i in range(3):
        if not ramp or target[i] == 0:
            cur[i] = 0
        elif cur[i] < target[i]:
            cur[i] = min(target[i], cur[i] + step)
        else:
            cur[i] = max(target[i], cur[i] - step)


async def run_ticks(physics):
    """The physics clock: tick while physics.on (forever; cancel to stop)."""
    loop = asyncio.get_running_loop()
    nxt = loop.time()
    while True:
        speed = physics.speed if physics.speed > 0 else 1.0
        interval = TICK_S if speed <= 1 else max(TICK_S / speed, 0.005)
        dt_ms = max(1, int(round(interval * speed * 1000)))
        nxt += interval
        now = loop.time()
        if nxt < now - 1.0:
            nxt = now + interval
        await asyncio.sleep(max(0.0, nxt - now))
        if physics.on:
            try:
                physics.tick(dt_ms)
            except Exception as exc:
                sys.stderr.write("pbsim: physics error: %r\n" % (exc,))
