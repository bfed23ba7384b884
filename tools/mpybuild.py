"""Precompile the firmware to .mpy files: what runs on the board and in `make sim`.

    python tools/mpybuild.py [--march xtensawin] [--board ESP32_GENERIC] OUT_DIR

Every .py of lib/, firmware/ and boards/<BOARD>/ is compiled with mpy-cross
into OUT_DIR (flat, like the board's / and /lib), except main.py which
stays source (the board runs /main.py from source at boot; it only imports
the compiled modules). Compiling on the device would need more RAM than an
ESP32 without PSRAM has to spare. Any compile error fails the build.
Files are only recompiled when their source is newer (or the build options changed).
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mpy_cross():
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return exe if os.path.exists(exe) else "mpy-cross"


def sources(board):
    out = []
    for d in ("lib", "firmware", os.path.join("boards", board)):
        out += sorted(glob.glob(os.path.join(ROOT, d, "*.py")))
    return [p for p in out if os.path.basename(p) != "manifest.py"]


def build(out_dir, board="HOST", march=None):
    os.makedirs(out_dir, exist_ok=True)
    # other options than last time (or another mpy-cross): build everything again
    stamp = os.path.join(out_dir, ".options")
    opts = "%s %s %s" % (board, march, os.path.getmtime(mpy_cross()) if os.path.exists(mpy_cross()) else "")
    if not os.path.exists(stamp) or open(stamp).read() != opts:
        for f in glob.glob(os.path.join(out_dir, "*.mpy")):
            os.remove(f)
        with open(stamp, "w") as f:
            f.write(opts)
    errors = []
    for src in sources(board):
        name = os.path.basename(src)
        if name == "main.py":
            dst = os.path.join(out_dir, name)
            if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
                shutil.copyfile(src, dst)
            continue
        dst = os.path.join(out_dir, name[:-3] + ".mpy")
        if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
            continue
        # -O3: no line-number tables (about 5 % of every module's heap cost);
        # tracebacks still name the function
        cmd = [mpy_cross(), "-O3", "-o", dst, "-s", name]
        if march:
            cmd.append("-march=" + march)
        r = subprocess.run(cmd + [src], capture_output=True, text=True)
        if r.returncode:
            errors.append("%s: %s" % (src, r.stderr.strip()))
    if errors:
        raise RuntimeError("mpy-cross failed:\n" + "\n".join(errors))
    return out_dir


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--march")
    ap.add_argument("--board", default="HOST")
    a = ap.parse_args()
    try:
        build(a.out, a.board, a.march)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
    print("built %s" % a.out)
