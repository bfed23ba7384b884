"""Load balancer, first half of a cycle: inputs -> caps, budgets, service order.

prepare(b, now_ms) over a balancer.Balancer b (see balancer.py for the interface
and the decisions). A separate module only so that each part compiles from source
within MicroPython's 96 KB test heap. Integer-only, allocation-free.
"""
from micropython import const

# ---- shared layout (see balancer.py)
_R_UNUSED = const(0)
_R_NOCAR = const(1)
_R_ERROR = const(2)
_R_OFFLINE = const(3)
_R_OFF_HELD = const(4)
_R_DISABLED = const(5)
_R_DIS_MIN = const(6)
_R_DIS_NOLIMIT = const(7)
_R_OVR_OFF = const(8)
_R_OVR_MAMPS = const(9)
_R_MAX = const(10)
_R_DRAW = const(15)
_R_FAILSAFE = const(16)
_U = const(100)
_BIG = const(0x3FFFFFFF)
_SAT = const(0x1FFFFFFF)
_K_OFF = const(0)  # slot kinds: no share
_K_FIX = const(1)  # fixed share: offline (held) or disabled at minimum
_K_CAND = const(2)  # allocated
_K_WAIT = const(3)  # paused, inside pause_min_time
_K_FREE = const(4)  # disabled, policy -1: unmanaged
_G_T = const(0)
_G_TOK = const(1)
_G_DT = const(2)
_G_SF = const(3)  # smoothed surplus
_G_SREM = const(4)
_G_PKI = const(5)
_G_PKMS = const(6)
_G_M = const(7)
_G_MV = const(15)
_G_PV = const(18)
_G_OTH = const(21)  # other load
_G_BUD = const(24)  # budget, u
_G_EVB = const(27)  # capped by max_total_evse_current
_G_FIXD = const(33)  # fixed shares, u
_G_EV = const(36)  # measured EVSE currents
_G_EVP = const(39)  # the same at the last grid reading
_G_BST = const(42)  # start window: room to keep free, u
_G_PK = const(48)
_S_FL = const(0)
_S_MAX = const(1)
_S_PRIO = const(2)
_S_PMIN = const(3)
_S_MAMPS = const(4)
_S_E = const(5)
_S_C = const(6)
_S_FIX = const(9)  # fixed share (kind FIX), u: shares the field of _S_CP (candidates only)
_S_CP = const(9)  # cap (candidates), u; _S_FIX (kind FIX) shares the field
_S_K1 = const(11)  # service order key: priority * 8 + class
_S_K2 = const(10)  # sort tie-break (energy or -pause_ms), shares _S_AL's field (allocated later)
_S_OFF = const(12)  # ms offline
_S_RUNMS = const(14)
_S_IDLE = const(15)
_S_MF = const(16)  # draw, smoothed
_S_DCAP = const(17)  # draw cap, mA
_S_SET = const(18)  # ms since the last raise
_S_DETMS = const(19)
_F_ST = const(0)
_F_EN = const(1)
_F_PH = const(2)
_F_ROT = const(3)
_F_OVR = const(4)
_F_KIND = const(5)
_F_CAPR = const(6)
_F_RUN = const(10)
_F_STOP = const(11)  # it was running when paused
_F_IDLEP = const(12)  # paused while idle
_F_REL = const(13)
_F_DET = const(14)  # detected phases
_F_WK = const(15)  # idle turns
_B = const(17)
# ---- tuning (see balancer.py)
_BL = const(24000)  # start window 120 s in 5 buckets
_HR = const(500)  # headroom
_SETTLE = const(10000)
_IDLE_MS = const(30000)
_WAKEUP = const(30000)  # grace after a start: idle counts from -_WAKEUP
_WAKE = const(900000)
_IDLE_MA = const(1000)
_DET_MIN = const(1500)
_DET_SHRINK = const(60000)
_PERIOD = const(0x40000000)
_HALF = const(0x20000000)


def prepare(self, t):
    """Meter ages, per EVSE phases/caps/kind, budgets, surplus, service order of the
    candidates (in _f[0:n]); returns the number of candidates."""
    S = self._s
    f = self._f
    n = self.n
    g = S[n]
    lim = self.limit
    pau = self.paused
    pms = self.pause_ms
    rsn = self.reason
    ph = self.phases
    dt = 0
    if g[_G_TOK]:
        dt = t - g[_G_T]  # ticks_diff for a 2**30 period without big ints
        if dt >= _HALF:
            dt -= _PERIOD
        elif dt < -_HALF:
            dt += _PERIOD
        if dt < 0:
            dt = 0
    g[_G_TOK] = 1
    g[_G_T] = t
    g[_G_DT] = dt
    nw = g[_G_M + 1]  # a new grid (or consumption) reading since the last cycle
    for m in range(_G_M, _G_M + 8, 4):  # meter ages: grid, production
        a = g[m + 3] + dt
        a = a if a < _SAT else _SAT
        if g[m + 1]:
            a = t - g[m]
            if a >= _HALF:
                a -= _PERIOD
            elif a < -_HALF:
                a += _PERIOD
            a = a if a > 0 else 0
            g[m + 1] = 0
        g[m + 3] = a
    mode = self.meter_mode
    to = self.meter_timeout_ms
    fs = self.failsafe = mode != 0 and (not g[_G_M + 2] or g[_G_M + 3] > to)
    for p in range(_G_FIXD, _G_EV + 3):
        g[p] = 0
    pol = self.disable_policy
    # ---- per EVSE: phases, caps, kind
    for i in range(n):
        w = S[i]
        c = n + i * _B
        st = f[c + _F_ST]
        if st <= 1:
            self.reset_slot(i)
            f[c + _F_KIND] = _K_OFF
            rsn[i] = _R_NOCAR if st == 1 else _R_UNUSED
            w[_S_OFF] = 0
            ph[i] = ph[i] & 0x38 | (f[c + _F_PH] or 7)
            continue
        c0 = w[_S_C]
        c1 = w[_S_C + 1]
        c2 = w[_S_C + 2]
        mx = 0 if st == 6 else max(c0, c1, c2)
        # phases in use: configured, plus any detected while charging (a car
        # drawing on a phase uses it, whatever the configuration says)
        em = f[c + _F_PH]
        d = f[c + _F_DET]
        if (st == 3 or st == 4) and mx >= _DET_MIN:
            a = mx >> 2
            a = a if a > 1000 else 1000
            v = (c0 >= a) | (c1 >= a) << 1 | (c2 >= a) << 2
            a = 0
            if d == 0 or v & ~d:
                d |= v
            elif v != d:
                a = w[_S_DETMS] + dt
                if a >= _DET_SHRINK:
                    d = v
                    a = 0
            w[_S_DETMS] = a
            f[c + _F_DET] = d
        em = em | d if em else d or 7
        r = f[c + _F_ROT]
        gm = 0
        for k in range(3):  # EVSE phase k is on grid phase (k + r) % 3, or (r - k) % 3
            if em >> k & 1:
                gm |= 1 << ((k + r) % 3 if r < 3 else (r - k) % 3)
        ph[i] = em | gm << 3
        fl = w[_S_FL]
        en = f[c + _F_EN]
        if not en and pol == -1:
            f[c + _F_KIND] = _K_FREE  # unmanaged: its current stays in the other load
            rsn[i] = _R_DIS_NOLIMIT
            f[c + _F_RUN] = pau[i] = 0
            continue
        # measured EVSE currents (not other load); an offline EVSE whose share is
        # still held: its last reading, up to that share (its draw is in the grid
        # reading, the share is reserved: not twice)
        a = _BIG if st != 6 else (lim[i] if w[_S_OFF] + dt < to else 0)
        for k in range(3):
            v = w[_S_C + k]
            g[_G_EV + ((k + r) % 3 if r < 3 else (r - k) % 3)] += v if v < a else a
        if not en or st >= 5 or f[c + _F_OVR] & 1:  # (OVR_OFF)
            v = 0
            k = _R_DISABLED
            if not en:
                if pol == 1:
                    v = fl
                    k = _R_DIS_MIN
            elif st == 6:
                a = w[_S_OFF] + dt
                a = w[_S_OFF] = a if a < _SAT else _SAT
                k = _R_OFFLINE
                if a < to and lim[i] > 0:
                    v = lim[i] // _U
                    k = _R_OFF_HELD
            else:
                k = _R_ERROR if st == 5 else _R_OVR_OFF
            if st != 6:
                w[_S_OFF] = 0
            f[c + _F_KIND] = _K_FIX if v else _K_OFF
            w[_S_FIX] = v
            for p in range(3):
                if gm >> p & 1:
                    g[_G_FIXD + p] += v
            rsn[i] = k
            f[c + _F_RUN] = pau[i] = pms[i] = 0
            continue
        w[_S_OFF] = 0
        # an EV is present (state 2..4): its caps
        cp = w[_S_MAX] // _U
        k = _R_MAX
        m = w[_S_MAMPS] // _U
        if 0 < m < cp:
            cp = m
            k = _R_OVR_MAMPS
        if fs:
            v = self.failsafe_current // _U
            v = fl if v < 0 else (v if v >= fl else 0)
            if v < cp:
                cp = v
                k = _R_FAILSAFE
        m = lim[i]
        d = 0
        if m > 0:  # cap a car that draws less than its limit at draw + headroom
            a = w[_S_SET] + dt
            a = w[_S_SET] = a if a < _SAT else _SAT
            v = w[_S_MF]
            v += (mx - v) >> 1
            w[_S_MF] = v
            d = w[_S_DCAP]
            v = (v + _HR + _U - 1) // _U * _U
            v = v if v > fl * _U else fl * _U
            r = 0
            if d and mx + (_HR >> 1) >= d:  # it wants more: release after 2 cycles
                r = f[c + _F_REL] + 1
                if r >= 2:
                    d = r = 0
            elif a >= _SETTLE and v < (d - _U if d else m):
                d = v
            f[c + _F_REL] = r
            if d and d // _U < cp:
                cp = d // _U
                k = _R_DRAW
            if mx < _IDLE_MA:
                a = w[_S_IDLE] + dt
                w[_S_IDLE] = a if a < _SAT else _SAT
            else:
                w[_S_IDLE] = f[c + _F_WK] = 0
        else:
            w[_S_SET] = f[c + _F_REL] = 0
            w[_S_IDLE] = -_WAKEUP  # a car needs a while to start drawing
            w[_S_MF] = mx
        w[_S_DCAP] = d
        w[_S_CP] = cp
        f[c + _F_CAPR] = k
        f[c + _F_KIND] = _K_CAND
        if pau[i]:
            a = pms[i] + dt
            a = pms[i] = a if a < _SAT else _SAT
            if f[c + _F_STOP] and a < w[_S_PMIN]:
                f[c + _F_KIND] = _K_WAIT
    # ---- budgets; rolling maximum of the other load over the start window (5
    # buckets): a waiting car starts only if it would fit at that peak too
    mt = self.max_total_current - self.reserve_current
    ec = self.max_total_evse_current
    bud = self.budget
    a = g[_G_PKMS] + dt
    r = a >= _BL
    if r:
        a = a - _BL if a < 2 * _BL else 0
        g[_G_PKI] = (g[_G_PKI] + 1) % 5
    g[_G_PKMS] = a
    for p in range(3):
        o = 0
        if fs:
            o = g[_G_OTH + p]
        elif not nw:  # no new reading: the last estimate (a stale grid reading
            o = g[_G_OTH + p]  # minus fresh EVSE currents would be a phantom)
        elif mode == 3:  # METER_GRID
            # the grid was read between the EVSE readings of the last cycle and
            # of this one: the other load lies between grid - this cycle's EVSE
            # currents and grid - the last cycle's. The last estimate, moved into
            # that range: a car ramping is no change of the other load (no
            # phantom dips); a change the range cannot explain moves it at once.
            # A reading over max_total_current is not explained away by a ramp:
            # it is paired with this cycle's EVSE currents (read nearest to it)
            a = g[_G_EV + p]
            v = a - g[_G_EVP + p]  # the EVSE currents' move (signed)
            g[_G_EVP + p] = a
            o = g[_G_MV + p] - a
            if o + a <= self.max_total_current:
                x = o + v if v < 0 else o
                o += v if v > 0 else 0
                v = g[_G_OTH + p]
                o = v if v < o else o
                o = x if x > o else o
        elif mode == 1:  # METER_CONSUMPTION
            o = g[_G_MV + p]
        g[_G_OTH + p] = o
        v = mt - o
        g[_G_EVB + p] = 0
        if 0 < ec < v:
            v = ec
            g[_G_EVB + p] = 1
        v = v if v > 0 else 0
        bud[p] = v
        g[_G_BUD + p] = v // _U
        k = _G_PK + 5 * p
        if r or g[k + g[_G_PKI]] < o:
            g[k + g[_G_PKI]] = o
        for x in range(k, k + 5):
            if g[x] > o:
                o = g[x]
        o = mt - o
        if 0 < ec < o:
            o = ec
        o = v - (o if o > 0 else 0)
        g[_G_BST + p] = o // _U if o > 0 else 0
    v = 0
    if not fs:
        if mode == 3:
            v = -(g[_G_OTH] + g[_G_OTH + 1] + g[_G_OTH + 2])
        elif g[_G_M + 6] and g[_G_M + 7] <= to:
            v = g[_G_PV] + g[_G_PV + 1] + g[_G_PV + 2]
            if mode == 1:
                v -= g[_G_MV] + g[_G_MV + 1] + g[_G_MV + 2]
    a = g[_G_SF]
    a += (v - a) >> self.solar_shift
    g[_G_SF] = a
    g[_G_SREM] = self.surplus = a if a > 0 else 0
    # ---- service order: (priority, class, tie-break, slot)
    r = self.rotation_ms
    m = 0
    for i in range(n):
        w = S[i]
        c = n + i * _B
        if f[c + _F_KIND] != _K_CAND:
            w[_S_K1] = _BIG
            w[_S_K2] = 0
            continue
        m += 1
        if f[c + _F_RUN]:
            k = 4 if w[_S_IDLE] >= _IDLE_MS else (0 if w[_S_RUNMS] < r else 2)
            w[_S_K2] = w[_S_E]
        else:
            a = pms[i]
            if f[c + _F_IDLEP]:  # snoozed while idle: wake-up probes back off 1, 2, 4, 8 turns
                v = f[c + _F_WK]
                k = 3 if a >= _WAKE << (v - 1 if v > 1 else 0) else 5
            else:
                k = 3
                if a >= r:  # its turn: ahead of long-running cars with more energy
                    k = 2
                    a = 1 - w[_S_E]  # (ahead at equal energy)
            w[_S_K2] = -a
        w[_S_K1] = w[_S_PRIO] * 8 + k
    for j in range(1, n):  # insertion sort: last cycle's order is nearly right
        x = f[j]
        a = S[x][_S_K1]
        v = S[x][_S_K2]
        h = j - 1
        while h >= 0:
            y = f[h]
            w = S[y]
            if w[_S_K1] < a or (w[_S_K1] == a and (w[_S_K2] < v or (w[_S_K2] == v and y < x))):
                break
            f[h + 1] = y
            h -= 1
        f[h + 1] = x
    return m
