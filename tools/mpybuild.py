"""Precompile the firmware to .mpy files: what runs on the board and in `make sim`.

    python tools/mpybuild.py [--march xtensawin] [--board ESP32_GENERIC] OUT_DIR

Every .py of lib/, firmware/ and boards/<BOARD>/ is compiled with mpy-cross
into OUT_DIR (flat, like the board's / and /lib), except boot.py and main.py
which stay source (the board runs /boot.py and /main.py from source at boot;
they only import the compiled modules). Compiling on the device would need
more RAM than an ESP32 without PSRAM has to spare. Any compile error fails the build.
Files are only recompiled when their source is newer (or the build options changed).
The web UI's files (firmware/www/) go gzipped into OUT_DIR/www/ (see www()).
"""
import argparse
import glob
import gzip
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = ("boot.py", "main.py")  # run from source by the board at boot


def mpy_cross():
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return exe if os.path.exists(exe) else "mpy-cross"


def sources(board):
    out = []
    for d in ("lib", "firmware", os.path.join("boards", board)):
        out += sorted(glob.glob(os.path.join(ROOT, d, "*.py")))
    return [p for p in out if os.path.basename(p) != "manifest.py"]


def www(out_dir):
    """The web UI: every file of firmware/www/ gzipped (level 9, mtime 0: the same
    bytes on every machine) into OUT_DIR/www/NAME.gz, served as it is by the
    firmware (cnf.py, README "Web UI"); files gone from firmware/www/ go here too."""
    src_dir = os.path.join(ROOT, "firmware", "www")
    out = os.path.join(out_dir, "www")
    os.makedirs(out, exist_ok=True)
    names = [n for n in sorted(os.listdir(src_dir)) if n[0] != "." and os.path.isfile(os.path.join(src_dir, n))]
    for n in os.listdir(out):
        if n.endswith(".gz") and n[:-3] not in names:
            try:
                os.remove(os.path.join(out, n))
            except FileNotFoundError:  # removed by another build just now
                pass
    for n in names:
        src = os.path.join(src_dir, n)
        dst = os.path.join(out, n + ".gz")
        if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
            continue
        with open(src, "rb") as f:
            data = gzip.compress(f.read(), 9, mtime=0)
        tmp = "%s.%d.tmp" % (dst, os.getpid())  # other builds of the same tree may run at once
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, dst)


def build(out_dir, board="HOST", march=None):
    os.makedirs(out_dir, exist_ok=True)
    # other options than last time (or another mpy-cross): build everything again
    stamp = os.path.join(out_dir, ".options")
    opts = "%s %s %s %s" % ("s=path", board, march, os.path.getmtime(mpy_cross()) if os.path.exists(mpy_cross()) else "")
    if not os.path.exists(stamp) or open(stamp).read() != opts:
        for f in glob.glob(os.path.join(out_dir, "*.mpy")):
            os.remove(f)
        with open(stamp, "w") as f:
            f.write(opts)
    errors = []
    for src in sources(board):
        name = os.path.basename(src)
        if name in SOURCE:
            dst = os.path.join(out_dir, name)
            if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
                shutil.copyfile(src, dst)
            continue
        dst = os.path.join(out_dir, name[:-3] + ".mpy")
        if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
            continue
        # -O3: no line-number tables (about 5 % of every module's heap cost);
        # tracebacks still name the function. The source name is the path the
        # module is imported by (the host: OUT_DIR/x.mpy on MICROPYPATH; the
        # board: x.mpy in /), so both are one interned name, not two: every
        # name costs heap, and ~30 fewer keep the host's names in five qstr
        # pools instead of six (the sixth alone is 7 KB; BENCHMARKS.md).
        src_name = os.path.basename(dst) if march else dst
        cmd = [mpy_cross(), "-O3", "-o", dst, "-s", src_name]
        if march:
            cmd.append("-march=" + march)
        r = subprocess.run(cmd + [src], capture_output=True, text=True)
        if r.returncode:
            errors.append("%s: %s" % (src, r.stderr.strip()))
    www(out_dir)
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
