"""Restore of a backup (api/backup.py, cmd=set_config; README "Backup"):
validated whole before anything changes. Loaded on demand, apart from
config.py (whose field tables and checks it uses), so that config.py's
globals stay one small dict for every configuration change."""
from pbctl import cfgsize, devices, userlist
from pbctl.config import MAX_METERS, PARAMS, Change, ConfigError, check, defaults, same_kind, table
from pbctl.params import mqtt_params, mqtt_url, ocpp_url, tz_param


def restore(site, items, max_evses, commit=False, budget=0):
    """A backup (api/backup.py: its items one at a time — the head, then a
    {"device": {...}} a device, then a {"user": {...}} a user) validated
    completely: ConfigError naming the field, nothing kept. commit: also build
    the Change and return it with
    the users' count; without, nothing but a few ids stays in RAM. Secrets
    masked in the backup ("***", api/backup.py) keep this controller's.
    A device that is the same box as one configured now (dev_id, dev_type,
    address and slave id) keeps its object and runtime state (a car charging
    there keeps its session), as set_params does; any other starts fresh."""
    import time

    head = next(items, None)
    if not isinstance(head, dict) or head.get("pbctl_config") != 1:
        raise ConfigError("bad value: pbctl_config")
    ch = Change(site)
    ch.params = params = check(PARAMS, head.get("params"), defaults(PARAMS), "params")
    if params["ocpp_password"] == "***":
        params["ocpp_password"] = site.params["ocpp_password"]
    if params["ocpp_url"]:
        ocpp_url(params["ocpp_url"])
    try:
        mqtt_params(params, site.params)
    except ConfigError:
        try:
            u, p, h, port = mqtt_url(params["mqtt_url"])
        except ValueError:
            p = None
        if p != "***":
            raise
        params["mqtt_url"] = "mqtt://%s@%s:%d" % (u, h, port)  # a password this controller does not know
        mqtt_params(params, site.params)
    tz_param(params["tz"])
    a = head.get("admin")
    if not isinstance(a, str) or len(a) > 128 or a and a.count("$") != 1:
        raise ConfigError("bad value: admin")
    for c in a:  # "salt$hash", both hex (api/auth.py make_secret)
        if c not in "0123456789abcdef$":
            raise ConfigError("bad value: admin")
    ch.admin = a
    lic = head.get("license")
    if not isinstance(lic, dict) or not isinstance(lic.get("accepted"), bool) or not isinstance(
            lic.get("allow_usage_stats"), bool):
        raise ConfigError("bad value: license")
    ch.license = {"accepted": lic["accepted"], "allow_usage_stats": lic["allow_usage_stats"]}
    head = None
    ids = []  # dev_ids, meters' with a "*"
    attach = []
    devs = []
    cfgs = []
    nusers = 0
    size = 0
    uids = []
    rfids = []  # (the RFIDs of every user: 32 x 8 short strings at most)
    for x in items:
        if not isinstance(x, dict) or len(x) != 1:
            raise ConfigError("bad value: item")
        obj = x.get("device")
        if obj is not None:
            if nusers:
                raise ConfigError("bad value: device")
            d = _restored_device(obj, ids, attach, max_evses, devs)
            if budget:  # (the board's CONFIG_SIZE: cfgsize.py)
                size += cfgsize.device(devices.is_evse(d[0]), d[2])
            if commit:
                x = site.device(d[1])
                if x is not None and x.dev_type == d[0] and x.cfg.get("address") == d[2].get(
                        "address") and x.cfg.get("id") == d[2].get("id"):
                    cfgs.append((x, d[2]))  # the same box: its object and runtime state stay (as set_params)
                    devs.append(x)
                else:
                    devs.append(devices.new_device(d[0], d[1], d[2], time.ticks_ms()))
            continue
        obj = x.get("user")
        if obj is None:
            raise ConfigError("bad value: item")
        u = userlist.check_user(obj)
        if u["id"] in uids:
            raise ConfigError("bad value: id")
        uids.append(u["id"])
        for r in u["rfids"]:
            if r["id"] in rfids:
                raise ConfigError("rfid in use")
        for r in u["rfids"]:
            rfids.append(r["id"])
        nusers += 1
        if nusers > userlist.MAX_USERS:
            raise ConfigError("too many users")
    for a in attach:
        if "*" + a not in ids:
            raise ConfigError("bad value: attach")
    cfgsize.check(size, site, budget)
    if commit:
        ch.devices = devs
        ch.cfgs = cfgs
        return ch, nusers
    return None


def _restored_device(obj, ids, attach, max_evses, like_cfgs):
    t = obj.get("dev_type") if isinstance(obj, dict) else None
    if t not in devices.DEV_META:
        raise ConfigError("bad value: dev_type")
    prefix = "E" if devices.is_evse(t) else "M"
    i = obj.get("dev_id")
    if (not isinstance(i, str) or not 2 <= len(i) <= 4 or i[0] != prefix or not i[1:].isdigit()
            or i in ids or "*" + i in ids):
        raise ConfigError("bad value: dev_id")
    n = len([x for x in ids if x[0] == prefix])
    if n >= (max_evses if prefix == "E" else MAX_METERS):
        raise ConfigError("too many devices")
    ids.append(i if prefix == "E" else "*" + i)
    cfg = check(table(t), obj, defaults(table(t), same_kind(like_cfgs, t)))
    if t.endswith("_powerbrain"):
        s = devices.slave_id(cfg["address"], cfg["id"])
        if s is None:
            raise ConfigError("bad value: address")
        cfg["id"] = s
    if prefix == "E":
        if cfg["min_charging_cur"] > cfg["max_charging_cur"]:
            raise ConfigError("bad value: min_charging_cur")
        if cfg["attach"]:
            attach.append(cfg["attach"])
    return t, i, dict(cfg)


def restore_users(items):
    """The users of a validated backup's items, for the users' file (store.Store.write)."""
    for x in items:
        u = x.get("user") if isinstance(x, dict) else None
        if u is not None:
            yield userlist.check_user(u)
