# Guard.check's time for a wrong user and for a wrong password (medians of 400
# interleaved samples each), and for a leaky check as a control: prints
# "<name> <wrong user us> <wrong password us>" per check.
# Run by host_tests/mpy/test_auth_timing.py.
import time

from pbctl.api import auth

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
