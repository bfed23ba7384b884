"""The configuration's size budget (API.md §10: every configuration the API
accepts boots and works at the heap budget). Loaded on demand by what adds
to the devices' configuration (set_params, a restore).

**Decision** — besides the bounds of each field (config.py's tables), the
devices' configuration together is bounded by the board's CONFIG_SIZE: a
device counts the JSON text of its configuration (as stored: names, rules,
user ids, ...) plus what its objects cost beyond that text, in the same
units (an EVSE 650: runtime state, balancer slot, a session's rules; a meter
260). A change that makes the total larger than CONFIG_SIZE is 400
"configuration too large" and changes nothing; a change that does not make
it larger is always taken (a configuration loaded from an older version may
be larger, and can still be edited down). The budget is fixed per board, so
what the API takes does not depend on the heap at the moment of the request.

Measured on the 64-bit host (BENCHMARKS.md, RAM): a device costs ~2.4 heap
bytes per byte of its stored text plus ~1 KB (an EVSE) or ~0.6 KB (a meter),
and a controller keeps its sessions, get_users and set_user of the largest
users working with ~28 KB free after boot; the HOST board derives its budget
from the simulation's heap this way (tools/simrun.py config_size), a board
states its own.
"""
from micropython import const

_EVSE = const(650)
_METER = const(260)


def weight(v):
    """About the bytes of v's JSON text (none is made: a device's text is up
    to ~1.7 KB, one block of heap)."""
    if isinstance(v, str):
        return len(v) + 4
    if isinstance(v, dict):
        n = 2
        for k in v:
            n += len(k) + 4 + weight(v[k])
        return n
    if isinstance(v, list):
        n = 2
        for x in v:
            n += weight(x) + 2
        return n
    return 6


def device(is_evse, cfg):
    """What one device counts."""
    return weight(cfg) + (_EVSE if is_evse else _METER)


def total(devices, cfgs=()):
    """What a list of devices counts (cfgs: [(device, new cfg)], as config.Change)."""
    n = 0
    for d in devices:
        c = d.cfg
        for x, new in cfgs:
            if x is d:
                c = new
        n += device(d.is_evse, c)
    return n


def check(new, site, budget):
    """Raise ConfigError 400 "configuration too large" when the total new is
    past budget and larger than the site's now (budget 0: none)."""
    if budget and new > budget and new > total(site.devices):
        from pbctl.config import ConfigError

        raise ConfigError("configuration too large")
