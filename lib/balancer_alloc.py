"""Load balancer, second half of a cycle: allocation and limits.

alloc(b, count) (admission at the minimums in service order, water-filling by
priority) and commit(b, count) (snooze idle cars, targets -> limits and the
outputs) over a balancer.Balancer b with count candidates (see balancer.py for
the interface and the decisions). A separate module only so that each part
compiles from source within MicroPython's 96 KB test heap. Integer-only,
allocation-free.
"""
from micropython import const

# ---- shared layout (see balancer.py)
_R_L1 = const(11)  # + grid phase
_R_EVSE_CAP = const(14)
_R_DRAW = const(15)
_R_SHORTAGE = const(17)
_R_IMBALANCE = const(18)
_R_ROTATION = const(19)
_R_RAMP = const(20)
_R_IDLE = const(22)
_U = const(100)
_BIG = const(0x3FFFFFFF)
_SAT = const(0x1FFFFFFF)
_K_FIX = const(1)
_K_CAND = const(2)
_K_FREE = const(4)
_G_DT = const(2)
_G_BUD = const(24)
_G_EVB = const(27)
_G_ROOM = const(30)
_G_FIXD = const(33)
_G_BST = const(42)
_G_SL = const(45)  # slack for raises
_S_FL = const(0)
_S_MAX = const(1)
_S_C = const(6)
_S_FIX = const(9)  # fixed share (kind FIX), u: shares the field of _S_CP (candidates only)
_S_CP = const(9)  # cap (candidates), u; _S_FIX (kind FIX) shares the field
_S_AL = const(10)  # allocation, u (> 0 = admitted); the sort's _S_K2 shares the field
_S_K1 = const(11)
_S_RUNMS = const(14)
_S_IDLE = const(15)
_S_SET = const(18)
_S_HOLD = const(20)  # old limit a lowered car may still draw, mA
_S_HOLDMS = const(21)
_F_ST = const(0)
_F_PH = const(2)
_F_KIND = const(5)
_F_CAPR = const(6)
_F_FR = const(7)  # reason from the allocation
_F_SNZ = const(8)
_F_RUN = const(10)
_F_STOP = const(11)
_F_IDLEP = const(12)
_F_DET = const(14)
_F_WK = const(15)
_B = const(17)
# ---- tuning (see balancer.py)
_MU = const(20)  # start margin 2000 mA, u
_HR = const(500)
_FOLLOW = const(5000)
_IDLE_MS = const(30000)
_TOL = const(300)  # mA above its limit that still counts as "followed"


def alloc(self, count):
    """Admit the count candidates at their minimums in service order, then
    water-fill by priority."""
    nc = count
    S = self._s
    f = self._f
    n = self.n
    g = S[n]
    ph = self.phases
    for p in range(3):
        g[_G_ROOM + p] = g[_G_BUD + p] - g[_G_FIXD + p]
    q = -1
    r = False
    for j in range(nc):
        i = f[j]
        w = S[i]
        c = n + i * _B
        w[_S_AL] = 0
        fl = w[_S_FL]
        if w[_S_CP] < fl:
            continue
        k = w[_S_K1]
        if f[c + _F_SNZ] or k & 7 == 5:  # idle: only current nobody else uses (below)
            f[c + _F_FR] = _R_IDLE
            continue
        if k >> 3 != q:
            q = k >> 3
            r = False
        e = f[c + _F_RUN]
        d = fl if e else fl + _MU
        gm = ph[i] >> 3
        # a car that adds load must also fit at the recent peak of the other load;
        # a rotation swap (a waiting car in class 2) replaces a running car; a car
        # whose phases are unknown (assumed three) starts when it fits now: once
        # it has drawn, a 1-phase car needs room on one phase only
        x = not e and k & 7 == 2
        e = e or x or not f[c + _F_PH] | f[c + _F_DET]
        v = d
        for p in range(3):
            if gm >> p & 1:
                a = g[_G_ROOM + p] - (0 if e else g[_G_BST + p])
                if a < v:
                    v = a
        if v >= d:
            w[_S_AL] = fl
            for p in range(3):
                if gm >> p & 1:
                    g[_G_ROOM + p] -= fl
            r = r or x
        elif f[c + _F_RUN] and r:
            f[c + _F_FR] = _R_ROTATION
        elif max(g[_G_ROOM], g[_G_ROOM + 1], g[_G_ROOM + 2]) >= d:
            f[c + _F_FR] = _R_IMBALANCE  # another phase would have room for it
        else:
            f[c + _F_FR] = _R_SHORTAGE
    for p in range(_G_ROOM, _G_ROOM + 3):
        if g[p] < 0:
            g[p] = 0
    # equal water-filling above the floors, one priority group [j0, j1) at a time;
    # an EVSE that stops rising (frozen) keeps its allocation negated until the
    # group is done
    j1 = 0
    while j1 < nc:
        j0 = j1
        q = S[f[j0]][_S_K1] >> 3
        j1 += 1
        while j1 < nc and S[f[j1]][_S_K1] >> 3 == q:
            j1 += 1
        e = 0  # live
        for j in range(j0, j1):
            i = f[j]
            w = S[i]
            a = w[_S_AL]
            if a:
                if w[_S_CP] <= a:
                    w[_S_AL] = -a
                    c = n + i * _B
                    f[c + _F_FR] = f[c + _F_CAPR]
                else:
                    e += 1
        q = 0  # level
        while e:
            y = 0  # rising EVSEs per grid phase p, in bits 8p..8p+7 (n <= 255)
            v = _BIG  # step
            for j in range(j0, j1):
                i = f[j]
                w = S[i]
                if w[_S_AL] > 0:
                    d = w[_S_FL] - q  # > 0: waits at its floor
                    if d <= 0:
                        d = w[_S_CP] - q
                        gm = ph[i]  # grid phases in bits 3..5
                        y += (gm & 8) >> 3 | (gm & 16) << 4 | (gm & 32) << 11
                    v = d if d < v else v
            r = 0  # saturated phases
            for p in range(3):
                d = y >> 8 * p & 255
                if d:
                    d = g[_G_ROOM + p] // d
                    v = d if d < v else v
                    r |= (d == 0) << p
            if v > 0:
                for p in range(3):
                    g[_G_ROOM + p] -= v * (y >> 8 * p & 255)
                for j in range(j0, j1):
                    w = S[f[j]]
                    if w[_S_AL] > 0 and w[_S_FL] <= q:
                        w[_S_AL] = q + v
                        if q + v >= w[_S_CP]:
                            w[_S_AL] = -q - v
                            c = n + f[j] * _B
                            f[c + _F_FR] = f[c + _F_CAPR]
                            e -= 1
                q += v
                continue
            for j in range(j0, j1):  # saturated phase(s): last units, then freeze
                i = f[j]
                w = S[i]
                gm = ph[i] >> 3
                a = w[_S_AL]
                if a <= 0 or not gm & r:
                    continue
                if w[_S_FL] <= q and a < w[_S_CP]:
                    d = 1
                    for p in range(3):
                        if gm >> p & 1 and g[_G_ROOM + p] < d:
                            d = g[_G_ROOM + p]
                    if d > 0:
                        a += 1
                        for p in range(3):
                            if gm >> p & 1:
                                g[_G_ROOM + p] -= 1
                w[_S_AL] = -a
                e -= 1
                p = 0 if gm & r & 1 else (1 if gm & r & 2 else 2)
                f[n + i * _B + _F_FR] = _R_EVSE_CAP if g[_G_EVB + p] else _R_L1 + p
        for j in range(j0, j1):
            w = S[f[j]]
            if w[_S_AL] < 0:
                w[_S_AL] = -w[_S_AL]
    for j in range(nc):  # snoozed idle cars wake up in current left over by everyone
        i = f[j]
        w = S[i]
        c = n + i * _B
        fl = w[_S_FL]
        if w[_S_K1] & 7 == 5 and not f[c + _F_SNZ] and w[_S_CP] >= fl:
            gm = ph[i] >> 3
            v = fl + _MU
            for p in range(3):
                if gm >> p & 1 and g[_G_ROOM + p] - g[_G_BST + p] < v:
                    v = g[_G_ROOM + p] - g[_G_BST + p]
            if v >= fl + _MU:
                w[_S_AL] = fl
                for p in range(3):
                    if gm >> p & 1:
                        g[_G_ROOM + p] -= fl
                f[c + _F_FR] = _R_DRAW


def commit(self, count):
    """Snooze idle cars that hold back others (then allocate again); targets ->
    limits: lower at once, raise only into current that is free; the outputs."""
    nc = count
    S = self._s
    f = self._f
    n = self.n
    g = S[n]
    ph = self.phases
    lim = self.limit
    pau = self.paused
    pms = self.pause_ms
    rsn = self.reason
    dt = g[_G_DT]
    # snooze admitted idle cars (class 4) whose reserved minimum holds back
    # another car on one of their phases
    r = 0
    for j in range(nc):
        i = f[j]
        if not S[i][_S_AL] or S[i][_S_K1] & 7 != 4:
            continue
        for h in range(nc):
            x = f[h]
            w = S[x]
            if x == i or not ph[x] & ph[i] & 0x38 or w[_S_K1] & 7 >= 4 or f[n + x * _B + _F_SNZ]:
                continue
            k = f[n + x * _B + _F_FR]
            if (w[_S_AL] and _R_L1 <= k <= _R_EVSE_CAP) or (not w[_S_AL] and w[_S_CP] >= w[_S_FL]):
                f[n + i * _B + _F_SNZ] = 1
                r = 1
                break
    if r:
        alloc(self, nc)
    for p in range(3):
        g[_G_SL + p] = self.budget[p]
    for i in range(n):
        w = S[i]
        k = f[n + i * _B + _F_KIND]
        if k == _K_FREE:
            lim[i] = w[_S_MAX] // _U * _U
            w[_S_HOLD] = 0
            continue
        v = w[_S_AL] * _U if k == _K_CAND else (w[_S_FIX] * _U if k == _K_FIX else 0)  # target
        o = lim[i]
        h = w[_S_HOLD]
        x = 0  # the largest measured phase current (none: no car, offline)
        a = f[n + i * _B + _F_ST]
        if 1 < a != 6:
            x = max(w[_S_C], w[_S_C + 1], w[_S_C + 2])  # (allocates nothing)
        if h:  # released once followed (measured) or after the follow time
            a = w[_S_HOLDMS] = w[_S_HOLDMS] + dt
            if a >= _FOLLOW or x <= o + _TOL:
                h = 0
        if v < o:
            if x > v + _TOL:
                h = h if h > o else o
                w[_S_HOLDMS] = 0
            lim[i] = o = v
        w[_S_HOLD] = h
        a = h if h > o else o
        gm = ph[i] >> 3
        for p in range(3):
            if gm >> p & 1:
                g[_G_SL + p] -= a
    for j in range(n):
        i = f[j]
        w = S[i]
        c = n + i * _B
        k = f[c + _F_KIND]
        o = lim[i]
        v = w[_S_AL] * _U if k == _K_CAND else (w[_S_FIX] * _U if k == _K_FIX else o)  # target
        if v > o:  # raise
            gm = ph[i] >> 3
            a = v - o
            for p in range(3):
                if gm >> p & 1 and g[_G_SL + p] < a:
                    a = g[_G_SL + p]
            a = o + (a // _U * _U if a > 0 else 0)
            if a >= w[_S_FL] * _U and a > o:
                for p in range(3):
                    if gm >> p & 1:
                        g[_G_SL + p] -= a - o
                lim[i] = a
                # it used the old limit (its largest phase current; not offline:
                # raised): let it ramp first
                if max(w[_S_C], w[_S_C + 1], w[_S_C + 2]) + _HR >= o:
                    w[_S_SET] = 0
        if k == _K_CAND:
            if w[_S_AL]:
                a = w[_S_RUNMS] + dt
                w[_S_RUNMS] = (a if a < _SAT else _SAT) if f[c + _F_RUN] else 0
                f[c + _F_RUN] = 1
                pau[i] = pms[i] = f[c + _F_STOP] = f[c + _F_IDLEP] = 0
                rsn[i] = f[c + _F_FR] if lim[i] else _R_RAMP
            elif w[_S_CP] < w[_S_FL]:
                f[c + _F_RUN] = pau[i] = pms[i] = 0
                rsn[i] = f[c + _F_CAPR]
            else:
                if not pau[i]:  # (a running pause is counted in prepare)
                    pau[i] = 1
                    pms[i] = 0
                    f[c + _F_STOP] = f[c + _F_RUN]
                    a = f[c + _F_IDLEP] = w[_S_IDLE] >= _IDLE_MS
                    if a:
                        a = f[c + _F_WK]
                        f[c + _F_WK] = a + 1 if a < 4 else 4
                f[c + _F_RUN] = w[_S_RUNMS] = 0
                rsn[i] = f[c + _F_FR]
