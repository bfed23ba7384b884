"""pblib.tz under MicroPython: its resident heap, a Zone's, and the time of
Zone.local() against the baseline time.localtime() (what control.py called
every pass before the time zone).

    micropython -X heapsize=96k tools/bench/tz_mp.py [calls]

(run from the repository root; lib/ is put on sys.path). Every timed call of
local() runs under micropython.heap_lock(): a call that allocated would raise
MemoryError. Prints one line per figure and a last line "ok".
"""
import gc
import sys
import time

import micropython

_here = sys.argv[0].rpartition("/")[0] or "."
sys.path.append(_here + "/../../lib")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000

gc.collect()
f0 = gc.mem_free()
from pblib import tz  # noqa: E402

gc.collect()
f1 = gc.mem_free()
z = tz.Zone("CET-1CEST,M3.5.0,M10.5.0/3")
gc.collect()
f2 = gc.mem_free()
print("tz module import: %d B of heap" % (f0 - f1))
print("one Zone (Europe): %d B" % (f1 - f2))

t0 = tz.days(2025, 1, 1) * 86400
z.local(t0)
micropython.heap_lock()
try:
    a = time.ticks_us()
    for i in range(N):
        z.local(t0 + i * 1500)  # 1500 s steps: ~1 year, both changes, a new year's transitions once
    b = time.ticks_us()
finally:
    micropython.heap_unlock()
us_tz = time.ticks_diff(b, a)
a = time.ticks_us()
for i in range(N):
    time.localtime(i * 1500)
b = time.ticks_us()
us_lt = time.ticks_diff(b, a)
print("Zone.local(): %.2f us a call, no allocation (%d calls)" % (us_tz / N, N))
print("time.localtime() (baseline): %.2f us a call" % (us_lt / N))
print("ratio local()/localtime(): %.2f" % (us_tz / us_lt))
print("ok")
