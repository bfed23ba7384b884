# The firmware's interned names: the board module, pbctl's start-up and the
# resident modules it imports, then every on-demand module of the route table
# (pbctl.api.cnf.on_demand(): the commands' modules and their helpers), each
# loaded and dropped again as pbctl.main() does at boot; prints qstr_info().
# Every identifier below is one the firmware has anyway (a name this probe
# added would be counted too). Run on the .mpy build by
# host_tests/mpy/test_heap_budget.py.
import gc

import micropython

import pbboard  # noqa: F401
import pbctl.start  # noqa: F401
from pbctl.api import cnf

for name in cnf.on_demand():
    __import__(name)
    cnf.unload(cnf.on_demand())
    gc.collect()
micropython.qstr_info()
