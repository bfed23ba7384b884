"""`make sim`: the firmware under MicroPython against the simulated Power Brain bus.

Serves the web UI at http://127.0.0.1:8080/ and the API at /cnf (HTTP_PORT= /
--http-port overrides). The
simulated controller's flash lives in build/sim-flash, so settings survive
restarts. Ctrl-C stops both processes. The heap is the board's 96 KB as this
interpreter holds them (simrun.board_heap(): 144k on the 64-bit unix port);
PBCTL_HEAP sets another.
"""
import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simrun import ADMIN, ROOT, Sim, board_heap  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--http-port", type=int, default=int(os.environ.get("HTTP_PORT", "8080")))
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--flash", default=os.path.join(ROOT, "build", "sim-flash"))
    ap.add_argument("--modbus-tcp-port", type=int, default=int(os.environ.get("MODBUS_TCP_PORT", "4701")),
                    help="Modbus TCP gateway base port (0: leave it as configured)")
    ap.add_argument("--scenario", default=os.path.join(ROOT, "tools", "scenarios", "default.json"))
    a = ap.parse_args()
    os.makedirs(a.flash, exist_ok=True)
    # like `make deploy` on a board: the build just made is what boots, not a version an
    # earlier run installed with cmd=update (README "Updates over HTTP")
    for n in ("fw.json", "fw.tmp"):
        if os.path.exists(os.path.join(a.flash, n)):
            os.remove(os.path.join(a.flash, n))
    sim_args = ["--scenario", a.scenario] if a.scenario and os.path.exists(a.scenario) else []
    heap = os.environ.get("PBCTL_HEAP") or board_heap()
    sim = Sim(http_port=a.http_port, baud=a.baud, flash=a.flash, echo=True, sim_args=sim_args, heap=heap)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        sim.start()
        mb = ""
        if a.modbus_tcp_port:
            # the gateway on (read and control writes), like a Power Brain: wallbox at the base
            # port, meters at +1 and +2 (README "Modbus TCP")
            body = json.dumps({"modbus_tcp": 2, "modbus_tcp_port": a.modbus_tcp_port}).encode()
            st, obj = sim.request("cmd=set_params", ADMIN, body, "POST", {"Content-Type": "application/json"})[:2]
            mb = ("127.0.0.1:%d (wallbox, unit 1), :%d and :%d (meters, units 2 and 3); no authentication"
                  % (a.modbus_tcp_port, a.modbus_tcp_port + 1, a.modbus_tcp_port + 2)
                  if st == 200 else "not started: %s" % obj)
        print("")
        print("pbctl simulation running")
        print("  web UI:   http://127.0.0.1:%d/" % sim.http_port)
        print("  API:      http://127.0.0.1:%d/cnf?cmd=get_dev_info" % sim.http_port)
        if mb:
            print("  Modbus TCP: " + mb)
        print("  REPL:     not in the simulation (the firmware's stdin is this process); on a board: import pbctl")
        print("  admin:    user %s, password %s (simulation only)" % ADMIN)
        print("  bus:      %s at %d baud; simulator control on 127.0.0.1:%d" % (sim.tty, sim.baud, sim.control_port))
        print("  flash:    %s" % a.flash)
        print("  heap:     %s for data (%s mode; the board's 96 KB as this interpreter holds them)" % (
            sim.heap, sim.mode))
        print("Ctrl-C stops.")
        sys.stdout.flush()
        while True:
            while sim.fw.poll() is None and sim.sim.poll() is None:
                time.sleep(0.2)
            if sim.fw.poll() != 75:
                break
            # the firmware restarted itself (boards/HOST reset(), after cmd=update): the next boot
            print("firmware restart (reset): booting again on %s" % a.flash)
            sim.stop()
            sim = Sim(http_port=a.http_port, baud=a.baud, flash=a.flash, echo=True, sim_args=sim_args, heap=heap)
            sim.start()
        print("a process exited; stopping")
        return 1
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        sim.stop()


if __name__ == "__main__":
    sys.exit(main())
