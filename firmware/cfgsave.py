"""Saving the configuration: one snapshot of everything, written atomically
(store.py). The stored file is {"params", "devices": [[dev_type, dev_id,
{config}], ...], "users", "admin", "license"}; the device entries reference
the live config dicts, so a save copies nothing big. Loaded on demand.
"""
import store
from httpd import HTTPError


def entry(d):
    return [d.dev_type, d.dev_id, d.cfg]


def snapshot(app):
    return {
        "params": app.params,
        "devices": [entry(d) for d in app.devices],
        "users": app.users,
        "admin": app.admin_secret,
        "license": app.license,
    }


def save(app, snap=None):
    try:
        store.Store(app.board.FLASH).save(snap or snapshot(app))
    except OSError:
        raise HTTPError(507, "flash write failed")
    if app.control:
        app.control.kick()
