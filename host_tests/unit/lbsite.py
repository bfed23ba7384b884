"""The load balancer as the unit tests drive it, on CPython and MicroPython.

Site is a pblib.balancer.Balancer whose per-EVSE inputs sit in lists (set by the tests,
with the firmware's defaults) and go in with set_evse for every slot before each
balance(), as firmware/control.py does every cycle. mk, car and cyc (a plant: cars
follow their limits, the grid meter sees house + cars; the control task's phase
switching sequence) build the test sites. A helper module of its own so that the
test modules compile from source within MicroPython's 96 KB test heap.
"""
from pblib.balancer import Balancer
from pblib.reasons import reason_text

ROTS = ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (1, 0, 2), (2, 1, 0))  # phase_rotation


class Site(Balancer):
    def __init__(self, n):
        Balancer.__init__(self, n)
        self.state = [0] * n
        self.enabled = [1] * n
        self.used_phases = [0] * n
        self.phase_rotation = [0] * n
        self.min_cur = [6000] * n
        self.max_cur = [16000] * n
        self.prio = [1] * n
        self.pause_min_ms = [300000] * n
        self.ovr = [0] * n
        self.mamps = [0] * n
        self.energy = [0] * n
        self.cur = [0] * (3 * n)
        self.rules_e = [None] * n
        self.rules_u = [None] * n
        self.sw = [0] * n  # phase switching: bit 0 auto, bit 1 relay on one phase, bit 2 busy, 3/4 wish 1/3
        self.busy = [0] * n  # cycles left of a switching sequence

    def balance(self, t):
        c = self.cur
        for i in range(self.n):
            self.set_evse(i, self.state[i], self.enabled[i], self.used_phases[i], self.phase_rotation[i],
                          self.min_cur[i], self.max_cur[i], self.prio[i], self.pause_min_ms[i], self.ovr[i],
                          self.mamps[i], self.energy[i], c[3 * i], c[3 * i + 1], c[3 * i + 2],
                          self.rules_e[i], self.rules_u[i], self.sw[i])
        Balancer.balance(self, t)


def mk(n=3, total=32000, **kw):
    """A Site of n slots on max_total_current total; kw: other attributes."""
    b = Site(n)
    b.max_total_current = total
    for k in kw:
        assert hasattr(b, k), k  # no silent no-op settings
        setattr(b, k, kw[k])
    return b


def car(b, i, st=3, ph=7, mn=6000, mx=16000, prio=1, rot=0, e=0):
    b.state[i] = st
    b.used_phases[i] = ph
    b.min_cur[i] = mn
    b.max_cur[i] = mx
    b.prio[i] = prio
    b.phase_rotation[i] = rot
    b.energy[i] = e


def cyc(b, t, house=(0, 0, 0), draw=None, grid=True, cph=None, force=None, seq=3):
    """Plant: a charging car draws min(its limit, draw[i]) on its phases (or exactly
    force[i], a car slow to follow; EVSE L1 only while the relay is on one phase);
    the grid meter sees house + cars; then balance, then the control task's phase
    switching: where want_1p differs from the relay, `seq` cycles busy (the car
    stopped), then the relay is switched."""
    g = list(house)
    for i in range(b.n):
        d = b.limit[i] if b.state[i] in (3, 4) and not b.busy[i] else 0
        if draw is not None and draw[i] is not None and draw[i] < d:
            d = draw[i]
        if force is not None and force[i] is not None:
            d = force[i]
        m = cph[i] if cph else (b.used_phases[i] or 7)
        if b.sw[i] & 2:
            m &= 1
        for k in range(3):
            v = d if (m >> k) & 1 else 0
            b.cur[3 * i + k] = v
            g[ROTS[b.phase_rotation[i]][k]] += v
    if grid:
        b.set_grid(g[0], g[1], g[2], t)
    b.balance(t)
    for i in range(b.n):
        if b.busy[i]:
            b.busy[i] -= 1
            if not b.busy[i]:  # relay switched, sequence done
                b.sw[i] = (b.sw[i] ^ 2) & 27
        elif b.sw[i] & 25 and b.want_1p[i] != b.sw[i] >> 1 & 1 and seq:
            b.busy[i] = seq
            b.sw[i] |= 4


def why(b, i):
    return reason_text(b.reason[i])


def gmask(b):
    """Grid phase masks (phases[i] bits 3-5)."""
    return [x >> 3 for x in b.phases]


def sums(b):
    s = [0, 0, 0]
    for i in range(b.n):
        for p in range(3):
            if (b.phases[i] >> 3 + p) & 1:
                s[p] += b.limit[i]
    return s
