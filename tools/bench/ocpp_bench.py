"""OCPP 1.6J charge point: what it costs the controller.

    python tools/bench/ocpp_bench.py [--secs 40] [--evses 8]

Two runs of the firmware (ROMFS, 128k heap) against the simulator with --evses
Power Brain wallboxes, a car at each, cycle_time 1000 ms:
- off: OCPP off (the baseline);
- on: connected to tools/ocpp_cs.py (the `ocpp` library), a transaction per
  connector, MeterValueSampleInterval 10 s (8 MeterValues every 10 s).
For each: the control cycle's duration (sys_info cycle_ms, sampled every
0.5 s: p50 / p99 / max) and the heap free after a collection (sys_info);
the ratio on/off of the p99 (goal: <= 1.10) and the resident cost
(free off - free on).

Then allocation per message: tools/bench/ocpp_msg_mp.py under MicroPython.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from ocpp_cs import CentralSystem  # noqa: E402
from simrun import ADMIN, ROOT, Sim, micropython_bin  # noqa: E402

JSON = {"Content-Type": "application/json"}


# 8 EVSEs: the HOST board's configuration size (pbctl/cfgsize.py) takes them
# from the 160k budget on (what the ESP32's 96 KB hold here; BENCHMARKS.md, RAM)
HEAP = os.environ.get("PBCTL_HEAP", "160k")

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def run(evses, secs, cs=None):
    ids = [1] + list(range(4, 4 + evses - 1))
    args = ["--evse-ids", ",".join(map(str, ids))]
    sim = Sim(heap=HEAP, sim_args=args)
    sim.start()
    try:
        for i in ids[1:]:
            body = json.dumps({"devices": [{"dev_type": "evse_powerbrain", "address": "rtu:%d" % i}]}).encode()
            assert sim.request("cmd=set_params", ADMIN, body, "POST", JSON)[0] == 200
        if cs is not None:
            assert sim.request("cmd=set_params", ADMIN, json.dumps({"ocpp_url": cs.url()}).encode(), "POST",
                               JSON)[0] == 200
    finally:
        sim.stop()
    # a restart with this configuration (OCPP's buffers are reserved at boot: README "OCPP 1.6J")
    sim = Sim(heap=HEAP, sim_args=args, flash=sim.flash)
    sim.start()
    try:
        for i in ids:
            sim.control(cmd="plug", slave=i, car={"phases": 7, "max_ma": 16000})
        if cs is not None:
            cs.wait("BootNotification")
            cs.call(__import__("ocpp.v16.call", None, None, ["x"]).ChangeConfiguration(
                key="MeterValueSampleInterval", value="10"))
            end = time.time() + 20
            while len(cs.messages("StartTransaction")) < evses and time.time() < end:
                time.sleep(0.2)
        time.sleep(3)
        samples = []
        m0 = cs.mark() if cs else 0
        t_end = time.time() + secs
        refused = 0
        while time.time() < t_end:
            try:
                samples.append(sim.get("cmd=sys_info")[1]["cycle_ms"])
            except OSError:  # shed at accept (the heap below the control task's reserve): counted
                refused += 1
            time.sleep(0.5)
        info = None
        while info is None:
            try:
                info = sim.get("cmd=sys_info")[1]
            except OSError:
                refused += 1
                time.sleep(0.2)
        out = {"p50": pct(samples, 50), "p99": pct(samples, 99), "max": max(samples), "n": len(samples),
               "mem_free": info["mem_free"], "control_oom": info["control_oom"],
               "refused": refused}
        if cs:
            out["meter_values"] = len(cs.messages("MeterValues", m0))
            out["transactions"] = len(cs.messages("StartTransaction"))
            out["link"] = info["links"]["ocpp"]
        return out
    finally:
        sim.stop()


def per_message():
    import mpybuild

    build = mpybuild.build(os.path.join(ROOT, "build", "host"), "HOST")
    env = dict(os.environ, MICROPYPATH=build + ":.frozen", PBCTL_TTY="/dev/null")
    r = subprocess.run([micropython_bin(), "-X", "heapsize=128k", os.path.join(HERE, "ocpp_msg_mp.py")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    if r.returncode:
        raise RuntimeError(r.stdout + r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=40)
    ap.add_argument("--evses", type=int, default=8)
    a = ap.parse_args()
    print("== control cycle, %d EVSEs, %d s each (cycle_ms of sys_info every 0.5 s)" % (a.evses, a.secs))
    off = run(a.evses, a.secs)
    print("  OCPP off: p50 %(p50)d ms, p99 %(p99)d ms, max %(max)d ms, heap free %(mem_free)d B" % off)
    cs = CentralSystem(interval=300).start()
    try:
        on = run(a.evses, a.secs, cs)
    finally:
        cs.stop()
    print("  OCPP on:  p50 %(p50)d ms, p99 %(p99)d ms, max %(max)d ms, heap free %(mem_free)d B, "
          "%(refused)d sys_info shed (%(transactions)d transactions, %(meter_values)d MeterValues)" % on)
    print("  ratio p99 on/off: %.3f (goal <= 1.10)" % (on["p99"] / max(1, off["p99"])))
    print("  resident heap of OCPP: %d B (free off - free on)" % (off["mem_free"] - on["mem_free"]))
    print("== allocation per message (MicroPython, gc off around each)")
    pm = per_message()
    for k, v in pm.items():
        print("  %s: %s B" % (k, v))
    print(json.dumps({"off": off, "on": {k: v for k, v in on.items() if k != "link"}, "per_message": pm}))


if __name__ == "__main__":
    main()
