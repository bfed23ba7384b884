"""Updates over HTTP (README "Updates over HTTP"): the firmware under
MicroPython (ROMFS mode, simrun's heap) with a car charging, cycle_time 1 s.

Prints, idle (baseline) and during a bundle upload paced over ~6 s: control
cycles per second, the lowest heap free (sys_info, sampled every 0.25 s),
the ratio of the two; then the time an unpaced upload of the same bundle
takes (staging, hashing, switch) and its throughput.
"""
import json
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import bundle  # noqa: E402
from simrun import ADMIN, Sim, read_all  # noqa: E402

AUTH = "Authorization: Basic YWRtaW46MTIzNGFiY2Q=\r\n"


def sample(s, secs, out, stop=None):
    t_end = time.time() + secs
    while time.time() < t_end and not (stop and stop.is_set()):
        out.append(s.get("cmd=sys_info", ADMIN)[1])
        time.sleep(0.25)


def post(s, data, pace_s):
    c = socket.create_connection(("127.0.0.1", s.http_port), timeout=30)
    c.sendall(("POST /cnf?cmd=update&restart=0 HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n"
               % (AUTH, len(data))).encode())
    step = len(data) // 60 + 1
    for i in range(0, len(data), step):
        c.sendall(data[i : i + step])
        if pace_s:
            time.sleep(pace_s / 60)
    r = read_all(c)
    c.close()
    assert r.startswith(b"HTTP/1.1 200"), r
    return json.loads(r.partition(b"\r\n\r\n")[2])


def main():
    data = bundle.build("HOST", ver="bench")
    with Sim() as s:
        s.request("cmd=set_params", ADMIN, b'{"cycle_time": 1000}', "POST", {"Content-Type": "application/json"})
        s.control(cmd="plug", slave=1, car={"phases": 7, "max_ma": 16000})
        time.sleep(3)
        idle = []
        sample(s, 6, idle)
        during = []
        stop = threading.Event()
        th = threading.Thread(target=sample, args=(s, 30, during, stop))
        th.start()
        t0 = time.time()
        post(s, data, 6.0)
        paced = time.time() - t0
        stop.set()
        th.join()
        t0 = time.time()
        post(s, data, 0)
        fast = time.time() - t0

        def rate(xs):
            return (xs[-1]["cycles"] - xs[0]["cycles"]) / max(0.001, (len(xs) - 1) * 0.25 + 0.0)

        ri, rd = rate(idle), rate(during)
        mi, md = min(x["mem_free"] for x in idle), min(x["mem_free"] for x in during)
        print("bundle: %d bytes, heap %s (ROMFS mode, image %d bytes)" % (len(data), s.heap, s.image_size))
        print("control cycles/s: idle %.2f, during a %.1f s upload %.2f (ratio %.2f)" % (ri, paced, rd, rd / ri))
        print("lowest heap free: idle %d, during the upload %d (ratio %.3f, %d bytes less)" % (mi, md, md / mi, mi - md))
        print("unpaced upload: %.3f s, %.0f KB/s (staging, SHA-256, switch)" % (fast, len(data) / 1024 / fast))
        print("car current during: %s" % s.control(cmd="state")["evses"]["1"]["current_ma"])


if __name__ == "__main__":
    main()
