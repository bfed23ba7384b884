"""Time of one Balancer.balance() under MicroPython, for 8 and 32 EVSEs.

    micropython -X heapsize=96k tools/bench/balancer_cycle_mp.py [cycles]

(run from the repository root; lib/ is put on sys.path after MICROPYPATH, which
balancer_bench.py points at the .mpy build of pblib). A busy site: mixed 1- and
3-phase cars on all rotations, three priorities, detection, an offline EVSE, a
disabled one, charging rules (solar, relative, time), mamps, more cars than
current (pauses and rotation), cars following their limits with noise and a
house load that moves every cycle. Every timed cycle (and the set_evse calls
before it, not timed) runs under micropython.heap_lock(): a cycle that allocated
would raise MemoryError. Then the same with max_phase_skew (12 A) and automatic
phase switching on every other EVSE (the cycles that try a car's other phase
mode allocate twice).
Prints one line per size and variant and a last line "ok".
"""
import gc
import sys
import time

import micropython

_here = sys.argv[0].rpartition("/")[0] or "."
sys.path.append(_here + "/../../lib")

from pblib import balancer  # noqa: E402

ROT = ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (1, 0, 2), (2, 1, 0))


class Site:
    """The per-EVSE inputs (lists), passed with set_evse every cycle as the firmware does."""

    def __init__(self, n):
        self.n = n
        self.state = [3] * n
        self.enabled = [1] * n
        self.used_phases = [(0, 1, 7, 2, 7, 4)[i % 6] for i in range(n)]
        self.rot = [i % 6 for i in range(n)]
        self.prio = [1 + i % 3 for i in range(n)]
        self.max_cur = [(16000, 32000, 16000, 13000)[i % 4] for i in range(n)]
        self.energy = [500 * i for i in range(n)]
        self.mamps = [0] * n
        self.cur = [0] * (3 * n)
        self.rules_e = [None] * n
        self.rules_u = [None] * n
        self.sw = [0] * n


def site(n, psw=False):
    b = balancer.Balancer(n)
    b.max_total_current = 32000 if n <= 8 else 100000
    b.reserve_current = 1000
    b.max_total_evse_current = 0 if n <= 8 else 90000
    b.disable_policy = 1
    s = Site(n)
    s.state[2] = 6
    s.enabled[3] = 0
    s.rules_e[4] = [{"days": 127, "mode": 5, "solar": 1000, "udur": 60}]
    s.rules_u[5] = [{"days": 127, "mode": 1, "current": -2000}]
    s.rules_e[6] = [{"days": 127, "mode": 0, "current": 10000, "time": 0, "dur": 1440}]
    s.mamps[7] = 12000
    if psw:
        b.max_phase_skew = 12000
        b.phase_switch_min_ms = 60000
        for i in range(0, n, 2):
            s.sw[i] = 1
    return b, s


def plant(b, s, t, grid):
    """Cars draw their limits on their phases (1-phase cars on EVSE L1), with noise."""
    n = b.n
    g0 = grid[0]
    g1 = grid[1]
    g2 = grid[2]
    for i in range(n):
        lim = b.limit[i] if s.state[i] in (3, 4) else 0
        m = s.used_phases[i] or 7
        if s.sw[i] & 2:
            m = 1
        for k in range(3):
            v = lim - ((t + 37 * i + 11 * k) % 300) if lim and (m >> k) & 1 else 0
            s.cur[3 * i + k] = v
            p = ROT[s.rot[i]][k]
            if p == 0:
                g0 += v
            elif p == 1:
                g1 += v
            else:
                g2 += v
    b.set_grid(g0, g1, g2, t)


def inputs(b, s):
    """set_evse for every slot (allocation-free: also run under heap_lock)."""
    c = s.cur
    for i in range(s.n):
        b.set_evse(i, s.state[i], s.enabled[i], s.used_phases[i], s.rot[i], 6000, s.max_cur[i], s.prio[i],
                   300000, 0, s.mamps[i], s.energy[i], c[3 * i], c[3 * i + 1], c[3 * i + 2], s.rules_e[i],
                   s.rules_u[i], s.sw[i])


def switch(b, s):
    """The control task's phase switching, at once (the car follows next cycle)."""
    for i in range(b.n):
        if s.sw[i] & 1 and b.want_1p[i] != s.sw[i] >> 1 & 1:
            s.sw[i] = s.sw[i] ^ 2


def run(n, cycles, psw=False):
    b, s = site(n, psw)
    house = [3000, 5000, 2000]
    t = 0
    for _ in range(40):  # warm-up: sessions start, phases get detected
        plant(b, s, t, house)
        inputs(b, s)
        b.balance(t)
        switch(b, s)
        t += 1000
    times = []
    for c in range(cycles):
        house[0] = 3000 + (c * 7919) % 9000  # a moving, spiky house load
        house[1] = 5000 + (c * 104729) % 4000
        if c % 50 == 25:
            s.state[(c // 50) % n] = 2 if c % 100 == 25 else 3
        plant(b, s, t, house)
        gc.collect()
        micropython.heap_lock()
        inputs(b, s)  # (not timed)
        t0 = time.ticks_us()
        b.balance(t)
        t1 = time.ticks_us()
        micropython.heap_unlock()
        times.append(time.ticks_diff(t1, t0))
        switch(b, s)
        t += 1000
    times.sort()
    mean = sum(times) // len(times)
    paused = sum(b.paused)
    print("balance() n=%d%s: median %d us, mean %d us, p95 %d us, max %d us (%d cycles, %d paused now)"
          % (n, " skew+psw" if psw else "", times[len(times) // 2], mean, times[len(times) * 95 // 100], times[-1],
             cycles, paused))


def main():
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    for psw in (False, True):
        for n in (8, 32):
            run(n, cycles, psw)
            gc.collect()
    print("ok")


main()
