"""Which firmware version boots: the pointer of the updates over HTTP (README
"Updates over HTTP").

This file stays source on the board's file system beside boot.py and main.py
(and on the host beside the build's main.py): it runs before a version is
chosen, so no bundle ever replaces it, and the pointer's format below is
fixed for good. The firmware imports it (compiled, from its own version) to
switch (api/update.py) and to confirm a good start.

FLASH/fw.json, the pointer, always replaced whole (written to fw.tmp, renamed
over fw.json: atomic on littlefs and POSIX):
    {"cur": slot, "v": its version, "prev": slot, "pv": its version,
     "tries": starts of cur so far, "ok": 1 once cur came up, "failed": version}
A slot is a directory FLASH/fw/<slot>/ with one version's files; "" is the
version flashed by cable (the ROMFS partition or the modules in /). A version
switched to is tentative (ok 0): select() counts its starts, and once it has
had TRIES of them without good() the next boot runs prev again (ok 1,
"failed": the version given up). No pointer: the cable's version.
"""
import json
import os

TRIES = 3


def load(flash):
    """The pointer (a dict) or None. fw.tmp counts only when fw.json is
    missing and it parses (complete): a first switch cut before its rename."""
    for n in ("/fw.json", "/fw.tmp"):
        try:
            with open(flash + n) as f:
                p = json.load(f)
            if isinstance(p, dict) and "cur" in p:
                return p
        except (OSError, ValueError):
            pass
    return None


def save(flash, p):
    with open(flash + "/fw.tmp", "w") as f:
        json.dump(p, f)
    os.rename(flash + "/fw.tmp", flash + "/fw.json")


def _dir(flash, slot):
    if not slot:
        return None
    d = flash + "/fw/" + slot
    os.stat(d)  # (OSError: gone)
    return d


def select(flash):
    """At boot, before anything of the firmware is imported: the directory of
    the version to run (None: the cable's), its start counted. Never raises."""
    try:
        p = load(flash)
        if not p:
            return None
        try:
            d = _dir(flash, p["cur"])
        except OSError:
            d = False
        if d is False or not p.get("ok") and p.get("tries", 0) >= TRIES:
            # given up (or its files are gone): the previous version, known good
            p = {"cur": p.get("prev", ""), "v": p.get("pv", ""), "prev": "", "pv": "", "tries": 0, "ok": 1,
                 "failed": p.get("v", "")}
            save(flash, p)
            try:  # (the failed starts were the new version's: safe mode must not count them)
                os.remove(flash + "/bootfails")
            except OSError:
                pass
            try:
                return _dir(flash, p["cur"])
            except OSError:
                return None
        if not p.get("ok"):
            p["tries"] = p.get("tries", 0) + 1
            save(flash, p)
        return d
    except Exception as e:  # a broken flash: the cable's version
        print("pbslot:", repr(e))
        return None


def switch(flash, slot, version):
    """Make slot (complete and verified) the version of the next boot, tentative."""
    o = load(flash) or {"cur": "", "v": "", "ok": 1}
    if o.get("ok"):  # the running version came up: it is the way back
        prev, pv = o["cur"], o.get("v", "")
    else:  # it did not (yet): the way back stays the one before it
        prev, pv = o.get("prev", ""), o.get("pv", "")
    save(flash, {"cur": slot, "v": version, "prev": prev, "pv": pv, "tries": 0, "ok": 0})


def good(flash):
    """This start came up: a tentative version is kept. (tries 0: switched to
    but not started yet — the start that came up was the version before it.)"""
    p = load(flash)
    if p and not p.get("ok") and p.get("tries", 0):
        p["ok"] = 1
        p["tries"] = 0
        save(flash, p)
