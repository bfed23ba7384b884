"""Power loss during a configuration save (API.md §10): cut at random points,
the next boot must load the old or the new configuration, never defaults.

The cut is simulated below the store: a file system wrapper that stops
executing operations after N bytes/operations, leaving a partly written file
where the cut hit a write. store.py runs unchanged (it is the same module
that runs on the board)."""
import builtins
import json
import os
import random

import pytest

import store


class PowerCut(Exception):
    pass


class CuttingFS:
    """Counts bytes written and renames/removes; raises PowerCut at the budget."""

    def __init__(self, budget):
        self.budget = budget

    def spend(self, n=1):
        if self.budget < n:
            k = self.budget
            self.budget = -1
            return k
        self.budget -= n
        return n

    def open(self, path, mode="r", *a, **kw):
        f = builtins.open(path, mode, *a, **kw)
        if "w" not in mode:
            return f
        fs = self

        class W:
            def write(self, data):
                k = fs.spend(len(data))
                f.write(data[:k])
                if k < len(data):
                    f.close()
                    raise PowerCut()
                return k

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()
        return W()

    def rename(self, a, b):
        if self.spend() < 1:
            raise PowerCut()
        os.rename(a, b)

    def remove(self, p):
        if self.spend() < 1:
            raise PowerCut()
        os.remove(p)


def config(n):
    return {"params": {"max_total_current": 16000 + n, "title": "x" * (n % 50)},
            "devices": [{"dev_id": "E%d" % i, "name": "box %d" % i} for i in range(n % 5 + 1)]}


def test_power_cut_at_random_points(tmp_path, monkeypatch):
    rnd = random.Random(1)
    trials = cuts = 0
    for trial in range(300):
        d = tmp_path / ("t%d" % trial)
        d.mkdir()
        s = store.Store(str(d))
        old = config(trial)
        s.save(old)
        if trial % 3 == 0:
            s.save(old)  # sometimes a .bak exists already
        new = config(trial + 1000)
        size = len(json.dumps(new)) + 4
        fs = CuttingFS(rnd.randrange(0, size))
        monkeypatch.setattr(store, "open", fs.open, raising=False)
        monkeypatch.setattr(store.os, "rename", fs.rename)
        monkeypatch.setattr(store.os, "remove", fs.remove)
        try:
            s.save(new)
        except PowerCut:
            cuts += 1
        finally:
            monkeypatch.undo()
        got = store.Store(str(d)).load()
        assert got in (old, new), (trial, got)
        trials += 1
    assert trials == 300 and cuts > 200


def test_corrupt_main_file_falls_back_to_backup(tmp_path):
    s = store.Store(str(tmp_path))
    s.save(config(1))
    s.save(config(2))
    (tmp_path / "pbctl.json").write_text('{"params": {"max_tot')
    assert s.load() == config(1)
    assert s.loaded_from.endswith(".bak")


def test_nothing_stored(tmp_path):
    assert store.Store(str(tmp_path)).load() is None


@pytest.mark.parametrize("junk", ["", "[1,2]", "null", "\x00\x00\x00"])
def test_junk_everywhere_gives_none(tmp_path, junk):
    for n in ("pbctl.json", "pbctl.tmp", "pbctl.bak"):
        (tmp_path / n).write_text(junk)
    assert store.Store(str(tmp_path)).load() is None
