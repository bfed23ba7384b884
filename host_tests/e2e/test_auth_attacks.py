"""Auth attacks end to end (issue 7): the firmware under MicroPython, a fresh
one for this module (its failed-login table starts empty), attacked over HTTP.

- brute force from one client: attempts/s before and after the slow-down;
- brute force from many addresses (more than the 8-client failure table):
  slowed down too (regression);
- wrong user vs wrong password: the same time, within the noise;
- no secret (password, salt, hash) in any reply, error or log.

The tests run in this order on purpose: each leaves failed logins that the
next one accounts for (firmware/auth.py Guard: 5 per client, 40 from all
clients within 10 s).
"""
import json
import statistics
import time

import fuzz
from simrun import ADMIN

FIGURES = {}


def timed(sim, creds, source):
    t = time.perf_counter()
    st, obj = sim.get("cmd=get_users", creds, source=source)
    return st, obj, time.perf_counter() - t


def test_no_secret_in_replies_errors_or_log(sim):
    # a save, so that the secret is on flash (the password alone is in RAM at first)
    assert sim.get("cmd=accept_license&acc=1", ADMIN) == (200, "ok")
    secrets = fuzz.secrets_of(sim)
    assert len(secrets) == 3 and all(len(x) >= 8 for x in secrets), secrets
    assert sim.get("cmd=set_diag_logging&enable=1", ADMIN) == (200, "ok")
    replies = []
    for q, creds in [("cmd=get_params", None), ("cmd=get_dev_info", None), ("cmd=get_users", ADMIN),
                     ("cmd=get_users", ("admin", "nope")), ("cmd=get_users", (ADMIN[1], ADMIN[0])),
                     ("cmd=change_admin_pwd&old_pwd=x&new_pwd=y", None),
                     ("cmd=change_admin_pwd&old_pwd=%s&new_pwd=y" % ADMIN[1], None),
                     ("cmd=sys_info", None), ("cmd=set_params", ADMIN), ("cmd=get_diag_log", ADMIN),
                     ("cmd=get_user&id=x&rfid=1", ADMIN), ("cmd=nope", ADMIN)]:
        st, obj, body, hdrs = sim.request(q, creds, source="127.0.5.1")
        replies.append(body + str(hdrs).encode())
    assert sim.get("cmd=set_diag_logging&enable=0", ADMIN) == (200, "ok")
    time.sleep(0.3)
    log = "".join(sim.fw_lines)
    for s in secrets:
        assert all(s.encode() not in r for r in replies), s
        assert s not in log


def test_brute_force_rate_before_and_after_the_slow_down(sim):
    ip = "127.0.3.1"
    t0 = time.perf_counter()
    tried = 0
    while True:
        st, obj, _ = timed(sim, ("admin", "guess%d" % tried), ip)
        if st == 429:
            break
        assert (st, obj) == (401, "wrong user or password")
        tried += 1
    before = tried / (time.perf_counter() - t0)
    # now: guesses checked during 3 s (a 429 checks nothing)
    t0 = time.perf_counter()
    checked = refused = 0
    while time.perf_counter() - t0 < 3.0:
        st, obj, _ = timed(sim, ("admin", "guess"), ip)
        if st == 429:
            assert obj == "too many failed logins"
            refused += 1
        else:
            checked += 1
    FIGURES["brute_force"] = {"first_failures": tried, "checked_per_s_before": round(before, 1),
                              "checked_per_s_after": checked / 3.0, "refused_per_s": round(refused / 3.0, 1)}
    print("\nbrute force, one client: %s" % FIGURES["brute_force"])
    assert tried == 5 and checked == 0 and refused > 10
    # the right password is refused too while slowed down; other clients are not
    assert sim.get("cmd=get_users", ADMIN, source=ip) == (429, "too many failed logins")
    assert sim.get("cmd=get_users", ADMIN, source="127.0.3.2")[0] == 200


def test_wrong_user_and_wrong_password_take_the_same_time(sim):
    """30 interleaved samples from 8 fresh clients (4 failures each at most:
    none is slowed down; with the 8 failures before, 38 of the 40 that slow
    every client down). The medians may differ by no more than twice the larger
    median absolute deviation (or 0.3 ms)."""
    a, b = [], []
    for i in range(30):
        ip = "127.1.0.%d" % (i // 4 + 1)
        if i % 2:
            st, obj, dt = timed(sim, ("root", ADMIN[1]), ip)  # wrong user, right password
            a.append(dt)
        else:
            st, obj, dt = timed(sim, ("admin", ADMIN[1] + "x"), ip)  # right user, wrong password
            b.append(dt)
        assert (st, obj) == (401, "wrong user or password"), i
    ma, mb = statistics.median(a), statistics.median(b)
    noise = max(statistics.median([abs(x - ma) for x in a]), statistics.median([abs(x - mb) for x in b]))
    FIGURES["auth_timing_ms"] = {"wrong_user_p50": round(ma * 1000, 3), "wrong_pwd_p50": round(mb * 1000, 3),
                                 "mad": round(noise * 1000, 3), "samples": len(a) + len(b)}
    print("\nauth timing: %s" % FIGURES["auth_timing_ms"])
    assert abs(ma - mb) <= max(2 * noise, 0.0003), FIGURES["auth_timing_ms"]


def test_brute_force_from_many_addresses_is_slowed_too(sim):
    """Found by the campaign: the failure table is bounded (8 clients) and a new
    client's failure evicts the oldest record — an attacker cycling through 9
    or more addresses was never slowed down (120 of 120 guesses checked here
    before the fix). Now all failures also count together: at most 40 within
    10 s, then every client waits."""
    ips = ["127.0.4.%d" % i for i in range(1, 21)]
    statuses = []
    t0 = time.perf_counter()
    for rnd in range(6):
        for ip in ips:
            statuses.append(sim.get("cmd=get_users", ("admin", "g%d" % rnd), source=ip)[0])
    elapsed = time.perf_counter() - t0
    checked = statuses.count(401)
    FIGURES["brute_force_many_addresses"] = {"addresses": len(ips), "tried": len(statuses), "checked": checked,
                                             "seconds": round(elapsed, 2)}
    print("\nbrute force from %d addresses: %s" % (len(ips), FIGURES["brute_force_many_addresses"]))
    assert set(statuses) <= {401, 429}
    assert checked <= 40 and elapsed < 10, (checked, elapsed)
    assert statuses[-20:] == [429] * 20  # in the end, everyone waits
    assert sim.get("cmd=get_users", ADMIN, source="127.0.4.99") == (429, "too many failed logins")


def test_report_figures():
    print("\nauth figures: %s" % json.dumps(FIGURES))
