"""Precompile the firmware to .mpy files: what runs on the board and in `make sim`.

    python tools/mpybuild.py [--march xtensawin] [--board ESP32_GENERIC] [--root /] OUT_DIR

Every .py below lib/ and firmware/ (the packages pblib and pbctl, their
sub-packages mirrored as directories) and the board's pbboard.py are compiled
with mpy-cross into OUT_DIR — the module space the board has (its / or a
ROMFS image) — except boot.py and main.py, which stay source (the board runs
/boot.py and /main.py from source at boot; they only import the compiled
modules). Compiling on the device would need more RAM than an ESP32 without
PSRAM has to spare. Any compile error fails the build. Files are only
recompiled when their source is newer (or the build options changed).
The web UI's files (firmware/pbctl/www/) go gzipped into OUT_DIR/pbctl/www/
(see www()).
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
# also kept as source beside them (not in a ROMFS image): run at boot before a
# version is chosen (updates, pbslot.py); its compiled copy is in every version
BOOT = ("pbslot.py",)


def mpy_cross():
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return exe if os.path.exists(exe) else "mpy-cross"


def sources(board):
    """[(source path, path relative to the module space)] of the firmware for board."""
    out = []
    for d in ("lib", "firmware"):
        top = os.path.join(ROOT, d)
        for p in sorted(glob.glob(os.path.join(top, "**", "*.py"), recursive=True)):
            out.append((p, os.path.relpath(p, top)))
    out.append((os.path.join(ROOT, "boards", board, "pbboard.py"), "pbboard.py"))
    return out


def www(out_dir):
    """The web UI: every file of firmware/pbctl/www/ gzipped (level 9, mtime 0: the
    same bytes on every machine) into OUT_DIR/pbctl/www/NAME.gz, served as it is
    by the firmware (api/cnf.py, README "Web UI"); files gone from
    firmware/pbctl/www/ go here too."""
    src_dir = os.path.join(ROOT, "firmware", "pbctl", "www")
    out = os.path.join(out_dir, "pbctl", "www")
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


def build(out_dir, board="HOST", march=None, root=None):
    """Build into out_dir; root: where out_dir lies on the target ("/" for the
    board's file system, "/rom/" for a ROMFS image; default: out_dir itself)."""
    os.makedirs(out_dir, exist_ok=True)
    root = root or os.path.abspath(out_dir) + "/"
    # other options than last time (or another mpy-cross): build everything again
    stamp = os.path.join(out_dir, ".options")
    opts = "%s %s %s %s %s" % ("s=path2", board, march, root,
                               os.path.getmtime(mpy_cross()) if os.path.exists(mpy_cross()) else "")
    if not os.path.exists(stamp) or open(stamp).read() != opts:
        for f in glob.glob(os.path.join(out_dir, "**", "*.mpy"), recursive=True):
            os.remove(f)
        with open(stamp, "w") as f:
            f.write(opts)
    errors = []
    srcs = sources(board)
    # modules whose source is gone (renamed, moved) must not linger: they would still import
    want = set(rel[:-3] + (".py" if rel in SOURCE else ".mpy") for _, rel in srcs) | set(BOOT)
    for f in glob.glob(os.path.join(out_dir, "**", "*.mpy"), recursive=True) + glob.glob(os.path.join(out_dir, "*.py")):
        if os.path.relpath(f, out_dir) not in want:
            os.remove(f)
    for src, rel in srcs:
        if rel in SOURCE + BOOT:
            dst = os.path.join(out_dir, rel)
            if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
                shutil.copyfile(src, dst)
            if rel in SOURCE:
                continue
        dst = os.path.join(out_dir, rel[:-3] + ".mpy")
        if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        # -O3: no line-number tables (about 5 % of every module's heap cost);
        # tracebacks still name the function. The source name is the path the
        # module is imported by on the target (root + its path), so both are
        # one interned name, not two (every name costs heap; BENCHMARKS.md),
        # and __file__ locates the web UI's files (api/cnf.py).
        src_name = root + rel[:-3] + ".mpy"
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


def romfs(out_dir, image):
    """A ROMFS image (`vfs.VfsRom`, MicroPython >= 1.25) of a build made with
    root="/rom/": every module and web file of out_dir, without boot.py and
    main.py (the board runs those from its file system). What `mpremote romfs
    build` makes, but from our own .mpy files (our mpy-cross options and
    source names). On a board with a ROMFS partition the firmware runs from it
    in place: its code costs no heap (README "Memory"). Returns the image's size."""
    from mpremote.romfs import VfsRomWriter

    def add(w, d):
        for n in sorted(os.listdir(d)):
            p = os.path.join(d, n)
            if n[0] == "." or n in SOURCE + BOOT or n.endswith(".tmp"):
                continue
            if os.path.isdir(p):
                w.opendir(n)
                add(w, p)
                w.closedir()
            else:
                with open(p, "rb") as f:
                    w.mkfile(n, f.read())

    w = VfsRomWriter()
    add(w, out_dir)
    data = w.finalise()
    tmp = "%s.%d.tmp" % (image, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, image)
    return len(data)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--march")
    ap.add_argument("--board", default="HOST")
    ap.add_argument("--root", help="where OUT_DIR lies on the target (default: OUT_DIR)")
    ap.add_argument("--romfs", metavar="IMAGE", help="also make a ROMFS image of the build (use --root /rom/)")
    a = ap.parse_args()
    try:
        build(a.out, a.board, a.march, a.root)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
    print("built %s" % a.out)
    if a.romfs:
        print("ROMFS image %s: %d bytes" % (a.romfs, romfs(a.out, a.romfs)))
