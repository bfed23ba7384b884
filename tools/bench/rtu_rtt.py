"""Round trip of one 6-register read through rtu.Master vs the wire-time limit.

    python tools/bench/rtu_rtt.py [--n 200]

The firmware's master runs under MicroPython (-X heapsize=96k) on a pty.
Two devices answer, at 9600 and 115200 baud (8N1):
- "ideal": a responder that answers exactly when a real device would:
  request wire time + 3.5 character gap + reply wire time after the request
  was sent — so the ratio shows the master's own overhead;
- "pbsim": the pymodbus simulator (adds pymodbus' processing time).
Wire-time limit = (8 + 17) bytes at the baud + t3.5.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from simrun import ROOT, micropython_bin, micropython_env  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "host_tests", "shim"))
from pblib import rtu  # noqa: E402


def limit_us(baud):
    char = 10 * 1e6 / baud
    t35 = 1750 if baud > 19200 else 3.5 * char
    return 25 * char + t35


def ideal_device(fd, baud, stop):
    char = 10 / baud
    t35 = 0.00175 if baud > 19200 else 3.5 * char
    reply = bytearray([2, 3, 12] + [0] * 12 + [0, 0])
    c = rtu.crc16(reply, 15)
    reply[15], reply[16] = c & 0xFF, c >> 8
    buf = b""
    while not stop.is_set():
        try:
            b = os.read(fd, 64)
        except OSError:
            return
        buf += b
        while len(buf) >= 8:
            t0 = time.perf_counter()
            buf = buf[8:]
            due = t0 + 8 * char + t35 + 17 * char  # the reply's last byte would arrive now
            while time.perf_counter() < due:
                pass
            os.write(fd, bytes(reply))


def run_mp(tty_path, baud, n):
    env = micropython_env()
    env.update({"PBCTL_TTY": tty_path, "PBCTL_BAUD": str(baud), "N": str(n)})
    r = subprocess.run([micropython_bin(), "-X", "heapsize=96k", os.path.join(HERE, "rtu_rtt_mp.py")],
                       env=env, capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise RuntimeError(r.stdout + r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def ideal(baud, n):
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    stop = threading.Event()
    t = threading.Thread(target=ideal_device, args=(master, baud, stop), daemon=True)
    t.start()
    try:
        return run_mp(os.ttyname(slave), baud, n)
    finally:
        stop.set()
        os.close(slave)
        os.close(master)


def pbsim(baud, n):
    from simrun import Sim  # noqa

    from pbsim.client import launch
    link = "/tmp/pbctl-rtt-%d" % os.getpid()
    proc, info = launch(["--link", link, "--baud", str(baud)])
    try:
        return run_mp(info["tty"], baud, n)
    finally:
        proc.terminate()
        proc.wait(5)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    a = ap.parse_args(argv)
    rows = []
    for baud in (9600, 115200):
        lim = limit_us(baud)
        for name, fn in (("ideal", ideal), ("pbsim", pbsim)):
            r = fn(baud, a.n)
            rows.append({"baud": baud, "device": name, "limit_us": int(lim), "p50_us": r["p50"], "p99_us": r["p99"],
                         "ratio_p50": round(r["p50"] / lim, 3), "ratio_p99": round(r["p99"] / lim, 3)})
    print("%-7s %-6s %9s %8s %8s %6s %6s" % ("baud", "device", "limit_us", "p50_us", "p99_us", "p50/x", "p99/x"))
    for r in rows:
        print("%-7d %-6s %9d %8d %8d %6.2f %6.2f" % (r["baud"], r["device"], r["limit_us"], r["p50_us"], r["p99_us"],
                                                    r["ratio_p50"], r["ratio_p99"]))
    return rows


if __name__ == "__main__":
    main()
