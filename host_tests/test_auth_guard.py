"""firmware/auth.py Guard (issue 7, auth attacks) under CPython with a settable
clock: failed logins slow a client down, the failure table stays bounded, and
an attacker cycling through many addresses is slowed down too (regression: a
new client's failure evicts the oldest record, so 9+ addresses were never
slowed down; now all failures also count together)."""
import time

import pytest

import auth


@pytest.fixture
def clock(monkeypatch):
    now = [1000]
    monkeypatch.setattr(time, "ticks_ms", lambda: now[0], raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
    return now


def attempt(g, client):
    """True if the guard let the (wrong) attempt be checked, False if refused (429)."""
    if g.blocked(client):
        return False
    g.failed(client)
    return True


def test_one_client_blocked_after_five_then_free_after_ten_seconds(clock):
    fails = {}
    g = auth.Guard(fails)
    assert [attempt(g, "a") for _ in range(7)] == [True] * 5 + [False] * 2
    assert not g.blocked("b")
    clock[0] += 9999
    assert g.blocked("a")
    clock[0] += 1
    assert not g.blocked("a") and "a" not in fails


def test_success_clears_the_record(clock):
    fails = {}
    g = auth.Guard(fails)
    for _ in range(4):
        attempt(g, "a")
    g.succeeded("a")
    assert list(fails) == ["*"]


def test_many_addresses_are_slowed_down_and_the_table_stays_bounded(clock):
    fails = {}
    g = auth.Guard(fails)
    checked = 0
    for rnd in range(20):
        for i in range(50):
            checked += attempt(g, "10.0.%d.%d" % (rnd % 3, i))
            assert len(fails) <= 9  # 8 clients and the total
            clock[0] += 1
    # 40 failures in all within 10 s: then everyone waits, a new client too
    assert checked == 40
    assert g.blocked("192.168.1.1")
    # the window passes: a new client may try again
    clock[0] = 1000 + 10000
    assert not g.blocked("192.168.1.1")
    assert attempt(g, "192.168.1.1")


def test_one_client_per_client_limit_inside_the_total(clock):
    fails = {}
    g = auth.Guard(fails)
    for i in range(8):  # 11 failures from 11 clients: nobody slowed down
        assert attempt(g, "c%d" % i)
    for i in range(3):
        assert attempt(g, "d%d" % i)
    # a fresh client still gets its own 5 (as test_manager's brute-force test expects)
    assert [attempt(g, "fresh") for _ in range(6)] == [True] * 5 + [False]
    assert not g.blocked("other")


def test_total_counts_per_window(clock):
    fails = {}
    g = auth.Guard(fails)
    for i in range(39):
        attempt(g, "x%d" % i)
    assert fails["*"][0] == 39 and not g.blocked("y")
    clock[0] += 10000
    attempt(g, "late")
    assert fails["*"][0] == 1


TIMING_SCRIPT = r"""
import time, auth
secret = auth.make_secret("1234abcd")

def guard_check(user, pwd):
    try:
        auth.Guard({}).check(secret, (user, pwd), "c")
    except auth.AuthError:
        pass

def leaky_check(user, pwd):  # a control: the user compared first, the hash skipped
    if user == "admin" and auth.verify(secret, pwd):
        return

def median(v):
    v = sorted(v)
    return v[len(v) // 2]

for name, fn in (("guard", guard_check), ("leaky", leaky_check)):
    a = []
    b = []
    for i in range(400):
        t = time.ticks_us()
        fn("root", "1234abcd")
        a.append(time.ticks_diff(time.ticks_us(), t))
        t = time.ticks_us()
        fn("admin", "1234abcx")
        b.append(time.ticks_diff(time.ticks_us(), t))
    print(name, median(a), median(b))
"""


def test_wrong_user_and_wrong_password_take_the_same_time_under_micropython(tmp_path):
    """Guard.check under MicroPython, 400 interleaved samples each: the medians
    of a wrong user (right password) and a wrong password (right user) differ
    by less than 10 %; a leaky check in the same run (user compared first, the
    hash skipped) shows the difference this test would catch."""
    from mp import run

    script = tmp_path / "timing.py"
    script.write_text(TIMING_SCRIPT)
    r = run([str(script)], extra_dirs=())
    assert r.returncode == 0, r.stderr + r.stdout
    got = dict((line.split()[0], (int(line.split()[1]), int(line.split()[2]))) for line in r.stdout.split("\n") if line)
    user, pwd = got["guard"]
    print("\nGuard.check µs (median): wrong user %d, wrong password %d; leaky control %s" % (user, pwd, got["leaky"]))
    assert abs(user - pwd) <= max(1, pwd // 10), got
    lu, lp = got["leaky"]
    assert lp > 3 * max(lu, 1), got  # the control: the hash is what takes the time
