"""Power loss during a configuration save (API.md §10): cut at random points,
the next boot must load the old or the new configuration, never defaults.

The cut is simulated below the store: a file system wrapper that stops
executing operations after N bytes/operations, leaving a partly written file
where the cut hit a write. store.py runs unchanged (it is the same module
that runs on the board).

test_power_cuts_through_boot_and_save (issue 7): POWERLOSS_TRIALS (1 000 by
default) cuts in a row on one flash directory, each during a save of the
real firmware path — cfgsave.save of a booted App, alternately a
configuration change and an energy-counter save (soft_meter, as the control
loop does it) — followed by a real boot (App -> cfgboot): it must come up
with the old or the new state, and the energy counter never goes backwards."""
import builtins
import json
import os
import random

import pytest

import store


class PowerCut(Exception):
    pass


# the real operations: the tests patch os.rename/os.remove (store.os is os)
_rename = os.rename
_remove = os.remove


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
        _rename(a, b)

    def remove(self, p):
        if self.spend() < 1:
            raise PowerCut()
        _remove(p)


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


# ---- the firmware's own save and boot path (issue 7) ---------------------------------
TRIALS = int(os.environ.get("POWERLOSS_TRIALS", "1000"))


class Board:
    BAUD = 9600
    BUS_TIMEOUT_MS = 100
    BUS_RETRIES = 1
    ADMIN_PWD = ""

    def __init__(self, flash):
        self.FLASH = flash

    def uart(self):
        return None

    def de_pin(self):
        return None


class NoBus:
    """App's bus, never used here (nothing is polled)."""

    def __init__(self, *a, **kw):
        self.trace = None

    def stats(self, slave):
        import rtu

        return rtu.Stats()


@pytest.fixture
def firmware(monkeypatch):
    """MicroPython's time.ticks_* on CPython; rtu.Master -> NoBus."""
    import time

    import rtu

    monkeypatch.setattr(time, "ticks_ms", lambda: int(time.monotonic() * 1000) & 0x3FFFFFFF, raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
    monkeypatch.setattr(time, "ticks_add", lambda a, b: a + b, raising=False)
    monkeypatch.setattr(time, "ticks_us", lambda: int(time.monotonic() * 1000000) & 0x3FFFFFFF, raising=False)
    monkeypatch.setattr(rtu, "Master", NoBus)


def state_of(app):
    """What must survive a power cut: the params, the devices' configuration,
    and the energy counter of every EVSE (soft_meter)."""
    return {"params": dict(app.params), "devices": [(d.dev_type, d.dev_id, dict(d.cfg)) for d in app.devices],
            "license": dict(app.license)}


def energy(state):
    return [c["soft_meter"] for t, i, c in state["devices"] if t.startswith("evse_")]


def test_power_cuts_through_boot_and_save(tmp_path, monkeypatch, firmware):
    import sys

    # fresh modules: other tests (the /cnf dispatcher) drop on-demand ones from
    # sys.modules, and the cut must hit the store module the save path uses
    for m in ("store", "cfgsave", "cfgboot", "app"):
        sys.modules.pop(m, None)
    import app as app_mod
    import cfgsave

    store = cfgsave.store

    rnd = random.Random(7)
    flash = str(tmp_path)
    board = Board(flash)
    a = app_mod.App(board)
    assert sys.modules["cfgboot"].store is store
    # a second EVSE without a meter of its own: its energy is the soft meter
    a.devices.append(__import__("devices").new_device("evse_http", "E2", dict(a.devices[0].cfg), None, 0))
    cfgsave.save(a)
    old = state_of(app_mod.App(board))
    assert old == state_of(a)
    cuts = energy_saves = config_saves = 0
    loaded_from = {}
    for trial in range(TRIALS):
        a = app_mod.App(board)
        kind = rnd.randrange(2)
        if kind == 0:  # the control loop's energy save: every EVSE's soft_wh into its config
            energy_saves += 1
            for e in a.devices:
                if e.is_evse:
                    e.soft_wh += rnd.randrange(1, 500)
                    e.cfg["soft_meter"] = e.soft_wh
        else:  # a configuration change (set_params, accept_license, ...)
            config_saves += 1
            a.params["max_total_current"] = rnd.randrange(6000, 63000)
            a.params["title"] = "t" * rnd.randrange(0, 60)
            a.license = {"accepted": bool(trial & 1), "allow_usage_stats": False}
        new = state_of(a)
        size = len(json.dumps(cfgsave.snapshot(a))) + 3  # bytes, then remove + 2 renames
        fs = CuttingFS(rnd.randrange(0, size + size // 4))  # sometimes enough: no cut
        monkeypatch.setattr(store, "open", fs.open, raising=False)
        monkeypatch.setattr(store.os, "rename", fs.rename)
        monkeypatch.setattr(store.os, "remove", fs.remove)
        try:
            cfgsave.save(a)
        except PowerCut:
            cuts += 1
        finally:
            monkeypatch.undo()
            firmware_again(monkeypatch)
        booted = app_mod.App(board)  # the next boot
        got = state_of(booted)
        assert got == old or got == new, (trial, got["params"], old["params"], new["params"])
        assert all(x >= y for x, y in zip(energy(got), energy(old))), (trial, energy(got), energy(old))
        st = store.Store(flash)
        st.load()
        where = st.loaded_from
        k = where.rsplit(".", 1)[1] if where else None
        loaded_from[k] = loaded_from.get(k, 0) + 1
        old = got
    print("\npower cuts: %d trials (%d energy saves, %d configuration saves), %d cut, loaded from %s"
          % (TRIALS, energy_saves, config_saves, cuts, loaded_from))
    assert cuts > TRIALS * 0.6 and energy_saves > TRIALS // 3 and config_saves > TRIALS // 3
    assert None not in loaded_from  # never fell back to the factory defaults


def firmware_again(monkeypatch):
    """monkeypatch.undo() also took back the firmware fixture's patches."""
    import time

    import rtu

    monkeypatch.setattr(time, "ticks_ms", lambda: int(time.monotonic() * 1000) & 0x3FFFFFFF, raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
    monkeypatch.setattr(time, "ticks_add", lambda a, b: a + b, raising=False)
    monkeypatch.setattr(time, "ticks_us", lambda: int(time.monotonic() * 1000000) & 0x3FFFFFFF, raising=False)
    monkeypatch.setattr(rtu, "Master", NoBus)


def test_boot_from_the_temp_file_finishes_the_save(tmp_path, monkeypatch):
    """Found by the chained power-cut test: a cut between the two renames of a
    save leaves the newest copy only in pbctl.tmp; the boot loaded it, but the
    next save overwrote pbctl.tmp first, and a cut there left only pbctl.bak —
    two saves back (energy counters went backwards). load() now renames the
    temp file into place."""
    s = store.Store(str(tmp_path))
    s.save(config(0))
    s.save(config(1))  # .json = 1, .bak = 0
    fs = CuttingFS(len(json.dumps(config(2))) + 2)  # the write, the remove, one rename
    monkeypatch.setattr(store, "open", fs.open, raising=False)
    monkeypatch.setattr(store.os, "rename", fs.rename)
    monkeypatch.setattr(store.os, "remove", fs.remove)
    with pytest.raises(PowerCut):
        s.save(config(2))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["pbctl.bak", "pbctl.tmp"]
    s = store.Store(str(tmp_path))
    assert s.load() == config(2) and s.loaded_from.endswith(".json")
    # the next save is cut while writing its temp file: the previous state is still there
    fs = CuttingFS(10)
    monkeypatch.setattr(store, "open", fs.open, raising=False)
    with pytest.raises(PowerCut):
        s.save(config(3))
    monkeypatch.undo()
    assert store.Store(str(tmp_path)).load() == config(2)
