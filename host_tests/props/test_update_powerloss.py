"""Power loss during an update (README "Updates over HTTP"): a cut at every
step leaves one complete version that boots.

firmware/pbctl/api/update.py (Stage: staging, verifying, switching) and
firmware/pbslot.py (the boot's choice, its start count, the roll-back) run
unchanged under CPython on a flash directory; the cut is below them, as in
test_store_powerloss.py: a file system wrapper that stops after N bytes
written or N renames/removes/mkdirs/rmdirs (a write cut midway leaves a
partial file). Each trial: a cut at budget N during an update (and the
boots after it), then boots without cuts: the version each boot picks is a
complete copy (every file's hash as its bundle said) of the old or the new
one — or the cable's, which is always there — and a version never comes
back that was given up. N runs over every step of the update (every byte
budget up to the first whole run, operation by operation).
"""
import builtins
import hashlib
import os

import pytest

import pbslot
import bundle
from pbctl.api import update
from pblib.httpd import HTTPError


class PowerCut(Exception):
    pass


_real = {n: getattr(os, n) for n in ("rename", "remove", "mkdir", "rmdir")}
_open = builtins.open


class CuttingFS:
    def __init__(self, budget):
        self.budget = budget
        self.used = 0

    def spend(self, n=1):
        if self.budget < n:
            k = max(self.budget, 0)
            self.budget = -1
            return k
        self.budget -= n
        self.used += n
        return n

    def open(self, path, mode="r", *a, **kw):
        f = _open(path, mode, *a, **kw)
        if "w" not in mode:
            return f
        fs = self

        class W:
            def write(self, data):
                k = fs.spend(len(data))
                f.write(bytes(data[:k]) if "b" in mode else data[:k])
                if k < len(data):
                    f.close()
                    raise PowerCut()
                return k

            def close(self):
                f.close()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()
        return W()

    def op(self, name):
        def run(*a):
            if self.spend() < 1:
                raise PowerCut()
            return _real[name](*a)
        return run


def install(monkeypatch, fs):
    for m in (pbslot, update):
        monkeypatch.setattr(m, "open", fs.open, raising=False)
    for n in _real:
        monkeypatch.setattr(os, n, fs.op(n))


def files_of(b):
    """{path: sha256 hex} of a bundle's bytes."""
    out = {}
    i = b.index(b"\n") + 1
    while i < len(b):
        e = b.index(b"\n", i)
        size, sha, path = b[i:e].decode().split(" ")
        out[path] = sha
        i = e + 1 + int(size)
    return out


def version_files(flash, d):
    """{path: sha256 hex} of what a boot would run (None: the cable's)."""
    if d is None:
        return None
    out = {}
    for top, _, names in os.walk(d):
        for n in names:
            with builtins.open(os.path.join(top, n), "rb") as f:
                out[os.path.relpath(os.path.join(top, n), d)] = hashlib.sha256(f.read()).hexdigest()
    return out


def stage(flash, data, piece=1536):
    st = update.Stage(flash, "HOST", len(data))
    try:
        for i in range(0, len(data), piece):
            st.feed(memoryview(data)[i : i + piece])
        return st.finish()
    except HTTPError:
        st.abort()
        raise


V0 = bundle.pack([("pbctl.romfs", b"zero" * 300)], "HOST", "0.9")
V1 = bundle.pack([("pbctl.romfs", b"one" * 700), ("www/app.js.gz", b"js1" * 300)], "HOST", "1.0")
V2 = bundle.pack([("pbctl.romfs", b"two" * 900), ("www/app.js.gz", b"js2" * 200), ("x/y/z.mpy", b"")],
                 "HOST", "2.0")


def installed(flash):
    """A flash where 0.9, then 1.0 were installed and came up (1.0 runs, 0.9 is the way back)."""
    os.makedirs(flash)
    for b in (V0, V1):
        stage(flash, b)
        assert pbslot.select(flash) is not None
        pbslot.good(flash)
    assert sorted(os.listdir(flash + "/fw")) == ["s1", "s2"]


def whole_run_cost(tmp_path):
    """Budget units an update of V2 over V1 takes, without cuts."""
    flash = str(tmp_path / "probe")
    installed(flash)
    fs = CuttingFS(1 << 40)
    mp = pytest.MonkeyPatch()
    install(mp, fs)
    try:
        stage(flash, V2)
    finally:
        mp.undo()
    return fs.used


def test_power_cut_at_every_step_of_an_update(tmp_path, monkeypatch):
    n = whole_run_cost(tmp_path)
    ops = sorted(set(range(0, n + 2)))  # every byte and operation: every step of the update
    want = {"0.9": files_of(V0), "1.0": files_of(V1), "2.0": files_of(V2)}
    seen = set()
    for budget in ops:
        flash = str(tmp_path / ("f%d" % budget))
        installed(flash)
        fs = CuttingFS(budget)
        install(monkeypatch, fs)
        try:
            stage(flash, V2)
            cut = False
        except PowerCut:
            cut = True
        finally:
            monkeypatch.undo()
        # boots: the one after the cut, then more (a new version that never comes up is given up)
        seen_now = set()
        for boot in range(5):
            d = pbslot.select(flash)
            p = pbslot.load(flash)
            assert d is not None, (budget, p)  # never the cable's: version 1 was complete and good
            got = version_files(flash, d)
            v = p["v"]
            assert got == want[v], (budget, boot, v)  # a complete copy of what it claims to be
            seen.add((cut, v, boot))
            seen_now.add((cut, v, boot))
        # version 2 never marked good: after its 3 starts the 4th boot is version 1 again, for good
        assert pbslot.load(flash)["v"] == "1.0"
        assert pbslot.load(flash).get("failed", "") == ("2.0" if (True, "2.0", 0) in seen or not cut else "")
    # the cuts hit both before and after the switch
    assert (True, "1.0", 0) in seen and (True, "2.0", 0) in seen and (False, "2.0", 0) in seen


def test_rollback_after_three_starts_and_a_good_start_keeps_it(tmp_path):
    flash = str(tmp_path)
    stage(flash, V1)
    boots = [pbslot.load(flash)["v"] if pbslot.select(flash) else "cable" for _ in range(5)]
    # 3 starts of 1.0 (none good), then the cable's version, for good
    assert boots == ["1.0", "1.0", "1.0", "cable", "cable"]
    assert pbslot.load(flash) == {"cur": "", "v": "", "prev": "", "pv": "", "tries": 0, "ok": 1, "failed": "1.0"}
    stage(flash, V1)
    assert pbslot.select(flash)
    pbslot.good(flash)
    stage(flash, V2)
    pbslot.good(flash)  # (the old version's good mark after the switch: tries 0, it does not count)
    assert [pbslot.load(flash)["v"] for _ in range(2) if pbslot.select(flash)] == ["2.0", "2.0"]
    pbslot.good(flash)
    assert [pbslot.load(flash)["v"] for _ in range(5) if pbslot.select(flash)] == ["2.0"] * 5
    # the version given up went at the next update (s1 again), the cable's is the way back from 2.0
    assert sorted(os.listdir(flash + "/fw")) == ["s1", "s2"]
    assert pbslot.load(flash)["pv"] == "1.0"


@pytest.mark.parametrize("data, status, msg", [
    (V2.replace(b"two" * 900, b"twO" * 900), 400, "hash mismatch: pbctl.romfs"),
    (V2[:-1], 400, "truncated bundle"),
    (V2[: len(V2) // 2], 400, "truncated bundle"),
    (V2.replace(b" HOST ", b" ESP32_GENERIC ", 1), 400, "bundle for another board"),
    (V2.replace(b"pbctl-bundle 1", b"pbctl-bundle 2", 1), 400, "bad bundle"),
    (V2 + b"x", 400, "bad bundle"),
    (bundle.pack([("../evil", b"x")], "HOST", "3"), 400, "bad bundle"),
    (bundle.pack([("a/.hidden", b"x")], "HOST", "3"), 400, "bad bundle"),
    (bundle.pack([("/abs", b"x")], "HOST", "3"), 400, "bad bundle"),
    (bundle.pack([], "HOST", "3"), 400, "bad bundle"),
    (bundle.pack([("big", b"x" * (update._MAX + 1))], "HOST", "3"), 413, "bundle too large"),
])
def test_bad_bundles_change_nothing(tmp_path, data, status, msg):
    flash = str(tmp_path)
    stage(flash, V1)
    pbslot.select(flash)
    pbslot.good(flash)

    def snapshot():
        out = {}
        for top, _, names in os.walk(flash):
            for n in names:
                with builtins.open(os.path.join(top, n), "rb") as f:
                    out[os.path.relpath(os.path.join(top, n), flash)] = f.read()
        return out

    before = snapshot()
    with pytest.raises(HTTPError) as e:
        stage(flash, data)
    assert (e.value.status, e.value.message) == (status, msg)
    assert snapshot() == before
    assert not os.path.exists(flash + "/fw/new")
