"""Configuration fields, their JSON types, ranges and defaults (API.md §2–3, §6, §8).

A table is one string, a line per field: "name type lo hi default" (the
default runs to the end of the line). Types: i integer (a JSON number
without fraction, not a boolean), b boolean, n 0/1 that also accepts a
boolean (device_enabled), s string (lo..hi = length), r charging rules
(hi = how many), u list of id strings (hi = how many).
One string per table instead of tuples: a loaded module's tuples and
interned names cost RAM on a board without PSRAM; this module is only
loaded while a configuration is read or changed.

`check(table, obj, out)` validates the known fields of obj into out and
raises SchemaError naming the first bad one; callers validate into a copy.
"""


class SchemaError(ValueError):
    pass


PARAMS = """title s 0 64 cFos Power Brain
desc s 0 128 Standard-Konfiguration
max_total_current i 0 1000000 32000
reserve_current i 0 1000000 0
overdraft_cur i 0 0 0
max_total_evse_current i 0 1000000 0
lb_enabled b 0 0 1
disable_policy i -1 1 1
cycle_time i 250 60000 1000
meter_timeout i 1 3600 10
failsafe_current i -1 80000 -1
rotation_time i 60 86400 900
http_timeout i 1 3600 30
api_read_auth b 0 0 0"""
# overdraft_cur is read-only and may only be reset to 0; failsafe_current -1 =
# each EVSE's minimum; meter_timeout, rotation_time, http_timeout in s.

_DEVICE = """device_enabled n 0 1 1
name s 0 32 
address s 0 64 
id i 0 247 1
number i 0 1000 1
desc s 0 64 
used_phases i 0 7 0"""

EVSE = _DEVICE + """
label s 0 32 
min_charging_cur i 0 80000 6000
max_charging_cur i 0 80000 16000
prio i 0 100 1
pause_min_time i 0 86400 300
attach s 0 8 
battery_save_threshold i 0 80000 0
charging_rules r 0 8 
enable_snooze b 0 0 1
enable_wakeup b 0 0 1
fixed_rfid s 0 32 
group i 0 100 0
ocpp_gateway_client_id s 0 32 
phase_rotation i 0 5 0
soft_meter i 0 100000000 0
users u 0 32 """

METER = _DEVICE + """
is_va b 0 0 0
invert b 0 0 0
role i 0 5 0"""

RULE = """days i 0 127 127
mode i 0 5 0
current i -80000 80000 0
enabled b 0 0 1
udur i 0 86400 0
time i 0 1439 0
dur i 0 1440 0
expr s 0 64 
input s 0 32 
price_level i 0 100 0
solar i -80000 80000 0"""

USER = """id s 1 16 
name s 0 32 
display b 0 0 1
dev_ids u 0 32 
charging_rules r 0 8 """

RFID = """id s 1 20 
name s 0 32 
ac_auth b 0 0 1
ac_ovch b 0 0 0
used_phases i 0 7 0"""


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _fields(table):
    for line in table.split("\n"):
        name, t, lo, hi, d = line.split(" ", 4)
        yield name, t, int(lo), int(hi), d


def like(app, dev_type):
    """The configuration of a configured device of the same kind, if any: new
    configurations reuse its key strings (defaults)."""
    for d in app.devices:
        if d.is_evse == (dev_type[:5] == "evse_"):
            return d.cfg
    return None


def defaults(table, like=None):
    """A dict of the table's defaults. like: another dict of the same table,
    whose key objects are reused — every device's configuration then shares
    one set of key strings (each new str would cost heap per device)."""
    out = {}
    if like:
        for k in like:
            out[k] = None
    for name, t, lo, hi, d in _fields(table):
        if t in "in":
            out[name] = int(d)
        elif t == "b":
            out[name] = d == "1"
        elif t == "s":
            out[name] = d
        else:
            out[name] = []
    return out


def _value(name, t, v, lo, hi):
    ok = False
    if t == "i":
        ok = is_int(v) and lo <= v <= hi
    elif t == "n":
        if isinstance(v, bool):
            v = int(v)
        ok = v in (0, 1) and is_int(v)
    elif t == "b":
        ok = isinstance(v, bool)
    elif t == "s":
        ok = isinstance(v, str) and lo <= len(v) <= hi
    elif isinstance(v, list) and len(v) <= hi:
        if t == "u":
            ok = True
            for x in v:
                ok = ok and isinstance(x, str) and 0 < len(x) <= 16
            v = list(v)
        else:  # "r"
            return [check(RULE, r, defaults(RULE), name) for r in v]
    if not ok:
        raise SchemaError("bad value: " + name)
    return v


def check(table, obj, out, where="body"):
    """Validate the known fields of obj (unknown ones are ignored) into out."""
    if not isinstance(obj, dict):
        raise SchemaError("bad value: " + where)
    for name, t, lo, hi, d in _fields(table):
        if name in obj:
            out[name] = _value(name, t, obj[name], lo, hi)
    return out
