"""Atomic JSON persistence on flash (API.md §10).

save(): write `<name>.tmp`, move the current file to `<name>.bak`, rename the
temp file into place. Every step is a rename (atomic on littlefs and POSIX),
so a power cut at any point leaves a complete old or new copy: load() tries
the main file, then the temp file (complete only if it parses; then it is
renamed into place), then the backup, then gives up (the caller falls back
to defaults).
"""
import json
import os


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _remove(p):
    try:
        os.remove(p)
    except OSError:
        pass


class Store:
    def __init__(self, directory, name="pbctl"):
        self.path = directory + "/" + name + ".json"
        self.tmp = directory + "/" + name + ".tmp"
        self.bak = directory + "/" + name + ".bak"
        self.loaded_from = None

    def load(self):
        """The newest complete copy as a dict, or None."""
        for p in (self.path, self.tmp, self.bak):
            try:
                with open(p) as f:
                    d = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(d, dict):
                if p == self.tmp:
                    # a save cut between its renames: finish it now, or the next
                    # save would overwrite the newest copy while writing its temp
                    # file (a cut then left only the backup: two saves back)
                    try:
                        os.rename(self.tmp, self.path)
                        p = self.path
                    except OSError:
                        pass
                self.loaded_from = p
                return d
        self.loaded_from = None
        return None

    def save(self, obj):
        with open(self.tmp, "w") as f:
            json.dump(obj, f)
        if _exists(self.path):
            _remove(self.bak)
            os.rename(self.path, self.bak)
        os.rename(self.tmp, self.path)
