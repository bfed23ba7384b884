"""Admin logins take the same time whatever is wrong (issue 7, auth attacks):
pbctl/api/auth.py's Guard.check under MicroPython (mpy/scripts/auth_timing.py).
The Guard's logic: host_tests/unit/test_auth_guard.py."""
import mp


def test_wrong_user_and_wrong_password_take_the_same_time_under_micropython():
    """Guard.check under MicroPython, 400 interleaved samples each: the medians
    of a wrong user (right password) and a wrong password (right user) differ
    by less than 10 %; a leaky check in the same run (user compared first, the
    hash skipped) shows the difference this test would catch."""
    r = mp.run([mp.script("auth_timing.py")])
    assert r.returncode == 0, r.stderr + r.stdout
    got = dict((line.split()[0], (int(line.split()[1]), int(line.split()[2]))) for line in r.stdout.split("\n") if line)
    user, pwd = got["guard"]
    print("\nGuard.check µs (median): wrong user %d, wrong password %d; leaky control %s" % (user, pwd, got["leaky"]))
    assert abs(user - pwd) <= max(1, pwd // 10), got
    lu, lp = got["leaky"]
    assert lp > 3 * max(lu, 1), got  # the control: the hash is what takes the time
