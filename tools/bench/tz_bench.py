"""pblib.tz's heap and the time of Zone.local() under MicroPython (tz_mp.py at
the board's 96 KB budget): figures and the ratio to time.localtime()."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from simrun import micropython_bin  # noqa: E402

if __name__ == "__main__":
    r = subprocess.run([micropython_bin(), "-X", "heapsize=96k", os.path.join(HERE, "tz_mp.py")], cwd=ROOT)
    sys.exit(r.returncode)
