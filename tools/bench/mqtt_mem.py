"""Heap cost of pblib.mqtt on the MicroPython unix port, as .mpy (mpy-cross -O3).

    python tools/bench/mqtt_mem.py [--buf-size 2048] [--max-in 512]

Prints: the import (code, constants, globals; names interned before, as
modmem.py does), a Client before it runs (its buffers: buf_size + max_in + 7
bytes), the same Client connected to a broker (Debian's mosquitto on a free
loopback port) with two subscriptions (adds its reader task, socket, event),
after 50 publishes (steady state), and after run() is cancelled.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from simrun import ROOT, micropython_bin  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--buf-size", type=int, default=2048)
    ap.add_argument("--max-in", type=int, default=512)
    a = ap.parse_args()
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(mosq):
        sys.exit("no mosquitto: run `make mqtt-broker`")
    out = tempfile.mkdtemp(prefix="pbctl-mqtt-")
    os.makedirs(os.path.join(out, "pblib"))
    xc = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    for m in ("__init__", "mqtt"):
        dst = os.path.join(out, "pblib", m + ".mpy")
        subprocess.run([xc, "-O3", "-o", dst, "-s", "pblib/%s.py" % m, os.path.join(ROOT, "lib", "pblib", m + ".py")],
                       check=True)
    print("pblib/mqtt.mpy: %d bytes" % os.path.getsize(os.path.join(out, "pblib", "mqtt.mpy")))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conf = os.path.join(out, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("persistence false\nlistener %d 127.0.0.1\nallow_anonymous true\n" % port)
    broker = subprocess.Popen([mosq, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        env = dict(os.environ, MICROPYPATH=out + ":.frozen")
        r = subprocess.run([micropython_bin(), "-X", "heapsize=96k", os.path.join(HERE, "mqtt_mem_mp.py"), str(port),
                            str(a.buf_size), str(a.max_in)], env=env, capture_output=True, text=True, timeout=60)
        print("buf_size %d, max_in %d, heap 96k; bytes of heap:" % (a.buf_size, a.max_in))
        print(r.stdout + r.stderr)
    finally:
        broker.kill()
        broker.wait(5)
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
