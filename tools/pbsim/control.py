"""The control channel: a JSON-lines server for tests, benchmarks and `make sim`.

TCP 127.0.0.1:<control>, JSON lines: one object per line in, one per line out,
`{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Several clients may be
connected at once. Slave ids are integers. Commands:

  {"cmd":"ping"}                              -> {"ok":true,"pong":true}
  {"cmd":"fault","slave":1,"kind":K,"count":N,"code":C}
        The next N requests to that (existing) slave get fault K (faults.py;
        N=-1: until cleared, N=0: clear this slave's fault; default N=1).
        Replaces any fault pending for that slave. C: the exception code of
        kind "exception" (default 4).
  {"cmd":"fault_rate","rate":0.2,"kinds":[...],"seed":1,"code":4}
        Each request to an existing slave without a pending explicit fault gets
        a random fault (kind drawn from kinds, default all five) with
        probability rate (seeded RNG, deterministic for a given request
        sequence). rate 0 disables.
  {"cmd":"clear_faults"}                      explicit faults, fault_rate, offline flags
  {"cmd":"set_regs","slave":s,"addr":a,"values":[...]}
        raw write into the datastore (also read-only registers; values
        -32768..65535 stored as 16 bit); every address must be mapped. No side
        effects of a bus write, except that the phase relay follows a changed
        8087/8113 (relay.py).
  {"cmd":"get_regs","slave":s,"addr":a,"count":n} -> {"ok":true,"values":[...]}
  {"cmd":"requests","since":k,"slave":s,"limit":n}   (slave, limit optional)
        -> {"ok":true,"next":m,"first":f,"items":[...]} items with seq >= k from
        the request log (reqlog.py: the item format); m = seq for the next
        call; f = oldest seq still held.
  {"cmd":"stats"} -> {"ok":true,"slaves":{"1":{"requests","answered","exceptions",
        "faults":{kind:n}}},"unknown_slave":n,"bad_crc":n,"incomplete":n}
  {"cmd":"reset"}   factory register values, no faults, not offline, physics
                    off and cleared, relays at three phases and their record
                    cleared, request log and stats cleared.
  {"cmd":"evse","slave":1,"features":256}   (features optional)
        features: write the EVSE's 8113 (bit 8 = 1p/3p switching available).
        -> {"ok":true,"slave":1, the EVSE's entry of `state`,
            "relay_switches":[{"t_ms","physics_ms","from","to","current_ma",
            "under_load"}, ...]}  (relay.py; the last 100 switches)
  Physics (each turns the physics on, except `offline`; physics.py):
  {"cmd":"plug","slave":1,"car":{"phases":7,"max_ma":16000,"need_wh":20000,"stop_ms":0}}
        car defaults: phases 7, max_ma 16000, need_wh null (= never full),
        stop_ms 0 (stops drawing at once when charging is withdrawn)
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
        restart the physics with this scenario (scenario.py; registers are not
        reset, except 8113 of EVSEs with "features")
  {"cmd":"state"} -> {"ok":true,"physics":bool,"t_ms","speed","ramp_ma_per_s",
        "house_ma":[3],"pv_ma":[3],"evses":{"1":{...}},"meters":{"2":{...}},
        "offline":[ids],"faults":{...},"fault_rate":r}
        An EVSE's entry: "car", "cp_state", "current_ma", "power_w",
        "delivered_wh", "limit_da", "enable", "relay_select" (8087),
        "energy_wh", "disconnect_ms", "grid_phases", "features" (8113),
        "relay" (the relay's position: 0 three phases, 1 one phase),
        "relay_switch_count", "relay_under_load" (switches while the car drew
        >= 1 A).
"""
import asyncio
import json

from pbsim.checks import CmdError, as_int, as_u16, phases3
from pbsim.faults import FAULT_KINDS
from pbsim.physics import new_car
from pbsim.registers import FEATURES, RELAY_SELECT


def _slave(sim, msg, evse=False):
    if "slave" not in msg:
        raise CmdError("missing slave")
    sid = as_int(msg["slave"], "slave")
    if sid not in sim.store:
        raise CmdError("no slave %d on the bus" % sid)
    if evse and sid not in sim.physics.evses:
        raise CmdError("slave %d is not an EVSE" % sid)
    return sid


def _addr_range(sim, sid, addr, count):
    if count < 1 or not sim.store.mapped(sid, addr, count):
        raise CmdError("address range not mapped")


# -- bus, faults, log ---------------------------------------------------------

def cmd_ping(sim, msg):
    return {"pong": True}


def cmd_fault(sim, msg):
    sid = _slave(sim, msg)
    kind = msg.get("kind")
    if kind not in FAULT_KINDS:
        raise CmdError("kind must be one of %s" % ", ".join(FAULT_KINDS))
    count = as_int(msg.get("count", 1), "count")
    code = as_int(msg.get("code", 4), "code")
    if not 0 <= code <= 255:
        raise CmdError("code must be 0..255")
    if count < -1:
        raise CmdError("count must be -1, 0 or positive")
    sim.faults.set_fault(sid, kind, count, code)


def cmd_fault_rate(sim, msg):
    rate = msg.get("rate", 0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise CmdError("rate must be 0..1")
    kinds = msg.get("kinds", list(FAULT_KINDS))
    if not kinds or any(k not in FAULT_KINDS for k in kinds):
        raise CmdError("kinds must be a non-empty subset of %s" % ", ".join(FAULT_KINDS))
    sim.faults.set_rate(rate, kinds, as_int(msg.get("code", 4), "code"), msg.get("seed", 1))


def cmd_clear_faults(sim, msg):
    sim.faults.clear()


def cmd_offline(sim, msg):
    sim.faults.set_offline(_slave(sim, msg), msg.get("on", True))


def cmd_set_regs(sim, msg):
    sid = _slave(sim, msg)
    addr = as_int(msg.get("addr"), "addr")
    values = msg.get("values")
    if not isinstance(values, list) or not values:
        raise CmdError("values must be a non-empty list")
    for v in values:
        if not -32768 <= as_int(v, "value") <= 65535:
            raise CmdError("value out of range")
    _addr_range(sim, sid, addr, len(values))
    sim.store.set(sid, addr, values)
    end = addr + len(values)
    if sid in sim.physics.evses and (addr <= RELAY_SELECT < end or addr <= FEATURES < end):
        sim.follow_relay(sid)


def cmd_get_regs(sim, msg):
    sid = _slave(sim, msg)
    addr = as_int(msg.get("addr"), "addr")
    count = as_int(msg.get("count", 1), "count")
    _addr_range(sim, sid, addr, count)
    return {"values": sim.store.get(sid, addr, count)}


def cmd_requests(sim, msg):
    return sim.log.query(as_int(msg.get("since", 0), "since"), msg.get("slave"), msg.get("limit"))


def cmd_stats(sim, msg):
    return sim.log.summary()


def cmd_reset(sim, msg):
    sim.reset()


def cmd_evse(sim, msg):
    sid = _slave(sim, msg, evse=True)
    if "features" in msg:
        sim.set_features(sid, as_u16(msg["features"], "features"))
    res = {"slave": sid}
    res.update(sim.physics.evse_state(sid))
    res["relay_switches"] = sim.relays.history(sid)
    return res


# -- physics ------------------------------------------------------------------

def cmd_plug(sim, msg):
    sid = _slave(sim, msg, evse=True)
    car = new_car(msg.get("car"))
    sim.physics.turn_on()
    sim.physics.plug(sid, car)
    sim.physics.apply()


def cmd_unplug(sim, msg):
    sid = _slave(sim, msg, evse=True)
    sim.physics.turn_on()
    sim.physics.unplug(sid)
    sim.physics.apply()


def cmd_house(sim, msg):
    ma = phases3(msg.get("ma"), "ma")
    noise = as_int(msg.get("noise_ma", 0), "noise_ma")
    sim.physics.turn_on()
    sim.physics.set_house(ma, noise)
    sim.physics.apply()


def cmd_pv(sim, msg):
    ma = phases3(msg.get("ma"), "ma")
    sim.physics.turn_on()
    sim.physics.set_pv(ma)
    sim.physics.apply()


def cmd_car_stop_drawing(sim, msg):
    sid = _slave(sim, msg, evse=True)
    car = sim.physics.evses[sid]["car"]
    if car is None:
        raise CmdError("no car plugged at slave %d" % sid)
    sim.physics.turn_on()
    car["stopped"] = bool(msg.get("on", True))
    sim.physics.apply()


def _speed(sp):
    if isinstance(sp, bool) or not isinstance(sp, (int, float)) or sp <= 0:
        raise CmdError("speed must be > 0")
    return float(sp)


def cmd_physics(sim, msg):
    speed = _speed(msg["speed"]) if "speed" in msg else sim.physics.speed
    ramp = as_int(msg["ramp_ma_per_s"], "ramp_ma_per_s") if "ramp_ma_per_s" in msg else sim.physics.ramp
    sim.physics.speed = speed
    sim.physics.ramp = ramp
    if msg.get("on", True):
        sim.physics.turn_on()
        sim.physics.apply()
    else:
        sim.physics.on = False


def cmd_scenario(sim, msg):
    if "data" in msg:
        sc = msg["data"]
    elif "file" in msg:
        try:
            with open(msg["file"]) as f:
                sc = json.load(f)
        except (OSError, ValueError, TypeError) as exc:
            raise CmdError("cannot load scenario: %s" % exc)
    else:
        raise CmdError("scenario needs file or data")
    sim.load_scenario(sc)


def cmd_state(sim, msg):
    st = sim.physics.state()
    st["offline"] = sorted(sim.faults.offline)
    st["faults"] = dict((str(k), dict(v)) for k, v in sim.faults.explicit.items())
    st["fault_rate"] = sim.faults.rate
    return st


COMMANDS = {
    "ping": cmd_ping, "fault": cmd_fault, "fault_rate": cmd_fault_rate,
    "clear_faults": cmd_clear_faults, "offline": cmd_offline, "set_regs": cmd_set_regs,
    "get_regs": cmd_get_regs, "requests": cmd_requests, "stats": cmd_stats, "reset": cmd_reset,
    "evse": cmd_evse, "plug": cmd_plug, "unplug": cmd_unplug, "house": cmd_house, "pv": cmd_pv,
    "car_stop_drawing": cmd_car_stop_drawing, "physics": cmd_physics, "scenario": cmd_scenario,
    "state": cmd_state,
}


def dispatch(sim, msg):
    """Run one command object; -> {"ok": true, ...}; raises CmdError."""
    cmd = msg.get("cmd")
    fn = COMMANDS.get(cmd) if isinstance(cmd, str) else None
    if fn is None:
        raise CmdError("unknown cmd %r" % (cmd,))
    res = fn(sim, msg)
    out = {"ok": True}
    if res:
        out.update(res)
    return out


def reply_to(sim, line):
    """The reply object to one request line."""
    try:
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise CmdError("expected a JSON object")
        return dispatch(sim, msg)
    except CmdError as exc:
        return {"ok": False, "error": str(exc)}
    except ValueError as exc:
        return {"ok": False, "error": "bad json: %s" % exc}
    except Exception as exc:
        return {"ok": False, "error": "internal: %r" % (exc,)}


async def _serve(sim, reader, writer):
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
            writer.write((json.dumps(reply_to(sim, line)) + "\n").encode())
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def start_server(sim, host, port):
    """The listening control server (asyncio.Server)."""
    return await asyncio.start_server(lambda r, w: _serve(sim, r, w), host, port, limit=1 << 22)
