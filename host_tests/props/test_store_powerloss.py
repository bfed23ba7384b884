"""Power loss during a save (API.md §10): cut at random points, the next boot
must load the old or the new copy, never defaults.

Two files are saved: the configuration ("pbctl": config.save of a
config.Change) and the soft meters' energy estimates ("energy": saved by the
control task, control.Control.save_energy). The cut is simulated below the
store: a file system wrapper that stops executing operations after N
bytes/operations, leaving a partly written file where the cut hit a write.
pbctl/store.py runs unchanged (it is the same module that runs on the board).

test_power_cuts_through_boot_and_save (issue 7): POWERLOSS_TRIALS (1 000 by
default) cuts in a row on one flash directory, each during a save of the
real firmware path — alternately a configuration change (config.change_params
or a license change, saved, then installed by the control task) and the
control task's energy save (its soft meters integrating 5 minutes of power)
— followed by a real boot (config.load): each file holds a complete old or
new copy, the configuration comes up old or new, the energy estimates come
up old or new (config.load takes them from the energy file, the
configuration's soft_meter for an EVSE the file does not have) and never go
backwards."""
import builtins
import json
import os
import random

import asyncio

import pytest

from pbctl import store


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


@pytest.mark.parametrize("name", ["pbctl", "energy"])
def test_power_cut_at_random_points(tmp_path, monkeypatch, name):
    rnd = random.Random(1)
    trials = cuts = 0
    for trial in range(300):
        d = tmp_path / ("t%d" % trial)
        d.mkdir()
        s = store.Store(str(d), name)
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
        got = store.Store(str(d), name).load()
        assert got in (old, new), (trial, got)
        assert sorted(os.listdir(d))[0].startswith(name + ".")
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
MAX_EVSES = 8


class NoBus:
    """rtu.Master as the control task sees it here: statistics only (no EVSE
    on the bus is ever online, so nothing is polled or written)."""

    trace = None

    def stats(self, slave, fresh=False):
        from pblib import rtu

        return rtu.Stats()


@pytest.fixture
def firmware(monkeypatch):
    """MicroPython's time.ticks_* on CPython."""
    import time

    monkeypatch.setattr(time, "ticks_ms", lambda: int(time.monotonic() * 1000) & 0x3FFFFFFF, raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
    monkeypatch.setattr(time, "ticks_add", lambda a, b: a + b, raising=False)
    monkeypatch.setattr(time, "ticks_us", lambda: int(time.monotonic() * 1000000) & 0x3FFFFFFF, raising=False)


def boot(flash):
    """A start of the firmware: config.load, then the control task (pbctl.start)."""
    import time

    from pbctl import config, control

    site = config.load(flash, time.ticks_ms())
    return site, control.Control(site, NoBus(), flash, max(1, len([d for d in site.devices if d.is_evse])))


def change(ctl, ch, save):
    """What api/admin.py's change() does: save the change (save(ch): config.save,
    perhaps cut), then the control task installs it at its next pass."""
    if ch.evses() > ctl.slots():
        from pblib import balancer

        ch.lb = balancer.Balancer(ch.evses())
    save(ch)
    ctl.install(ch)
    asyncio.run(ctl.step())


def config_state(params, devices, admin, license, cfgs=()):
    """What must survive a power cut of the configuration (without the energy
    estimates, which have their own file); cfgs: a change's new configuration
    dicts of devices that stay."""
    out = []
    for d in devices:
        cfg = dict(d.cfg)
        for x, new in cfgs:
            if x is d:
                cfg = dict(new)
        cfg.pop("soft_meter", None)  # (EVSEs: the energy estimate, checked on its own)
        out.append((d.dev_type, d.dev_id, cfg))
    return json.loads(json.dumps({"params": params, "devices": out, "admin": admin, "license": license}))


def site_state(site):
    return config_state(site.params, site.devices, site.admin, site.license)


def change_state(ch):
    return config_state(ch.params, ch.devices, ch.admin, ch.license, ch.cfgs)


def energy_state(site):
    """The soft meters: every EVSE's energy estimate, Wh."""
    return {d.dev_id: d.soft_wh for d in site.devices if d.is_evse}


def soft_energy(site):
    """The energy file's content: the estimates of the EVSEs without a meter of their own."""
    return {d.dev_id: d.soft_wh for d in site.devices if d.is_evse and not d.rtu}


def test_power_cuts_through_boot_and_save(tmp_path, firmware):
    import time

    from pbctl import config

    # the store module the save paths use (config's, and control.save_energy's import)
    assert config.store is store and __import__("pbctl").store is store
    rnd = random.Random(7)
    flash = str(tmp_path)
    # the first boot (factory configuration: E1 on the bus) and two HTTP EVSEs
    # without a meter of their own: their energy is the soft meter
    site, ctl = boot(flash)
    for dev_id in ("E2", "E3"):
        change(ctl, config.change_params(site, {"devices": [{"dev_type": "evse_http", "dev_id": dev_id}]}, MAX_EVSES),
               lambda ch: config.save(flash, ch))
    soft = [d for d in site.devices if d.dev_type == "evse_http"]
    assert [d.dev_id for d in soft] == ["E2", "E3"]
    cuts = energy_saves = config_saves = 0
    loaded_from = {"pbctl": {}, "energy": {}}
    for trial in range(TRIALS + 1):
        # what the cut left: the newest complete copy of each file, and where it was
        left = [where(flash, n) for n in ("pbctl", "energy")]
        stored = [list(store.Store(flash, "pbctl").each()) or None, store.Store(flash, "energy").load()]
        site, ctl = boot(flash)  # the next boot
        got = site_state(site), energy_state(site)
        if trial:
            # each file: a complete old or new copy
            assert stored[0] in (old_stored, new_stored), trial
            assert stored[1] in (old_energy_file, new_energy_file), (trial, stored[1])
            # the configuration old or new, the energy estimates old or new and never less
            assert got[0] in (old[0], new[0]), (trial, got[0]["params"], old[0]["params"], new[0]["params"])
            assert got[1] in (old[1], new[1]), (trial, got[1], old[1], new[1])
            assert all(got[1][k] >= old[1][k] for k in got[1]), (trial, got[1], old[1])
            for n, k in zip(("pbctl", "energy"), left):
                loaded_from[n][k] = loaded_from[n].get(k, 0) + 1
        # config.load merges the two files: an EVSE's estimate from the energy
        # file, else from the configuration
        for d in site.devices:
            if d.is_evse:
                in_config = [c for t, i, c in stored[0][1:] if i == d.dev_id][0]["soft_meter"]
                want = (stored[1] or {}).get(d.dev_id, in_config)
                assert d.soft_wh == d.cfg["soft_meter"] == want, (trial, d.dev_id)
        if trial == TRIALS:
            break
        old = got
        old_stored, old_energy_file = stored
        new_stored, new_energy_file = old_stored, old_energy_file
        kind = rnd.randrange(2) if trial else 0  # (the first one makes the energy file)
        if kind == 0:
            # the control task: HTTP readings of the EVSEs' power, then 5 minutes
            # later its soft meters integrate it and save the estimates
            energy_saves += 1
            for d in soft:
                ctl.reading(site.device(d.dev_id), {"power_w": rnd.randrange(500, 22000)})
            asyncio.run(ctl.step())
            size = len(json.dumps(soft_energy(site))) + 3 + 8  # bytes (some digits more), then remove + 2 renames
            try:
                with cut_at(rnd.randrange(0, size + size // 4) if trial else 1 << 30):  # sometimes enough: no cut
                    ctl.soft_meters(time.ticks_add(time.ticks_ms(), 300001))
            except PowerCut:
                cuts += 1
            # (the estimates are worked out before they are saved: a cut leaves them in RAM)
            new = old[0], energy_state(site)
            new_energy_file = soft_energy(site)
            assert all(new[1][d.dev_id] > old[1][d.dev_id] for d in soft), (trial, new[1], old[1])
        else:
            # a configuration change (set_params, accept_license), saved, then installed
            config_saves += 1
            if rnd.randrange(3):
                ch = config.change_params(site, {"max_total_current": rnd.randrange(6000, 63000),
                                                 "title": "t" * rnd.randrange(0, 60)}, MAX_EVSES)
            else:
                ch = config.Change(site)
                ch.license = {"accepted": bool(trial & 1), "allow_usage_stats": False}
            new = change_state(ch), old[1]
            new_stored = json.loads(json.dumps(list(ch.stored())))  # (a list file: head, then a device a line)
            size = len(json.dumps(new_stored)) + 3 * len(new_stored) + 3
            try:
                with cut_at(rnd.randrange(0, size + size // 4)):
                    change(ctl, ch, lambda ch: config.save(flash, ch))
                assert site_state(site) == new[0]  # installed
            except PowerCut:
                cuts += 1
    print("\npower cuts: %d trials (%d energy saves, %d configuration saves), %d cut, loaded from %s"
          % (TRIALS, energy_saves, config_saves, cuts, loaded_from))
    assert cuts > TRIALS * 0.6 and energy_saves > TRIALS // 3 and config_saves > TRIALS // 3
    # never fell back to the factory configuration, or lost the energy file; some
    # cuts came between the renames of an energy save (its file is small)
    assert None not in loaded_from["pbctl"] and None not in loaded_from["energy"]
    assert loaded_from["energy"].get("tmp"), loaded_from


def test_an_estimate_set_by_the_admin_survives_the_next_boot(tmp_path, firmware):
    """cmd=soft_meter&val= (control.Control.energy) and set_params' soft_meter
    set an EVSE's estimate, up or down; the next boot comes up with it. (Found
    here: an estimate set lower than the configuration's soft_meter came back
    at the next boot, config.load took the larger of the two files.)"""
    from pbctl import config

    flash = str(tmp_path)
    site, ctl = boot(flash)
    change(ctl, config.change_params(site, {"devices": [{"dev_type": "evse_http", "dev_id": "E2"}]}, MAX_EVSES),
           lambda ch: config.save(flash, ch))
    for wh in (1000, 400, 5000, 0):
        # any configuration change saves the configuration's soft_meter too
        change(ctl, config.change_params(site, {"title": "before %d" % wh}, MAX_EVSES),
               lambda ch: config.save(flash, ch))
        ctl.energy("E2", wh)  # what cmd=soft_meter&val= hands the control task
        asyncio.run(ctl.step())
        site, ctl = boot(flash)
        assert (site.params["title"], site.device("E2").soft_wh) == ("before %d" % wh, wh)
    for wh in (7000, 300):  # set_params' soft_meter: the same
        change(ctl, config.change_params(site, {"devices": [{"dev_id": "E2", "soft_meter": wh}]}, MAX_EVSES),
               lambda ch: config.save(flash, ch))
        assert site.device("E2").soft_wh == wh
        site, ctl = boot(flash)
        assert site.device("E2").soft_wh == site.device("E2").cfg["soft_meter"] == wh


def where(flash, name):
    """Where the newest complete copy is after a cut: "json", "tmp" (a save cut
    between its renames: load() finishes it) or None."""
    for ext in ("json", "tmp", "bak"):
        try:
            with open(os.path.join(flash, name + "." + ext)) as f:
                json.load(f)
            return ext
        except (OSError, ValueError):
            pass
    return None


class cut_at:
    """The file system cuts the power after n bytes/operations while in force
    (a with block), on the store module the firmware uses."""

    def __init__(self, n):
        self.fs = CuttingFS(n)
        self.mp = pytest.MonkeyPatch()

    def __enter__(self):
        self.mp.setattr(store, "open", self.fs.open, raising=False)
        self.mp.setattr(store.os, "rename", self.fs.rename)
        self.mp.setattr(store.os, "remove", self.fs.remove)
        return self

    def __exit__(self, *exc):
        self.mp.undo()


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
