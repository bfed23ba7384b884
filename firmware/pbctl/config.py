"""The configuration in one place: its field table, loading at boot, validated
changes, saving (API.md §3, §6, §7, §8, §10). Loaded on demand (at boot and by
the commands that change the configuration), then dropped again.

Stored as one list file (store.py: atomic, previous copy kept; an item a
line, so that it is written and read a device at a time — the boot's peak of
heap is one device, not the whole file):

    [
    {"params": {...}, "admin": "salt$hash", "license": {...}},
    [dev_type, dev_id, {config}],
    ...
    ]

(Older files are one JSON object {"params", "devices", "users", "admin",
"license"}: still read, and written anew as above at the next change.)

The users (API.md §6) are a list file of their own: userlist.py. A backup's
restore: restore.py. Sizes are bounded (the tables below, userlist's) so that
every configuration the API accepts boots at the heap budget (API.md §10;
host_tests/e2e/test_limits.py: at 128k on the 64-bit host still open, see
BENCHMARKS.md "The largest configuration the API takes"):
**Decision** — at most 8 EVSEs (the board's MAX_EVSES) and 8 meters, 4 charging
rules per EVSE and per user (a rule's stored-but-inactive expr ≤ 32 and
input ≤ 16 characters), 8 user ids per EVSE, 32 users with 8 PINs/RFIDs and
8 EVSEs each.

A change is validated on copies (ConfigError says which field and the HTTP
status), saved (store.StoreError when the flash fails), and only then handed
to the control task as one `Change`, which it installs at its one point of
the cycle (control.Control.install): nothing here touches the site in force.

Field tables: one string per table, a line per field: "name type lo hi
default" (the default runs to the end of the line). Types: i integer (a JSON
number without fraction, not a boolean), b boolean, n 0/1 that also accepts a
boolean (device_enabled), s string (lo..hi = length), r charging rules (hi =
how many), u list of id strings (hi = how many). Strings, not tuples: a
loaded module's tuples and interned names cost RAM on the board.
"""
from pbctl import devices, store

MAX_METERS = 8

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
api_read_auth b 0 0 0
phase_switch_min_time i 0 86400 300
max_phase_skew i 0 1000000 0
modbus_tcp i 0 2 0
modbus_tcp_port i 1 65533 4701
ocpp_url s 0 128 
ocpp_password s 0 40 
mqtt_url s 0 128 
mqtt_prefix s 0 64 
mqtt_ha_discovery b 0 0 1
tz s 1 64 UTC0"""
# overdraft_cur is read-only and may only be reset to 0; failsafe_current -1 =
# each EVSE's minimum; meter_timeout, rotation_time, http_timeout in s;
# phase_switch_min_time s, max_phase_skew mA (0 = off; INTEGRATIONS.md §5).
# modbus_tcp: 0 off, 1 read-only, 2 reads and control writes (INTEGRATIONS.md
# §2); modbus_tcp_port: base port (base+1, base+2 also listen).
# ocpp_url: "" (off) or a ws:// / wss:// URL (pblib.ws.parse_url); ocpp_password:
# OCPP security profile 1 (HTTP Basic), never in a reply (INTEGRATIONS.md §4).
# mqtt_*: INTEGRATIONS.md §3, checked further by params.py.
# tz: a POSIX TZ string (INTEGRATIONS.md §6; pblib.tz), checked by params.py.

EVSE = """device_enabled n 0 1 1
name s 0 32 
address s 0 64 
id i 0 247 1
number i 0 1000 1
desc s 0 64 
used_phases i 0 7 0
label s 0 32 
min_charging_cur i 0 80000 6000
max_charging_cur i 0 80000 16000
prio i 0 100 1
pause_min_time i 0 86400 300
attach s 0 8 
battery_save_threshold i 0 80000 0
charging_rules r 0 4 
enable_snooze b 0 0 1
enable_wakeup b 0 0 1
fixed_rfid s 0 32 
group i 0 100 0
ocpp_gateway_client_id s 0 32 
phase_rotation i 0 5 0
soft_meter i 0 100000000 0
users u 0 8 
phase_switching i 0 1 0"""

# a meter's fields: every device's (EVSE's first lines, up to used_phases), then its own
# (derived, not a table of its own: a module's every global is an entry of its dict)
METER = EVSE[: EVSE.index("\nlabel ")] + """
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
expr s 0 32 
input s 0 16 
price_level i 0 100 0
solar i -80000 80000 0"""

class ConfigError(ValueError):
    """A refused change: the HTTP status and the message of the reply."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class Change:
    """A validated, saved configuration for the control task to install: the
    site's parts (devices: the whole new list, old Device objects reused), the
    new configuration dicts of devices that stay (cfgs: [(device, cfg)]), and a
    larger balancer when an EVSE was added (lb, made by the caller)."""

    def __init__(self, site):
        self.params = site.params
        self.devices = site.devices
        self.admin = site.admin
        self.license = site.license
        self.cfgs = ()
        self.lb = None

    def stored(self):
        """The stored items (the module docstring), one at a time; they
        reference the configuration dicts, so nothing big is copied."""
        yield {"params": self.params, "admin": self.admin, "license": self.license}
        for d in self.devices:
            c = d.cfg
            for x, new in self.cfgs:
                if x is d:
                    c = new
            yield [d.dev_type, d.dev_id, c]

    def evses(self):
        return len([d for d in self.devices if d.is_evse])


def table(dev_type):
    return EVSE if devices.is_evse(dev_type) else METER


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _fields(table):
    for line in table.split("\n"):
        name, t, lo, hi, d = line.split(" ", 4)
        yield name, t, int(lo), int(hi), d


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


def same_kind(site_devices, dev_type):
    # the configuration of a device of the same kind, if any: new
    # configurations reuse its key strings (defaults), and its rules' too
    global _rule_like
    for d in site_devices:
        if d.is_evse == devices.is_evse(dev_type):
            if _rule_like is None and d.cfg.get("charging_rules"):
                _rule_like = d.cfg["charging_rules"][0]
            return d.cfg
    return None


_rule_like = None  # a rule built before: new rules reuse its key strings


def _rules(v, name):
    # Every rule shares one set of key strings (a table's names are new
    # strings at each split: 11 of them cost a rule ~500 B), and dict() makes
    # a copy of just the room it needs (a dict built key by key has room for
    # twice its keys: 224 B instead of 384 B).
    global _rule_like
    out = []
    for r in v:
        r = dict(check(RULE, r, defaults(RULE, _rule_like), name))
        _rule_like = r
        out.append(r)
    return out


def text(name, v):
    """v as valid UTF-8 (API.md §10): MicroPython's json.loads makes every
    \\uXXXX escape three bytes, so a surrogate pair (an emoji) comes as six
    bytes of CESU-8 — joined here into its character — and a lone surrogate
    as invalid UTF-8: ConfigError naming the field (CPython: not encodable)."""
    try:
        b = v.encode()
    except UnicodeError:
        raise ConfigError("bad value: " + name)
    i = b.find(b"\xed")
    if i < 0:
        return v
    out = bytearray()
    j = 0
    while i >= 0:
        if i + 2 < len(b) and b[i + 1] >= 0xA0:  # a surrogate, U+D800..U+DFFF
            if not (b[i + 1] < 0xB0 and i + 5 < len(b) and b[i + 3] == 0xED and b[i + 4] >= 0xB0):
                raise ConfigError("bad value: " + name)
            hi = (b[i + 1] & 0x3F) << 6 | (b[i + 2] & 0x3F)
            c = 0x10000 + ((hi & 0x3FF) << 10) + (((b[i + 4] & 0x3F) << 6 | (b[i + 5] & 0x3F)) & 0x3FF)
            out += b[j:i]
            out += bytes((0xF0 | c >> 18, 0x80 | (c >> 12) & 0x3F, 0x80 | (c >> 6) & 0x3F, 0x80 | c & 0x3F))
            j = i + 6
        i = b.find(b"\xed", max(j, i + 1))
    out += b[j:]
    return str(out, "utf-8")


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
        if ok:
            v = text(name, v)
    elif isinstance(v, list) and len(v) <= hi:
        if t == "u":
            ok = True
            for x in v:
                ok = ok and isinstance(x, str) and 0 < len(x) <= 16
            v = [text(name, x) for x in v] if ok else v
        else:  # "r"
            return _rules(v, name)
    if not ok:
        raise ConfigError("bad value: " + name)
    return v


def check(table, obj, out, where="body"):
    """Validate the known fields of obj (unknown ones are ignored) into out."""
    if not isinstance(obj, dict):
        raise ConfigError("bad value: " + where)
    for name, t, lo, hi, d in _fields(table):
        if name in obj:
            out[name] = _value(name, t, obj[name], lo, hi)
    return out


# ---- boot ----------------------------------------------------------------------


def factory_devices():
    """The vendor's standard configuration: one Power Brain and its two S0 meters."""
    e = defaults(EVSE)
    e.update({"name": "Wallbox", "address": "evse", "id": 1, "desc": "cFos Power Brain Wallbox 11kW"})
    m1 = defaults(METER)
    m1.update({"name": "S0 Zähler 1", "address": "meter1", "id": 2, "desc": "cFos Power Brain, S0 Zähler 1"})
    m2 = defaults(METER, m1)
    m2.update({"name": "S0 Zähler 2", "address": "meter2", "id": 3, "number": 2,
               "desc": "cFos Power Brain, S0 Zähler 2"})
    return [("evse_powerbrain", "E1", e), ("meter_powerbrain", "M1", m1), ("meter_powerbrain", "M2", m2)]


def load(flash, now):
    """The site from the newest complete stored copy; anything invalid -> the
    factory configuration (the controller always comes up serving /cnf).
    The energy estimates (soft_meter) come from their own file (control.py)."""
    st = store.Store(flash)
    site = devices.Site(defaults(PARAMS), [], "", {"accepted": False, "allow_usage_stats": False})
    try:
        _read(st, flash, site, now)  # (its frame, and all it read, is gone when it fails)
    except Exception as e:  # a broken file, or one too large for the heap, must never stop the boot
        site.devices = site.params = None  # what was read goes first: the defaults must find room
        if st.loaded_from:
            print("pbctl: bad configuration in %s (%s), using defaults" % (st.loaded_from, type(e).__name__))
        site.params = defaults(PARAMS)
        site.admin = ""
        site.devices = [devices.new_device(t, i, c, now) for t, i, c in factory_devices()]
    # the energy file has the newest estimates: the control task saves it
    # whenever they change (its soft meters, cmd=soft_meter, a configuration
    # change that sets soft_meter); the configuration's are older (set down by
    # cmd=soft_meter, they must stay down)
    energy = store.Store(flash, "energy").load() or {}
    for d in site.devices:
        wh = energy.get(d.dev_id)
        if d.is_evse and is_int(wh) and wh >= 0:
            d.cfg["soft_meter"] = d.soft_wh = wh
    return site


def _read(st, flash, site, now):
    items = st.each()
    head = next(items, None)
    if head is None:  # no list file: an older file, one object
        head = st.load()
        if head is None:
            raise ValueError
        items = iter(head.pop("devices", ()))
        if head.get("users") and not store.exists(flash + "/users.json"):
            # the users to their own file (the next save drops them here)
            from pbctl import userlist

            store.Store(flash, "users").write((userlist.check_user(u) for u in head["users"]), True)
    if isinstance(head.get("admin"), str):
        site.admin = head["admin"]
    site.params = dict(check(PARAMS, head.get("params", {}), site.params))  # dict(): see _value
    x = head.get("license")
    if isinstance(x, dict):
        site.license.update(x)
    head = None
    for t, i, d in items:  # a device at a time
        if t in devices.DEV_META:
            c = dict(check(table(t), d, defaults(table(t), same_kind(site.devices, t))))  # dict(): see _value
            site.devices.append(devices.new_device(t, i, c, now))


def save(flash, change):
    store.Store(flash).write(change.stored(), True)


# ---- changes -------------------------------------------------------------------


def change_params(site, body, max_evses, budget=0):
    """set_params (API.md §3): the params of body and at most one device
    (max_evses: how many EVSEs the board allows; budget: its CONFIG_SIZE,
    cfgsize.py)."""
    if not isinstance(body, dict):
        raise ConfigError("bad json")
    ch = Change(site)
    ch.params = check(PARAMS, body, dict(site.params))
    if "ocpp_url" in body or "mqtt_url" in body or "mqtt_prefix" in body or "tz" in body:
        from pbctl import params

        params.check(ch.params, site.params, body)
    devs = body.get("devices")
    if devs is not None:
        if not isinstance(devs, list) or len(devs) > 1:
            raise ConfigError("bad value: devices")
        if devs:
            _device_change(site, ch, devs[0], max_evses)
            if budget:
                from pbctl import cfgsize

                cfgsize.check(cfgsize.total(ch.devices, ch.cfgs), site, budget)
    return ch


def _device_change(site, ch, obj, max_evses):
    if not isinstance(obj, dict):
        raise ConfigError("bad value: devices")
    import time

    dev_id = obj.get("dev_id")
    t = obj.get("dev_type")
    old = site.device(dev_id) if isinstance(dev_id, str) else None
    if old is not None:
        if t is not None and t != old.dev_type:
            raise ConfigError("bad value: dev_type")
        t = old.dev_type
        cfg = dict(old.cfg)
    else:
        if t is None and dev_id is not None:
            raise ConfigError("unknown device", 404)
        if t not in devices.DEV_META:
            raise ConfigError("bad value: dev_type")
        cfg = defaults(table(t), same_kind(site.devices, t))
        prefix = "E" if devices.is_evse(t) else "M"
        n = len([d for d in site.devices if d.dev_id[0] == prefix])
        if n >= (max_evses if prefix == "E" else MAX_METERS):
            raise ConfigError("too many devices")
        if dev_id is None:
            n = 1
            while site.device(prefix + str(n)) is not None:
                n += 1
            dev_id = prefix + str(n)
        elif (not isinstance(dev_id, str) or not 2 <= len(dev_id) <= 4 or dev_id[0] != prefix
              or not dev_id[1:].isdigit()):
            raise ConfigError("bad value: dev_id")
    check(table(t), obj, cfg)
    if t.endswith("_powerbrain"):
        if old is None and "address" not in obj:
            cfg["address"] = "rtu:%d" % cfg["id"]
        s = devices.slave_id(cfg["address"], cfg["id"])
        if s is None:
            raise ConfigError("bad value: address")
        cfg["id"] = s
    if devices.is_evse(t):
        if cfg["min_charging_cur"] > cfg["max_charging_cur"]:
            raise ConfigError("bad value: min_charging_cur")
        a = cfg["attach"]
        if a and (site.device(a) is None or site.device(a).is_evse):
            raise ConfigError("bad value: attach")
    cfg = dict(cfg)  # just the room it needs (see _value)
    if old is None:
        ch.devices = site.devices + [devices.new_device(t, dev_id, cfg, time.ticks_ms())]
    elif old.cfg["address"] != cfg["address"] or old.cfg["id"] != cfg["id"]:
        # another box: fresh runtime state
        new = devices.new_device(t, dev_id, cfg, time.ticks_ms())
        ch.devices = [new if d is old else d for d in site.devices]
    else:
        ch.cfgs = ((old, cfg),)


def delete_device(site, dev_id):
    """del_device (API.md §7): the device, and its references in attach and users."""
    d = site.device(dev_id)
    if d is None:
        raise ConfigError("unknown device", 404)
    ch = Change(site)
    ch.devices = [x for x in site.devices if x is not d]
    cfgs = []
    for x in ch.devices:
        if x.cfg.get("attach") == dev_id:
            c = dict(x.cfg)
            c["attach"] = ""
            cfgs.append((x, c))
    ch.cfgs = cfgs
    return ch
