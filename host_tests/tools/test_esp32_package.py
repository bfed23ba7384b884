"""package.json: what `mpremote mip install` puts on a board (see README, "On the ESP32").

It lists exactly the modules of lib/ and firmware/ — the packages pblib and
pbctl file by file under their package paths (/lib/pblib/..., /lib/pbctl/...
on the board), the modules of lib/ outside a package by their names — and
the ESP32 board module pbboard.py; not boot.py and main.py (the board runs
them from its root, not from /lib: README). It pulls aiorepl from
micropython-lib. The last test runs mpremote's own installer on it against a
fake board.
"""
import glob
import json
import os
import re

import pytest

import mp

ROOT = mp.ROOT
PACKAGE = os.path.join(ROOT, "package.json")


def load():
    with open(PACKAGE) as f:
        return json.load(f)


def modules():
    """{source path: its path in the module space} of every module of lib/ and
    firmware/ (boot.py and main.py aside) and the ESP32 board module."""
    want = {}
    for d in ("lib", "firmware"):
        for p in glob.glob(os.path.join(ROOT, d, "**", "*.py"), recursive=True):
            want[os.path.relpath(p, ROOT)] = os.path.relpath(p, os.path.join(ROOT, d))
    assert want.pop("firmware/boot.py") == "boot.py" and want.pop("firmware/main.py") == "main.py"
    want["boards/ESP32_GENERIC/pbboard.py"] = "pbboard.py"
    return want


def test_lists_exactly_the_existing_modules():
    urls = load()["urls"]
    srcs = sorted(u for _, u in urls)
    want = modules()
    missing = sorted(set(want) - set(srcs))
    extra = sorted(set(srcs) - set(want))
    assert not missing and not extra, "package.json: add %s, remove %s" % (missing, extra)
    assert len(srcs) == len(set(srcs))


def test_package_paths():
    urls = load()["urls"]
    want = modules()
    for dest, src in urls:
        assert dest == want[src], (dest, src)  # lib/pblib/rtu.py -> pblib/rtu.py, the board -> pbboard.py
        assert not src.startswith(("/", "http")) and "\\" not in src  # relative: works from a path and a repo
    dests = [d for d, _ in urls]
    assert len(dests) == len(set(dests)), "two modules with one name"
    assert {"pblib/rtu.py", "pbctl/__init__.py", "pbctl/api/cnf.py", "pbctl/board/safemode.py",
            "pbboard.py"} <= set(dests)


def test_deps_and_version():
    pkg = load()
    assert ["aiorepl", "latest"] in pkg["deps"]
    with open(os.path.join(ROOT, "firmware", "pbctl", "app.py")) as f:
        version = re.search(r'^VERSION = "([^"]+)"', f.read(), re.M).group(1)
    assert pkg["version"] == version


class FakeBoard:
    """The slice of mpremote's transport that mip uses."""

    def __init__(self):
        self.files = {}
        self.dirs = {"/"}

    def fs_exists(self, p):
        return p in self.dirs or p in self.files

    def fs_mkdir(self, p):
        self.dirs.add(p)

    def fs_writefile(self, p, data, progress_callback=None):
        self.files[p] = data

    def fs_hashfile(self, p, algo):
        raise FileNotFoundError(p)


def test_mpremote_mip_installs_it_from_a_local_path(monkeypatch):
    mip = pytest.importorskip("mpremote.mip")
    deps = []
    monkeypatch.setattr(mip, "_install_package", lambda t, pkg, index, target, version, mpy: deps.append(pkg))
    board = FakeBoard()
    # what `mpremote mip install ./package.json` does (the target is the board's /lib)
    mip._install_json(board, PACKAGE, "https://micropython.org/pi/v2", "/lib", None, True)
    for dest, src in load()["urls"]:
        with open(os.path.join(ROOT, src), "rb") as f:
            assert board.files["/lib/" + dest] == f.read(), dest
    assert len(board.files) == len(load()["urls"])
    # the package directories made on the way
    assert {"/lib", "/lib/pblib", "/lib/pbctl", "/lib/pbctl/api", "/lib/pbctl/board"} <= board.dirs
    assert deps == ["aiorepl"]
