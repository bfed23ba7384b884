"""The control loop's cycle interval with MQTT publishing 8 EVSEs every cycle vs MQTT off.

    python tools/bench/mqtt_cycle_bench.py [--seconds 30] [--evses 8] [--cycle-ms 1000]

The firmware under MicroPython (simrun: ROMFS image, 128 KB heap) against the
simulator with --evses Power Brain wallboxes, each charging a car at 16 A (max_total_current
leaves room for all: every EVSE's energy, and with it its state message, changes
every cycle), and
Debian's mosquitto on a free loopback port with a paho-mqtt subscriber counting
the state messages. One run, two phases:

  off  mqtt_url empty: the baseline;
  on   mqtt_url set (discovery on): after the connect and the discovery round.

Per phase: the cycle interval (ms between the control loop's polls of the
first EVSE's state register 8092, from the simulator's request log: what the
bus sees) p50 / p99 / max, state messages per cycle, and the free heap after a
collection (sys_info mem_free, 11 samples: median and lowest; a sample taken
during a round includes that round's rendering). Prints the p99 ratio on / off (goal <= 1.10)
and the resident heap cost of MQTT (free off - free on: the integration's
module, pblib.mqtt, the client's buffers and tasks, the socket).
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "host_tests"))
from simrun import ADMIN, Sim  # noqa: E402

JSON = {"Content-Type": "application/json"}


# 8 EVSEs: the HOST board's configuration size (pbctl/cfgsize.py) takes them
# from the 160k budget on (what the ESP32's 96 KB hold here; BENCHMARKS.md, RAM)
HEAP = os.environ.get("PBCTL_HEAP", "160k")

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def intervals(sim, since):
    r = sim.control(cmd="requests", since=since, slave=1)
    t = [i["t_ms"] for i in r["items"] if i["fn"] == 3 and i["addr"] == 8092]
    return [b - a for a, b in zip(t, t[1:])]


def mem(sim):
    for _ in range(5):  # a connection refused for the heap reserve (httpd `dropped`): again
        try:
            return sim.get("cmd=sys_info")[1]["mem_free"]
        except OSError:
            time.sleep(0.2)
    return sim.get("cmd=sys_info")[1]["mem_free"]


def phase(sim, sub, seconds):
    time.sleep(2)
    m = [mem(sim)]
    since = sim.control(cmd="requests", since=0, slave=255)["next"]
    c0 = sim.get("cmd=sys_info")[1]["cycles"]
    n0 = sub.count if sub else 0
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(seconds / 10)
        m.append(mem(sim))
    iv = intervals(sim, since)
    cycles = sim.get("cmd=sys_info")[1]["cycles"] - c0
    msgs = (sub.count - n0) if sub else 0
    return {"cycles": cycles, "p50": pct(iv, 50), "p99": pct(iv, 99), "max": max(iv), "n": len(iv),
            "states_per_cycle": round(msgs / max(cycles, 1), 2), "mem_free": pct(m, 50), "mem_free_low": min(m)}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--evses", type=int, default=8)
    ap.add_argument("--cycle-ms", type=int, default=1000)
    a = ap.parse_args(argv)
    from mqttbroker import SKIP, Broker, paho

    if SKIP:
        sys.exit("mqtt_cycle_bench: " + SKIP + " (run `make mqtt-broker` as root)")
    broker = Broker(tempfile.mkdtemp(prefix="pbctl-mosq-")).start()
    ids = [1] + list(range(4, 4 + a.evses - 1))
    sim = Sim(heap=HEAP, sim_args=["--evse-ids", ",".join(map(str, ids))])
    sub = None
    out = {}
    try:
        sim.start()
        st = sim.request("cmd=set_params", ADMIN, json.dumps({"cycle_time": a.cycle_ms, "max_total_current": 16000 * a.evses + 1000}).encode(), "POST", JSON)[0]
        assert st == 200, st
        for i in ids[1:]:
            body = json.dumps({"devices": [{"dev_type": "evse_powerbrain", "address": "rtu:%d" % i,
                                            "name": "box %d" % i}]}).encode()
            st = sim.request("cmd=set_params", ADMIN, body, "POST", JSON)[0]
            assert st == 200, st
        for i in ids:
            sim.control(cmd="plug", slave=i, car={"phases": 7, "max_ma": 16000})
        time.sleep(3)

        class Counter:
            count = 0

        sub = Counter()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-%d" % os.getpid())

        def on_message(cl, u, m):
            if m.topic.endswith("/state") and m.topic.split("/")[-2].startswith("E"):
                sub.count += 1

        c.on_message = on_message
        c.connect("127.0.0.1", broker.port, 30)
        c.subscribe("pbb/#", 0)
        c.loop_start()
        out["off"] = phase(sim, sub, a.seconds)
        body = {"mqtt_url": "mqtt://127.0.0.1:%d" % broker.port, "mqtt_prefix": "pbb"}
        st = sim.request("cmd=set_params", ADMIN, json.dumps(body).encode(), "POST", JSON)[0]
        assert st == 200, st
        end = time.time() + 15
        while not sim.get("cmd=sys_info")[1]["links"]["mqtt"].get("connected"):
            assert time.time() < end, "no connect"
            time.sleep(0.2)
        time.sleep(2)  # the discovery round
        out["on"] = phase(sim, sub, a.seconds)
        out["link"] = sim.get("cmd=sys_info")[1]["links"]["mqtt"]
        c.loop_stop()
        c.disconnect()
    finally:
        sim.stop()
        broker.stop()
        errs = [x for x in sim.fw_lines if "Error" in x]
        if errs:
            print("firmware errors:", "".join(sim.fw_lines[-12:]))
    off, on = out["off"], out["on"]
    m_on = range(11)
    print("%d EVSEs charging, cycle_time %d ms, %.0f s per phase, heap %s" % (a.evses, a.cycle_ms, a.seconds,
                                                                               sim.heap))
    print("%-5s %7s %7s %7s %7s %9s %9s %9s" % ("mqtt", "cycles", "p50 ms", "p99 ms", "max ms", "states/c", "free p50",
                                                 "free low"))
    for k in ("off", "on"):
        r = out[k]
        print("%-5s %7d %7d %7d %7d %9s %9d %9d" % (k, r["cycles"], r["p50"], r["p99"], r["max"], r["states_per_cycle"],
                                                   r["mem_free"], r["mem_free_low"]))
    print("cycle interval p99 ratio on/off: %.3f (goal <= 1.10)" % (on["p99"] / off["p99"]))
    print("resident heap of MQTT (free off - free on, medians of %d samples): %d bytes; lowest: %d bytes"
          % (len(m_on), off["mem_free"] - on["mem_free"], off["mem_free_low"] - on["mem_free_low"]))
    print("link:", json.dumps(out["link"]))
    return out


if __name__ == "__main__":
    main()
