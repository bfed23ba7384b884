"""Load balancer: the other load from readings of different moments, offline
shares, rotation by energy, idle cars (pblib.balancer), on CPython and
MicroPython. A module of its own so that each test module compiles from source
within MicroPython's 96 KB test heap."""
from lbsite import car, cyc, mk, why


def read(b, t, evse, grid, house=(10000, 0, 0), ph=7):
    """One cycle in the firmware's order: the grid meter (the car drew `grid` then),
    then the EVSE (it draws `evse` now); slot 0 is the car."""
    for k in range(3):
        b.cur[k] = evse if ph >> k & 1 else 0
    b.set_grid(house[0] + grid, house[1] + grid, house[2] + grid, t)
    b.balance(t)


def test_a_ramping_car_is_no_change_of_the_other_load():
    b = mk(1, 32000)
    car(b, 0, mx=32000)
    read(b, 0, 0, 0)
    assert list(b.budget) == [22000, 32000, 32000] and b.limit[0] == 22000
    # the car ramps 0 -> 22 A at 10 A/s; the grid meter is read 0.3 s before the
    # EVSE each round, so it sees the car 3 A lower (and on the way down higher)
    prev = 0
    for t, c in ((1000, 10000), (2000, 20000), (3000, 22000), (4000, 22000), (5000, 22000)):
        read(b, t, c, max(prev, c - 3000))
        prev = c
        assert list(b.budget) == [22000, 32000, 32000] and b.limit[0] == 22000, (t, list(b.budget))
    b.max_cur[0] = 14000  # the car is set to 14 A and ramps down: the same
    for t, c in ((6000, 22000), (7000, 14000), (8000, 14000)):
        read(b, t, c, min(prev, c + 3000))
        prev = c
        assert list(b.budget) == [22000, 32000, 32000] and b.limit[0] == 14000, (t, list(b.budget))


def test_a_reading_over_the_fuse_is_not_explained_away():
    b = mk(1, 32000)
    car(b, 0, mx=32000)
    read(b, 0, 22000, 22000)
    read(b, 1000, 22000, 22000)
    assert b.budget[0] == 22000 and b.limit[0] == 22000
    # the house rises by 3 A while the car ramps down (its own limit lowered):
    # inside the range a ramp explains, but the grid reads 33 A > 32 A: paired
    # with the EVSE reading of this cycle (nearest to it in time), at once
    b.max_cur[0] = 14000
    read(b, 2000, 14000, 20000, house=(13000, 0, 0))
    assert b.budget[0] == 32000 - (13000 + 20000 - 14000) and b.limit[0] == 13000, list(b.budget)
    read(b, 3000, 11000, 11000, house=(13000, 0, 0))  # steady again: exact
    assert b.budget[0] == 19000 and b.limit[0] == 14000


def test_other_load_change_during_a_ramp_is_followed():
    b = mk(1, 32000)
    car(b, 0, mx=32000)
    read(b, 0, 0, 0)
    # the house rises by 3 A on L1 while the car ramps 0 -> 10 A: inside the
    # range of the readings this looks like the ramp (the grid read after the
    # car's 0 A, before its 10 A), so the estimate stands for this round ...
    read(b, 1000, 10000, 5000, house=(13000, 0, 0))
    assert b.budget[0] == 22000, list(b.budget)
    # ... and is exact once the car is steady
    read(b, 2000, 10000, 10000, house=(13000, 0, 0))
    assert list(b.budget) == [19000, 32000, 32000] and b.limit[0] == 19000
    # a rise larger than the ramp can explain moves it at once (to the lower end
    # of the range: the grid reading minus the car's newer current)
    read(b, 3000, 14000, 12000, house=(19000, 0, 0))
    assert b.budget[0] == 32000 - (19000 + 12000 - 14000), list(b.budget)
    read(b, 4000, 14000, 14000, house=(19000, 0, 0))
    assert b.budget[0] == 13000 and b.limit[0] == 13000


def test_a_stale_grid_reading_keeps_the_other_load():
    b = mk(2, 32000)
    car(b, 0)
    car(b, 1)
    for t in range(0, 20000, 1000):
        cyc(b, t, house=(12000, 0, 0))
    assert list(b.limit) == [10000, 10000] and b.budget[0] == 20000
    # the meter is not read (inside meter_timeout) while car 1 ramps down: its
    # lower current is no rise of the other load
    cyc(b, 20000, house=(12000, 0, 0), grid=False, force=[None, 7000])
    assert b.budget[0] == 20000 and not b.failsafe
    cyc(b, 21000, house=(12000, 0, 0), force=[None, 7000])  # read again: the same
    assert b.budget[0] == 20000


def test_offline_evse_share_is_not_counted_twice():
    b = mk(2, 32000)
    car(b, 0)
    car(b, 1)
    for t in range(0, 20000, 1000):
        cyc(b, t, house=(14000, 0, 0))
    assert list(b.limit) == [9000, 9000] and b.budget[0] == 18000
    b.state[1] = 6  # offline: the firmware passes zeros, its car still draws 9 A
    b.cur[3:6] = [0, 0, 0]
    b.set_grid(14000 + 9000 + 9000, 18000, 18000, 20000)
    b.balance(20000)
    assert why(b, 1) == "offline: share held" and b.limit[1] == 9000
    # the other load is the house's 14 A (the offline car's last reading is its own
    # draw, held in its share): car 0 keeps 18 - 9 = 9 A
    assert b.budget[0] == 18000 and b.limit[0] == 9000, (list(b.budget), list(b.limit))
    t = 21000
    while t <= 31000:  # after meter_timeout its share is released: its draw is other load
        b.set_grid(14000 + 9000 + 9000, 18000, 18000, t)
        b.balance(t)
        t += 1000
    assert why(b, 1) == "offline" and b.budget[0] == 32000 - 23000 and b.limit[0] == 9000


def test_rotation_turn_goes_to_less_energy():
    b = mk(2, 9000, rotation_ms=600000, pause_min_ms=None)
    b.pause_min_ms = [60000, 60000]
    car(b, 0, ph=1, e=3000)
    car(b, 1, ph=1, st=2, e=9000)  # waiting, already charged more than the running car
    t = 0
    while t < 900000:
        cyc(b, t)
        assert b.limit[0] == 9000 and b.limit[1] == 0, t
        t += 1000
    b.energy[0] = 9500  # now the running car has more: car 1 takes its turn
    for t in range(t, t + 10000, 1000):
        cyc(b, t)
    assert b.limit[1] == 9000 and b.limit[0] == 0 and why(b, 0) == "paused: rotation"


def test_idle_after_drawing_is_quicker_than_after_a_start():
    b = mk(2, 16000)
    car(b, 0, ph=1)
    car(b, 1)
    t = 0
    while t <= 40000:  # car 0 draws, then stops (full or a BMS pause)
        cyc(b, t)
        t += 1000
    assert b.limit[0] == 8000
    stop = t
    while b.limit[0]:
        cyc(b, t, draw=[0, None])
        t += 1000
    assert 30000 <= t - stop <= 32000, t - stop  # 30 s of no draw, not 60
    assert why(b, 0) == "paused: vehicle idle" and b.limit[1] == 16000


def test_a_car_of_unknown_phases_starts_when_it_fits_now():
    for configured in (7, 0):
        b = mk(2, 20000)
        car(b, 0, mx=6000)
        car(b, 1, st=1, ph=configured, rot=1)  # EVSE L1 on grid L2
        t = 0
        while t < 60000:  # 10 A on L1 for a minute: the start window remembers it
            cyc(b, t, house=(10000, 0, 0), cph=[7, 1])
            t += 1000
        b.state[1] = 2
        while t < 90000:
            cyc(b, t, cph=[7, 1])
            t += 1000
        if configured:  # a 3-phase car waits until L1 had room for 120 s
            assert b.limit[1] == 0 and why(b, 1) == "paused: phase imbalance"
            continue
        # phases unknown: it starts now (room now on all three), draws on EVSE L1
        # only, and is a 1-phase car on grid L2 from then on
        assert b.limit[1] >= 6000 and not b.paused[1]
        b.state[1] = 3
        for t in range(t, t + 3000, 1000):
            cyc(b, t, cph=[7, 1])
        assert b.limit[1] >= 6000 and b.phases[1] == 1 | 2 << 3, (b.limit[1], b.phases[1])
