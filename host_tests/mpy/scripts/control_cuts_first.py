# A write pass cuts before it raises, and raises nothing while a cut failed
# (firmware/pbctl/control.py, Control.write): the limits on the boxes never
# add up to more than the fuse, whatever write fails.
#
# Under MicroPython (the .mpy build): two Power Brain EVSEs charging behind a
# fake bus that keeps each box's registers and fails the writes to a slave on
# demand. The site has no meter (the balancer shares max_total_current). E2's
# cap drops from 16 A to 6 A, so E1 may rise to 26 A:
#   - while E2's cut fails (its car pausing: the balancer gives E1 its share),
#     E1 is not raised (the boxes keep 16 + 16 A);
#   - once it goes through, E2 is cut before E1 is raised;
#   - after every single write the boxes' limits add up to at most 32 A;
#   - the fast overload path (lower_only) never raises.
# Prints "OK <writes>" or raises.
import time

import asyncio

from pblib import rtu

from pbctl import config, control, devices

_LIMIT = 8093
_MAX = 32000


class Bus:
    def __init__(self):
        self.writes = []  # (slave, register, value)
        self.regs = {}  # (slave, register) -> value, as the boxes have it
        self.fail = set()  # slaves whose writes time out
        self._stats = {}

    def stats(self, slave, fresh=False):
        return self._stats.setdefault(slave, rtu.Stats())

    async def write1(self, slave, addr, value, prio=False):
        await asyncio.sleep_ms(1)
        if slave in self.fail:
            raise rtu.ModbusError(rtu.TIMEOUT)
        self.writes.append((slave, addr, value))
        self.regs[(slave, addr)] = value
        total = sum(v * 100 for (s, a), v in self.regs.items() if a == _LIMIT)
        assert total <= _MAX, ("the boxes' limits above the fuse", self.regs, self.writes[-4:])


now = time.ticks_ms()
evses = []
for k in range(2):
    c = config.defaults(config.EVSE)
    c.update({"address": "rtu:%d" % (k + 1), "id": k + 1, "max_charging_cur": 32000})
    evses.append(devices.new_device("evse_powerbrain", "E%d" % (k + 1), c, now))
p = config.defaults(config.PARAMS)
p["max_total_current"] = _MAX
site = devices.Site(p, evses, "", {"accepted": False, "allow_usage_stats": False})
bus = Bus()
ctl = control.Control(site, bus, "/tmp", 2)
ctl.lb.meter_mode = 0  # no meter: no failsafe, the balancer shares max_total_current


idle = set()  # slaves whose car is plugged in but draws nothing (for now)


def charging():
    # the cars draw what their boxes offer
    for e in site.devices:
        s = e.slave()
        e.set_state(2 if s in idle else 3, time.ticks_ms())
        lim = 0 if s in idle else bus.regs.get((s, _LIMIT), 0) * 100
        e.cur[0] = e.cur[1] = e.cur[2] = lim


def limit(slave):
    return bus.regs.get((slave, _LIMIT), 0) * 100


async def main():
    for _ in range(100):  # both cars ramp to their share, 16 A each
        charging()
        await ctl.step()
        if limit(1) == limit(2) == 16000:
            break
        await asyncio.sleep_ms(20)
    assert limit(1) == limit(2) == 16000, bus.regs
    # E2 capped at 6 A, its car pausing, its writes failing: E1 stays at 16 A,
    # pass after pass (its car could start again at the 16 A its box still offers)
    assert ctl.cap("E2", 1, 6000)
    bus.fail.add(2)
    idle.add(2)
    n = len(bus.writes)
    for _ in range(50):  # (the balancer raises E1 step by step)
        charging()
        await ctl.step()
        if site.devices[0].limit == 26000:
            break
        await asyncio.sleep_ms(20)
    assert [e.limit for e in site.devices] == [26000, 6000], [e.limit for e in site.devices]
    assert bus.writes[n:] == [], bus.writes[n:]
    assert limit(1) == limit(2) == 16000
    # the fast overload path only cuts: E2 still failing, E1 not raised
    await ctl.write(True)
    assert bus.writes[n:] == []
    # E2 answers again: cut first, then E1 raised
    bus.fail.clear()
    idle.clear()
    charging()
    await ctl.step()
    lims = [w for w in bus.writes[n:] if w[1] == _LIMIT]
    assert lims == [(2, _LIMIT, 60), (1, _LIMIT, 260)], lims
    # and back: E2's cap withdrawn, E1's car pausing and its writes failing: E2 stays at 6 A
    assert ctl.cap("E2", 1, 0)
    bus.fail.add(1)
    idle.add(1)
    n = len(bus.writes)
    for _ in range(50):
        charging()
        await ctl.step()
        if site.devices[1].limit > 6000:
            break
        await asyncio.sleep_ms(20)
    assert site.devices[0].limit < 26000 < site.devices[1].limit + 26000 and site.devices[1].limit > 6000, [
        e.limit for e in site.devices]
    assert bus.writes[n:] == [] and limit(1) == 26000 and limit(2) == 6000, (bus.writes[n:], bus.regs)
    bus.fail.clear()
    charging()
    await ctl.step()
    lims = [w for w in bus.writes[n:] if w[1] == _LIMIT]
    assert lims[0][0] == 1 and lims[0][2] * 100 == site.devices[0].limit and lims[1][0] == 2, lims
    print("OK %d" % len(bus.writes))


asyncio.run(main())
