"""pbctl/api/auth.py's Guard (issues 7 and 13, auth attacks) with a settable
clock, on CPython and MicroPython: failed logins slow a client down, longer
after each further failure, the failure table stays bounded, and an attacker
cycling through many addresses is slowed down too (regression: a new client's
failure evicts the oldest record, so 9+ addresses were never slowed down; now
all failures also count together) — but cannot lock out a client that has
logged in as admin before (issue 13 #5). The timing of Guard.check:
host_tests/mpy/test_auth_timing.py."""
from pbctl.api import auth


class Clock:
    """auth's `time` while a test runs: ticks_ms is what the test says."""

    def __init__(self):
        self.now = 1000

    def ticks_ms(self):
        return self.now

    def ticks_diff(self, a, b):
        return a - b


def clocked(body):
    real = auth.time
    clock = auth.time = Clock()
    try:
        body(clock)
    finally:
        auth.time = real


def attempt(g, client):
    """True if the guard let the (wrong) attempt be checked, False if refused (429)."""
    if g.blocked(client):
        return False
    g.failed(client)
    return True


def _one_client(clock):
    fails = {}
    g = auth.Guard(fails)
    assert [attempt(g, "a") for _ in range(7)] == [True] * 5 + [False] * 2
    assert not g.blocked("b")
    clock.now += 9999
    assert g.blocked("a")
    clock.now += 1
    assert not g.blocked("a")
    # one more failure after the wait: twice as long, then 4x ... up to 16x
    for k in (2, 4, 8, 16, 16):
        assert attempt(g, "a") and g.blocked("a")
        clock.now += 10000 * k - 1
        assert g.blocked("a")
        clock.now += 1
        assert not g.blocked("a")


def test_one_client_blocked_after_five_then_free_after_ten_seconds():
    clocked(_one_client)


def _success(clock):
    fails = {}
    g = auth.Guard(fails)
    for _ in range(4):
        attempt(g, "a")
    g.succeeded("a")
    assert "a" not in fails and fails["+"] == ["a"]  # and it is known as the admin's client


def test_success_clears_the_record():
    clocked(_success)


def _many(clock):
    fails = {}
    g = auth.Guard(fails)
    checked = 0
    for rnd in range(20):
        for i in range(50):
            checked += attempt(g, "10.0.%d.%d" % (rnd % 3, i))
            assert len(fails) <= 9  # 8 clients and the total
            clock.now += 1
    # 40 failures in all within 10 s: then everyone waits, a new client too
    assert checked == 40
    assert g.blocked("192.168.1.1")
    # the window passes: a new client may try again
    clock.now = 1000 + 10000
    assert not g.blocked("192.168.1.1")
    assert attempt(g, "192.168.1.1")


def test_many_addresses_are_slowed_down_and_the_table_stays_bounded():
    clocked(_many)


def _inside_total(clock):
    fails = {}
    g = auth.Guard(fails)
    for i in range(8):  # 11 failures from 11 clients: nobody slowed down
        assert attempt(g, "c%d" % i)
    for i in range(3):
        assert attempt(g, "d%d" % i)
    # a fresh client still gets its own 5 (as test_manager's brute-force test expects)
    assert [attempt(g, "fresh") for _ in range(6)] == [True] * 5 + [False]
    assert not g.blocked("other")


def test_one_client_per_client_limit_inside_the_total():
    clocked(_inside_total)


def _window(clock):
    fails = {}
    g = auth.Guard(fails)
    for i in range(39):
        attempt(g, "x%d" % i)
    assert fails["*"][0] == 39 and not g.blocked("y")
    clock.now += 10000
    attempt(g, "late")
    assert fails["*"][0] == 1


def test_total_counts_per_window():
    clocked(_window)


def _check(clock):
    # Guard.check itself: the replies of API.md §0
    secret = auth.make_secret("1234abcd", "00112233")
    g = auth.Guard({})
    for user_pwd, want in ((None, (401, "authentication required")),
                           (("root", "1234abcd"), (401, "wrong user or password")),
                           (("admin", "1234abcx"), (401, "wrong user or password"))):
        try:
            g.check(secret, user_pwd, "c")
            raise AssertionError("no AuthError")
        except auth.AuthError as e:
            assert (e.status, e.args[0]) == want, user_pwd
    g.check(secret, ("admin", "1234abcd"), "c")  # passes
    try:
        g.check("", ("admin", "1234abcd"), "c")
        raise AssertionError("no AuthError")
    except auth.AuthError as e:
        assert (e.status, e.args[0]) == (401, "admin password not set")


def test_check_replies():
    clocked(_check)


def _known_admin(clock):
    # issue 13 #5: addresses rotating, one wrong password each every 0.25 s,
    # while the admin (who logged in before, from its own address) logs in
    fails = {}
    g = auth.Guard(fails)
    g.succeeded("admin-pc")
    g.succeeded("phone")
    checked = admin_ok = 0
    for i in range(160):  # 40 s
        checked += attempt(g, "10.9.%d.%d" % (i // 200, i % 200))
        if i % 8 == 0:  # every 2 s
            admin_ok += not g.blocked("admin-pc")
        clock.now += 250
    assert admin_ok == 20  # never kept out
    assert checked <= 4 * 40  # at most 40 guesses checked per 10-s window
    for i in range(40):  # 40 at once: an unknown client waits, the admin does not
        attempt(g, "10.8.0.%d" % i)
    assert g.blocked("stranger") and not g.blocked("phone")
    # the admin's own failures still count against it
    assert [attempt(g, "admin-pc") for _ in range(6)] == [True] * 5 + [False]
    # the known clients are few: the oldest goes
    for k in range(6):
        g.succeeded("c%d" % k)
    assert len(fails["+"]) == 4 and "phone" not in fails["+"]


def test_an_admin_that_logged_in_before_is_not_locked_out_by_rotating_addresses():
    clocked(_known_admin)
