"""The Power Brain's phase switching relay (relay_select, 8087) and its switch record.

The real box switches its phase relay when relay_select is written: 0 = three
phases, 1 = one phase (EVSE L1 only). The simulator:
* moves the relay when 8087 is written on the bus (at the moment the device
  executes the write: the request log's t_ms of that write), and when 8087 or
  8113 is changed through the control channel (`set_regs`, `evse`, a scenario);
  1 = one phase, every other value = three phases;
* moves it only while 8113 (features) has bit 8 (1p/3p switching available).
  Decision: without bit 8 a write of 8087 is still accepted and stored (the
  real box's map has the register), but the relay does not move: no physical
  effect. Should bit 8 appear later, the relay then follows 8087;
* records every switch: {"t_ms" (request log clock), "physics_ms", "from",
  "to", "current_ma": [l1, l2, l3] (the car's current at that moment),
  "under_load": bool}; a switch while the car draws >= 1 A on any phase is a
  violation, counted in `relay_under_load` (the relay must never switch while
  current flows: INTEGRATIONS.md §5). The last 100 switches per EVSE are kept,
  the counters count all of them until `reset`.
The physics (physics.py) makes a car draw on EVSE L1 only while the relay is
at one phase; a 1-phase car stays 1-phase.
"""
import collections

from pbsim.registers import FEATURE_PHASE_SWITCH, FEATURES, RELAY_SELECT

KEEP_SWITCHES = 100
UNDER_LOAD_MA = 1000  # "the car draws < 1 A" (INTEGRATIONS.md §5)


class Relays:
    def __init__(self, store, evse_ids):
        self.store = store
        self.evse_ids = list(evse_ids)
        self.clear()

    def clear(self):
        """Every relay at three phases, no switches recorded."""
        self.position = dict((sid, 0) for sid in self.evse_ids)
        self.switches = dict((sid, collections.deque(maxlen=KEEP_SWITCHES)) for sid in self.evse_ids)
        self.count = dict((sid, 0) for sid in self.evse_ids)
        self.under_load = dict((sid, 0) for sid in self.evse_ids)

    def one_phase(self, sid):
        return self.position[sid] == 1

    def can_switch(self, sid):
        return bool(self.store.get1(sid, FEATURES) & FEATURE_PHASE_SWITCH)

    def follow(self, sid, current_ma, t_ms, physics_ms):
        """Move the relay to 8087's position if it may; True when it switched."""
        want = 1 if self.store.get1(sid, RELAY_SELECT) == 1 else 0
        if want == self.position[sid] or not self.can_switch(sid):
            return False
        loaded = max(current_ma) >= UNDER_LOAD_MA
        self.switches[sid].append({"t_ms": t_ms, "physics_ms": physics_ms,
                                   "from": self.position[sid], "to": want,
                                   "current_ma": list(current_ma), "under_load": loaded})
        self.position[sid] = want
        self.count[sid] += 1
        if loaded:
            self.under_load[sid] += 1
        return True

    def status(self, sid):
        """The relay's part of an EVSE's status (state, evse)."""
        return {"features": self.store.get1(sid, FEATURES), "relay": self.position[sid],
                "relay_switch_count": self.count[sid], "relay_under_load": self.under_load[sid]}

    def history(self, sid):
        return list(self.switches[sid])
