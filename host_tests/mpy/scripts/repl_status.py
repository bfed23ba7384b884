# The REPL helpers (pbctl/repl.py: status, get, set, log) on a controller built
# from the real parts: a site of real devices, the control task (no bus), the
# App. Prints what the helpers print, between marker lines.
# Usage: micropython repl_status.py FLASH_DIR. Run by host_tests/mpy/test_repl.py.
import json
import sys

import asyncio
from pblib import rtu

from pbctl import app, config, control, devices, repl

flash = sys.argv[1]
params = config.defaults(config.PARAMS)
e_cfg = config.defaults(config.EVSE)
e_cfg.update({"name": "Wallbox", "address": "evse", "id": 1})
m_cfg = config.defaults(config.METER)
m_cfg.update({"name": "grid", "address": "meter1", "id": 2, "role": 3})
e = devices.new_device("evse_powerbrain", "E1", e_cfg, 0)
e.state, e.limit, e.reason = 3, 16000, 0
e.cur[:] = [15900, 15800, 15700]
m = devices.new_device("meter_powerbrain", "M1", m_cfg, 0)
site = devices.Site(params, [e, m], "", {"accepted": False, "allow_usage_stats": False})


class Bus:
    """rtu.Master as the control task uses it here: statistics, limit writes."""

    trace = None

    def __init__(self):
        self.writes = []
        self._stats = {}

    def stats(self, slave, fresh=False):
        return self._stats.setdefault(slave, rtu.Stats())

    async def write1(self, slave, addr, value, prio=False):
        self.writes.append((slave, addr, value))


class Board:
    FLASH = flash

    def serial(self):
        return "0000-0000-0001"


bus = Bus()
a = app.App(Board(), site, control.Control(site, bus, flash, 1), None)
m.stats.err = True  # (the bus master's record of slave 2)
m.stats.last_error = "modbus timeout"
repl._free = lambda: 12345  # the heap figure varies from run to run

print("STATUS")
repl.status(a)
print("GET %s %s" % (repl.get(a) is site.params, repl.get(a, "max_total_current")))
print("LOG")
repl.log(a)
print("SET %s" % repl.set(a, max_total_current=20000, title="garage"))
with open(flash + "/pbctl.json") as f:
    print("SAVED %d %s" % (json.load(f)[0]["params"]["max_total_current"], site.params["max_total_current"]))
asyncio.run(a.control.step())  # the control task's next pass installs it
print("INSTALLED %d %s %s" % (site.params["max_total_current"], site.params["title"], bus.writes))
for kw in ({"max_total_current": "lots"}, {"devices": [{"dev_type": "evse_http"}]}):
    try:
        repl.set(a, **kw)
    except Exception as x:
        print("REFUSED %s %s" % (type(x).__name__, x))
print("UNCHANGED %d" % site.params["max_total_current"])
print("END")
