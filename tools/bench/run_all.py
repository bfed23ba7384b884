"""`make bench`: every benchmark, one after the other; figures go to BENCHMARKS.md by hand."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = ["modmem.py", "rtu_rtt.py", "http_bench.py", "fw_bench.py", "balancer_bench.py", "boot_bench.py", "mbtcp_bench.py",
           "mbtcp_gateway_bench.py", "mqtt_mem.py", "mqtt_cycle_bench.py", "ws_heap.py", "ocpp_bench.py", "tz_bench.py",
           "update_bench.py", "attack_bench.py"]

if __name__ == "__main__":
    failed = 0
    for b in BENCHES:
        print("=== %s" % b, flush=True)
        r = subprocess.run([sys.executable, os.path.join(HERE, b)])
        failed += r.returncode != 0
    sys.exit(1 if failed else 0)
