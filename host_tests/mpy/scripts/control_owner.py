# The control task is the one owner of the limits (firmware/pbctl/control.py):
# requests that arrive while it writes never mix into that write pass.
#
# Under MicroPython (the .mpy build): three Power Brain EVSEs charging behind a
# fake bus. At every await of a write pass (each bus write), a request is handed
# in the way the API and the integrations hand them in — an override cap, an
# integration's cap, a disable, a configuration change (install) — each of which
# would change the limits. The test records every pass's decision (wrapping
# Control.decide) and the bus writes, and checks:
#   - every write of a pass equals that pass's decision, never a later one;
#   - the requests did change the next decisions (else the check proves nothing);
#   - every request was applied at the start of a pass, in order, and settle()
#     returned only after the pass that applied it had written.
# Prints "OK <passes> <writes>" or raises.
import time

import asyncio

from pblib import rtu

from pbctl import config, control, devices

_LIMIT = 8093


class Bus:
    """A fake bus master: writes are recorded, and each one is an await at
    which another task hands the control task a request."""

    def __init__(self):
        self.writes = []  # (pass number, slave, register, value)
        self.on_write = None
        self._stats = {}

    def stats(self, slave, fresh=False):
        return self._stats.setdefault(slave, rtu.Stats())

    async def write1(self, slave, addr, value, prio=False):
        self.writes.append((ctl.passes, slave, addr, value))
        if self.on_write:
            self.on_write()
        await asyncio.sleep_ms(1)  # the other tasks run here


def make_site():
    now = time.ticks_ms()
    evses = []
    for k in range(3):
        c = config.defaults(config.EVSE)
        c.update({"address": "rtu:%d" % (k + 1), "id": k + 1, "max_charging_cur": 32000})
        e = devices.new_device("evse_powerbrain", "E%d" % (k + 1), c, now)
        evses.append(e)
    p = config.defaults(config.PARAMS)
    p["max_total_current"] = 100000
    return devices.Site(p, evses, "", {"accepted": False, "allow_usage_stats": False})


site = make_site()
bus = Bus()
ctl = control.Control(site, bus, "/tmp", 3)
ctl.lb.meter_mode = 0  # a site without meters (what the full cycle's poll would find): no failsafe
decisions = {}  # pass number -> {slave: limit in 0.1 A}
_decide = ctl.decide


def decide(now):
    _decide(now)
    if bus.on_write:  # (not while warming up)
        decisions[ctl.passes] = dict((e.slave(), e.limit // 100) for e in ctl.slot)


ctl.decide = decide


def charging(now):
    # every car draws what its box offers (so the balancer's own headroom
    # logic never binds): the limits follow the caps alone
    for e in site.devices:
        e.set_state(3, now)
        e.dev_limit = e.dev_limit if e.dev_limit >= 0 else 0
        e.dev_enable = e.dev_enable if e.dev_enable >= 0 else 0
        lim = e.limit if e.limit else 6000
        e.cur[0] = e.cur[1] = e.cur[2] = lim


requests = []  # (seq, kind, passes when handed in)
cap_ma = [20000]  # every request lowers some cap: lowering takes effect at once


def hand_in():
    """One request per write, cycling through the kinds of request."""
    k = len(requests) % 4
    cap_ma[0] -= 300
    dev = "E%d" % (1 + len(requests) % 3)
    if k == 0:
        seq = ctl.override(dev, "", cap_ma[0])
    elif k == 1:
        seq = ctl.cap(dev, 1, cap_ma[0])
    elif k == 2:
        seq = ctl.enable(dev, 2, True)  # (no change: an empty request applies too)
    else:
        ch = config.Change(site)
        p = dict(site.params)
        p["max_total_evse_current"] = 3 * cap_ma[0]
        ch.params = p
        seq = ctl.install(ch)
    requests.append((seq, k, ctl.passes))


async def settler(seqs_done):
    # like an HTTP handler: hand in a request, then wait for it
    seq = ctl.cap("E3", 1, 9000)
    before = ctl.passes
    assert await ctl.settle(seq, 5000)
    assert ctl.settled >= seq and ctl.passes > before
    seqs_done.append(seq)


async def main():
    # warm up: the cars ramp to their share (the balancer raises step by step)
    for _ in range(100):
        charging(time.ticks_ms())
        await ctl.step()
        if min(e.limit for e in site.devices) >= 20000:
            break
        await asyncio.sleep_ms(100)
    assert min(e.limit for e in site.devices) >= 20000, [e.limit for e in site.devices]
    bus.writes.clear()
    bus.on_write = hand_in
    done = []
    task = asyncio.create_task(settler(done))
    for _ in range(12):
        charging(time.ticks_ms())
        hand_in()  # one between the passes (an idle moment), one at every write of a pass
        await ctl.step()
    await task
    bus.on_write = None
    n = len(bus.writes)
    await ctl.step()  # the requests handed in during the last pass
    del bus.writes[n:]
    assert done, "settle never returned"
    # every write of a pass is that pass's decision (a pass number counts up after its writes)
    limits = [w for w in bus.writes if w[2] == _LIMIT]
    assert len(limits) >= 12, limits
    for p, slave, reg, value in limits:
        assert decisions[p][slave] == value, (p, slave, value, decisions[p])
    # the requests changed the decisions, so mixing would have been seen
    ps = sorted(decisions)
    changed = sum(1 for a, b in zip(ps, ps[1:]) if decisions[a] != decisions[b])
    assert changed >= 6, decisions
    # each request was applied by the next pass: settled counts them in order
    assert ctl.settled == ctl._seq, (ctl.settled, ctl._seq)
    assert len(requests) == len(bus.writes) + 12, (len(requests), len(bus.writes))
    print("OK %d %d" % (ctl.passes, len(limits)))


asyncio.run(main())
