"""`make bundle`: an update bundle for cmd=update (README "Updates over HTTP").

    python tools/bundle.py [--board HOST] [--version V] [--kind romfs|mpy] OUT

The format (read by firmware/pbctl/api/update.py a piece at a time):

    pbctl-bundle 1 <board> <version> <files> <bytes>\\n
    <size> <sha256 hex> <path>\\n  then the file's <size> bytes   (<files> times)

<bytes> counts everything after the first line. Why this and not tar or zip:
the controller reads the bundle once, front to back, from the HTTP body and
writes each file to flash as it passes, with ~1.5 KB of buffer. The first
line says board, version and total size before a byte is written (another
board, too large: refused at once); each file's line says its size and hash
just before its bytes, so each file is verified as it ends and no manifest
needs to be held in RAM (a zip's directory comes last; tar's 512-byte
headers and padding say no hash). A text first line also lets
`head -1 bundle` show what a bundle is.

Kinds: romfs (HOST's default) — the ROMFS image of the firmware with its
web files in it, one file `pbctl.romfs`; mpy (ESP32's default) — the .mpy
tree and the gzipped web files, run from the file system. boot.py, main.py
and pbslot.py are never in a bundle (they choose the version at boot).
"""
import argparse
import hashlib
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpybuild  # noqa: E402

ROOT = mpybuild.ROOT
MAGIC = "pbctl-bundle"


def version():
    """app.VERSION and the commit: 0.2.0+g1234abc (a dirty tree: +dirty)."""
    v = "0.0.0"
    with open(os.path.join(ROOT, "firmware", "pbctl", "app.py")) as f:
        for line in f:
            if line.startswith("VERSION = "):
                v = line.split('"')[1]
    try:
        h = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    except OSError:
        h = ""
    return v + ("+g" + h if h else "")


def pack(files, board, ver):
    """The bundle's bytes of files [(path, bytes)]."""
    if not ver or " " in ver or "\n" in ver:
        raise ValueError("bad version")
    body = b"".join(b"%d %s %s\n" % (len(d), hashlib.sha256(d).hexdigest().encode(), p.encode()) + d
                    for p, d in files)
    return ("%s 1 %s %s %d %d\n" % (MAGIC, board, ver, len(files), len(body))).encode() + body


def tree(d):
    """[(path, bytes)] of a build directory without the boot files."""
    out = []
    for top, dirs, names in os.walk(d):
        dirs[:] = sorted(n for n in dirs if n[0] != ".")
        for n in sorted(names):
            rel = os.path.relpath(os.path.join(top, n), d)
            if n[0] == "." or n.endswith(".tmp") or rel in mpybuild.SOURCE + mpybuild.BOOT:
                continue
            with open(os.path.join(top, n), "rb") as f:
                out.append((rel, f.read()))
    return out


def build(board="HOST", kind=None, ver=None, work=None):
    """The bundle's bytes for board (its firmware built now)."""
    kind = kind or ("romfs" if board == "HOST" else "mpy")
    march = None if board == "HOST" else "xtensawin"
    work = work or os.path.join(ROOT, "build", "bundle-%s-%s" % (board, kind))
    if kind == "romfs":
        out = mpybuild.build(os.path.join(work, "rom"), board, march, root="/rom/")
        image = os.path.join(work, "pbctl.romfs")
        mpybuild.romfs(out, image)
        with open(image, "rb") as f:
            files = [("pbctl.romfs", f.read())]
    else:
        files = tree(mpybuild.build(os.path.join(work, "mpy"), board, march, root="/"))
    return pack(files, board, ver or version())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--board", default="HOST")
    ap.add_argument("--kind", choices=("romfs", "mpy"))
    ap.add_argument("--version")
    a = ap.parse_args()
    data = build(a.board, a.kind, a.version)
    with open(a.out, "wb") as f:
        f.write(data)
    print("%s: %s, %d bytes" % (a.out, data[: data.index(b"\n")].decode(), len(data)))
