"""get_dev_info and get_params (API.md §2–3), sys_info. Loaded on demand.

Objects are written as flat [key, value, key, value, ...] lists in the
order of the vendor's sample, and replies are streamed (generators of JSON
text): MicroPython dicts do not keep insertion order, and one whole
get_dev_info string would need one large block of heap.
"""
import json
import time

from pblib import reasons

from pbctl import devices



def dumps(v):
    return json.dumps(v, separators=(",", ":"))


def members(kv):
    """JSON members text of a flat key/value list."""
    out = []
    for i in range(0, len(kv), 2):
        out.append('"%s":%s' % (kv[i], dumps(kv[i + 1])))
    return ",".join(out)


def reason(code):
    """limit_reason text of a balancer reason code (-1: the EVSE waits for an RFID/PIN)."""
    return "waiting: rfid" if code < 0 else reasons.reason_text(code)


def info(dev, now):
    """The get_dev_info object of one device, in a few small pieces of JSON text
    (small blocks: the heap of a busy controller is fragmented)."""
    c = dev.cfg
    st = dev.stats
    yield "{" + members(["dev_type", dev.dev_type, "device_enabled", c["device_enabled"], "name", c["name"],
                         "address", c["address"], "id", c["id"], "dev_id", dev.dev_id, "number", c["number"]])
    yield "," + members(["desc", c["desc"], "com_err", st.err,
                         "com_err_secs", time.ticks_diff(now, st.last_err_ms) // 1000,
                         "com_errors", st.errors, "last_error", st.last_error, "is_evse", dev.is_evse,
                         "used_phases", c["used_phases"]])
    cur = dev.cur
    if dev.is_evse:
        yield "," + members(["label", c["label"], "min_charging_cur", c["min_charging_cur"],
                             "max_charging_cur", c["max_charging_cur"], "prio", c["prio"],
                             "charging_enabled", dev.limit > 0, "cur_charging_power", dev.power,
                             "total_energy", dev.energy if dev.rtu or dev.energy else dev.soft_wh])
        ph = 0  # phases in use, detected from a current > 1 A
        for i in range(3):
            if cur[i] > 1000:
                ph |= 1 << i
        yield "," + members(["phases", ph, "state", dev.state, "model", dev.model, "paused", dev.paused,
                             "pause_time", time.ticks_diff(now, dev.pause_ms) // 1000 if dev.paused else 0,
                             "pause_min_time", c["pause_min_time"]])
        # beyond the vendor's sample: what the web UI shows
        ov = 0  # INTEGRATIONS.md §1: bit 0 'C', bit 1 'E', bit 2 'U'; ov_cur only while a mamps cap holds
        for f in dev.ov_flags:
            ov |= 1 << "CEU".find(f)
        yield "," + members(["current_l1", cur[0], "current_l2", cur[1], "current_l3", cur[2],
                             "charging_cur", dev.limit, "limit_reason", reason(dev.reason), "user", dev.user,
                             "overrides", ov, "phase_mode", (dev.relay and 1 or 3) if dev.features & 0x100 else 0]
                            + (["ov_cur", dev.ov_mamps] if dev.ov_mamps else [])) + "}"
    else:
        v = dev.voltage
        yield "," + members(["is_va", c["is_va"], "invert", c["invert"], "import", dev.energy,
                             "export", dev.export, "power_w", dev.power, "power", dev.power])
        yield "," + members(["current_l1", cur[0], "current_l2", cur[1], "current_l3", cur[2],
                             "voltage_l1", v[0], "voltage_l2", v[1], "voltage_l3", v[2]])
        yield "," + members(["role", c["role"], "model", dev.model]) + "}"


def params(app):
    """The params object as pieces of JSON text (vendor's order, then ours)."""
    p = app.site.params
    ctl = app.control
    yield "{" + members(["title", p["title"], "desc", p["desc"], "max_total_current", p["max_total_current"],
                         "reserve_current", p["reserve_current"], "overdraft_cur", p["overdraft_cur"],
                         "max_total_evse_current", p["max_total_evse_current"]])
    yield "," + members(["cons_evse_power", ctl.cons_power,
                         "avail_evse_power", ctl.avail_power, "lb_enabled", p["lb_enabled"],
                         "disable_policy", p["disable_policy"], "cycle_time", p["cycle_time"],
                         "max_evses", app.max_evses, "shareware_mode", False, "version", app.VERSION])
    yield "," + members(["time", ctl.utc() + 946684800, "vsn", {"vendorid": 52997, "serialno": app.serial},
                         "ocpp_gateway_license_cnt", 0, "ocpp_gateway_licenses_used", 0])
    # beyond the vendor's sample: the balancer's own settings
    yield "," + members(["meter_timeout", p["meter_timeout"], "failsafe_current", p["failsafe_current"],
                         "rotation_time", p["rotation_time"], "http_timeout", p["http_timeout"],
                         "api_read_auth", p["api_read_auth"], "phase_switch_min_time", p["phase_switch_min_time"],
                         "max_phase_skew", p["max_phase_skew"], "modbus_tcp", p["modbus_tcp"],
                         "modbus_tcp_port", p["modbus_tcp_port"]])
    # the integrations' settings (a password never: only whether one is set)
    yield "," + members(["ocpp_url", p["ocpp_url"], "ocpp_password_set", p["ocpp_password"] != ""])
    yield "," + members(["mqtt_url", masked(p["mqtt_url"]), "mqtt_prefix", p["mqtt_prefix"],
                         "mqtt_ha_discovery", p["mqtt_ha_discovery"]])
    yield "," + members(["tz", p["tz"], "local_time", local_time(ctl)])


def local_time(ctl):
    """The controller's local time (param tz) as "YYYY-MM-DD HH:MM:SS"."""
    t = time.gmtime(ctl.local() + (0 if time.gmtime(0)[0] == 2000 else 946684800))
    return "%04d-%02d-%02d %02d:%02d:%02d" % t[:6]


def masked(url):
    """mqtt_url as replies show it: the password as `***` (INTEGRATIONS.md §3;
    set_params takes `***` back as "the stored one", params.mqtt_params)."""
    cred, at, hp = url.rpartition("@")
    i = cred.find(":", 7)  # after "mqtt://"
    return url if not at or i < 0 else cred[: i + 1] + "***@" + hp


async def get_dev_info(app, req):
    return _dev_info(app)


def _dev_info(app):
    now = time.ticks_ms()
    pieces = params(app)
    first = next(pieces)  # before the first yield: a failure here is still an error reply
    yield '{"params":' + first
    for piece in pieces:
        yield piece
    yield '},"devices":['
    sep = ""
    for d in app.site.devices:
        if sep:
            yield sep
        for piece in info(d, now):
            yield piece
        sep = ","
    yield "]}"


async def get_params(app, req):
    """params, the devices' configuration, dev_meta and max_total_evse_power in one object."""
    return _params(app)


def _params(app):
    for piece in params(app):
        yield piece
    lic = app.site.license  # API.md §7
    yield "," + members(["license_accepted", lic["accepted"], "allow_usage_stats", lic["allow_usage_stats"]])
    yield ',"max_total_evse_power":%d,"devices":[' % app.control.max_evse_power
    sep = ""
    for d in app.site.devices:
        yield sep + '{"dev_type":%s,"dev_id":%s' % (dumps(d.dev_type), dumps(d.dev_id))
        part = []
        for k in d.cfg:  # a few members at a time: small blocks
            if k == "fixed_rfid":
                continue  # an RFID: never in a reply (API.md §3)
            v = d.cfg[k]
            if k == "charging_rules" and v:  # a rule at a time (4 of them are 1 KB)
                if part:
                    yield "," + ",".join(part)
                    part = []
                rsep = ',"charging_rules":['
                for r in v:
                    yield rsep + dumps(r)
                    rsep = ","
                yield "]"
                continue
            part.append('"%s":%s' % (k, dumps(v)))
            if len(part) == 6:
                yield "," + ",".join(part)
                part = []
        yield "," + ",".join(part) + "}" if part else "}"
        sep = ","
    yield '],"dev_meta":' + dumps(devices.DEV_META) + "}"


async def sys_info(app, req):
    """Heap and uptime figures for benchmarks and support; `mem_free` is
    measured after a collection, with this module loaded."""
    import gc
    import sys

    gc.collect()
    r = {
        "mem_free": gc.mem_free(),
        "mem_alloc": gc.mem_alloc(),
        "uptime": time.ticks_diff(time.ticks_ms(), app.boot_ms) // 1000,
        "requests": app.server.requests,
        "cycles": app.control.cycles,
        "cycle_ms": app.control.cycle_ms,
        "control_oom": app.control.oom,
        "phase_switches": app.control.switches, "phase_switch_aborts": app.control.switch_aborts,
        # the HTTP server's refusals: slots full, slow heads dropped for others, shed for the heap reserve
        "http": {"refused": app.server.refused, "evicted": app.server.evicted, "shed": app.server.shed,
                 "timeouts": app.server.timeouts, "dropped": app.server.dropped},
        "modules": sorted(sys.modules),
        # the integrations running: each one's status (connected, last error, counters)
        "links": dict((k, v.status()) for k, v in app.links.items()),
        # the board's WiFi (board/wifi.py Net.status(): never a password); null without one
        "wifi": app.net.status() if app.net else None,
        "update": _update(app),
    }
    for k, v in app.link_errors.items():  # switched on, could not start (no heap)
        r["links"][k] = {"state": "failed", "last_error": v}
    return _object(r)


def _object(r):
    # a member at a time, a list an item at a time: the whole reply (1-2 KB
    # with the integrations on) would be one block, made three times over
    # (text, bytes, head), that a fragmented heap often lacks
    sep = "{"
    for k in r:
        v = r[k]
        if isinstance(v, list):
            head = sep + dumps(k) + ":["
            for x in v:
                yield head + dumps(x)
                head = ","
            yield head + "]" if head != "," else "]"
        else:
            yield sep + dumps(k) + ":" + dumps(v)
        sep = ","
    yield "}"


def _update(app):
    # the version running and the pointer's state (updates over HTTP, pbslot.py):
    # tentative until this start is marked good, previous: the way back, failed: given up
    try:  # (read here, not with pbslot.load: no module and no names more for a status line)
        with open(app.board.FLASH + "/fw.json") as f:
            p = json.load(f)
    except (OSError, ValueError):
        p = {}
    return {"version": p.get("v") or app.VERSION, "slot": p.get("cur", ""), "tentative": not p.get("ok", 1),
            "tries": p.get("tries", 0), "previous": p.get("pv") or ("factory" if p.get("cur") else ""),
            "failed": p.get("failed", "")}
