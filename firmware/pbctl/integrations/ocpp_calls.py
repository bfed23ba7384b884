"""The central system's calls to the charge point and the charging-profile
arithmetic (README "OCPP 1.6J"). Loaded per call by integrations/ocpp.py and
dropped again: nothing here is resident.

Charging profiles are kept (ChargePoint.profiles, at most _MAX_PROFILES) as
tuples (see parse_profile):

    (id, stackLevel, purpose, connectorId, transactionId or -1, kind,
     start s or -1, duration s or 0, validFrom s or 0, validTo s or 0,
     periods: array of start s, limit mA, start s, limit mA, ...)

purpose 0 ChargePointMaxProfile, 1 TxDefaultProfile, 2 TxProfile; kind 0
Absolute, 1 Recurring Daily, 2 Recurring Weekly, 3 Relative (from the
transaction's start; a ChargePointMaxProfile's: from when it was set).
Limits in W become mA at 230 V per phase on numberPhases (default 3) phases:
mA = W * 1000 // (230 * phases); limits in A become mA (rounded down to 1 mA).
Integer arithmetic from there on.

In force at time t (evaluate):
- the site cap: the ChargePointMaxProfile with the highest stackLevel that is
  active at t (valid, started, not past its duration);
- a connector's cap: with a transaction, the TxProfile for it (transactionId
  equal, or none given) with the highest stackLevel active; else (and
  without a transaction) the TxDefaultProfile of the connector, else the one of
  connector 0, highest stackLevel first.
A limit of 0 disables charging at the connector (enable(dev, 2, False)); the
site cap 0 pauses every EVSE. The control task then applies them like
max_total_evse_current and the integrations' caps: the tightest wins, the fuse
(max_total_current) always holds.
"""
from array import array

from pblib.ocppj import OcppError, check

from pbctl.integrations import ocpp as cp_mod

_MAX_PROFILES = 8
_MAX_PERIODS = 24
_PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")
_KINDS = ("Absolute", "Daily", "Weekly", "Relative")
_CONFIG = ("HeartbeatInterval", "MeterValueSampleInterval", "MeterValuesSampledData", "NumberOfConnectors",
           "SupportedFeatureProfiles", "AuthorizeRemoteTxRequests")
_MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Current.Offered")
_FOREVER = 1 << 62


# ---- time ------------------------------------------------------------------------


def days(y, m, d):
    """Days from 1970-01-01 to y-m-d (proleptic Gregorian)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_time(s):
    """An OCPP dateTime ("2026-12-06T20:33:29Z", fractions, "+01:00") -> s since 1970."""
    b = s.encode()
    try:
        t = (days(int(b[0:4]), int(b[5:7]), int(b[8:10])) * 86400 + int(b[11:13]) * 3600 + int(b[14:16]) * 60
             + int(b[17:19]))
    except ValueError:
        raise OcppError("TypeConstraintViolation", "bad dateTime")
    i = 19
    if i < len(b) and b[i] == 46:  # "."
        i += 1
        while i < len(b) and 48 <= b[i] <= 57:
            i += 1
    if i < len(b) and b[i] in b"+-":
        try:
            off = int(b[i + 1:i + 3]) * 3600 + int(b[i + 4:i + 6]) * 60
        except ValueError:
            raise OcppError("TypeConstraintViolation", "bad dateTime")
        t -= off if b[i] == 43 else -off
    return t


# ---- profiles --------------------------------------------------------------------


def to_ma(limit, unit_w, phases):
    """A schedule's limit (A or W, a JSON number) -> mA per phase."""
    if unit_w:
        return int(limit) * 1000 // (230 * phases)
    return int(limit * 1000)


def parse_profile(conn, p, now, txid=-1):
    """csChargingProfiles -> the tuple kept (module docstring); OcppError if malformed."""
    check(p, "chargingProfileId=i stackLevel=i0: chargingProfilePurpose=eChargePointMaxProfile/TxDefaultProfile/"
             "TxProfile chargingProfileKind=eAbsolute/Recurring/Relative recurrencyKind?=eDaily/Weekly "
             "transactionId?=i validFrom?=t validTo?=t chargingSchedule=o")
    s = check(p["chargingSchedule"], "duration?=i0: startSchedule?=t chargingRateUnit=eA/W "
                                     "chargingSchedulePeriod=a%d minChargingRate?=d" % _MAX_PERIODS)
    purpose = _PURPOSES.index(p["chargingProfilePurpose"])
    kind = p["chargingProfileKind"]
    if kind == "Recurring":
        kind = 1 if p.get("recurrencyKind") != "Weekly" else 2
        if "recurrencyKind" not in p:
            raise OcppError("OccurenceConstraintViolation", "recurrencyKind: missing")
    else:
        kind = 0 if kind == "Absolute" else 3
    start = parse_time(s["startSchedule"]) if "startSchedule" in s else -1
    if (kind == 1 or kind == 2) and start < 0:
        raise OcppError("OccurenceConstraintViolation", "startSchedule: missing")
    if kind == 0 and start < 0:
        start = now
    if kind == 3:
        start = now if purpose == 0 else -1  # a site profile: relative to when it was set
    unit_w = s["chargingRateUnit"] == "W"
    per = s["chargingSchedulePeriod"]
    if not per:
        raise OcppError("OccurenceConstraintViolation", "chargingSchedulePeriod: empty")
    a = array("i")
    last = -1
    for x in per:
        check(x, "startPeriod=i0: limit=d numberPhases?=i1:3")
        if x["startPeriod"] <= last or (last < 0 and x["startPeriod"] != 0):
            raise OcppError("PropertyConstraintViolation", "startPeriod: not ascending from 0")
        if x["limit"] < 0:
            raise OcppError("PropertyConstraintViolation", "limit: negative")
        last = x["startPeriod"]
        a.append(last)
        a.append(to_ma(x["limit"], unit_w, x.get("numberPhases", 3)))
    t = p.get("transactionId", txid)
    return (p["chargingProfileId"], p["stackLevel"], purpose, conn, t, kind, start, s.get("duration", 0),
            parse_time(p["validFrom"]) if "validFrom" in p else 0,
            parse_time(p["validTo"]) if "validTo" in p else 0, a)


def limit_at(pr, t, tx_start):
    """(mA, next change s) of profile pr at time t; mA -1 while it is not active.
    tx_start: the start of the connector's transaction (Relative), -1 none."""
    vf, vt = pr[8], pr[9]
    if vf and t < vf:
        return -1, vf
    if vt and t >= vt:
        return -1, _FOREVER
    kind = pr[5]
    base = pr[6]
    if kind == 3 and pr[2] != 0:
        base = tx_start
    if base < 0:
        return -1, _FOREVER
    nxt = _FOREVER
    if kind == 1 or kind == 2:
        per = 86400 if kind == 1 else 604800
        if t >= base:
            base = t - (t - base) % per
        nxt = base + per
    off = t - base
    if off < 0:
        return -1, base
    dur = pr[7]
    if dur and off >= dur:
        return -1, nxt
    a = pr[10]
    v = -1
    for k in range(0, len(a), 2):
        if a[k] <= off:
            v = a[k + 1]
        else:
            nxt = min(nxt, base + a[k])
            break
    if dur:
        nxt = min(nxt, base + dur)
    if vt:
        nxt = min(nxt, vt)
    return v, nxt


def composite(profiles, conn, t, tx, tx_start):
    """(site cap, connector conn's cap, next change) at time t; caps in mA, -1
    none. tx: the connector's transactionId (0 known none yet, -1 no transaction)."""
    site = cap = -1
    best = [-1, -1, -1, -1]  # stackLevel in force: site, TxProfile, TxDefault of conn, TxDefault of 0
    val = [-1, -1, -1, -1]
    nxt = _FOREVER
    for pr in profiles:
        purpose, c = pr[2], pr[3]
        if purpose == 0:
            k = 0
        elif purpose == 2:
            if c != conn or tx < 0 or (pr[4] >= 0 and pr[4] != tx):
                continue
            k = 1
        else:
            if c != conn and c != 0:
                continue
            k = 2 if c == conn else 3
        v, n = limit_at(pr, t, tx_start)
        nxt = min(nxt, n)
        if v >= 0 and pr[1] > best[k]:
            best[k] = pr[1]
            val[k] = v
    site = val[0]
    cap = val[1] if val[1] >= 0 else val[2] if val[2] >= 0 else val[3]
    return site, cap, nxt


def evaluate(cp, now):
    """The profiles' caps for now into cp (ocpp.py's tick hands them to the control task)."""
    nxt = _FOREVER
    site = -1
    for i in range(len(cp.pcap)):
        tx = cp.txid(i) if cp.tx[i] > 0 else -1
        s, c, n = composite(cp.profiles, i + 1, now, tx, cp.txt[i] if cp.tx[i] else -1)
        cp.pcap[i] = c
        f = cp.flags[i]
        cp.flags[i] = f | 4 if c == 0 else f & ~4  # ocpp._F_ZERO
        site = s
        nxt = min(nxt, n)
    cp.psite = site
    cp.due = nxt if nxt < _FOREVER else now + 3600
    # profiles past their validTo go
    cp.profiles = [p for p in cp.profiles if not p[9] or p[9] > now]


# ---- the calls ---------------------------------------------------------------------


async def handle(cp, action, p):
    f = _CALLS.get(action)
    if f is None:
        raise OcppError("NotSupported", action[:40])
    return await f(cp, p)


def _connector(cp, p, key="connectorId", zero=False):
    c = p.get(key)
    if type(c) is not int or c < (0 if zero else 1) or c > len(cp.evses()):
        raise OcppError("PropertyConstraintViolation", key + ": no such connector")
    return c


async def _apply(cp):
    """Profiles changed: evaluate now, hand the control task the result and
    wait until it is on the wire (the reply follows the write)."""
    evaluate(cp, cp_mod.now_s())
    cp.tick()
    await cp.app.control.settle(cp.seq, 3000)


async def remote_start(cp, p):
    check(p, "idTag=s20 connectorId?=i chargingProfile?=o")
    ev = cp.evses()
    if "connectorId" in p:
        i = _connector(cp, p) - 1
    else:  # the connector with a car and no transaction, else the first without one
        i = -1
        for k in range(len(ev)):
            if not cp.tx[k] and (i < 0 or ev[k].state in (2, 3, 4) and ev[i].state not in (2, 3, 4)):
                i = k
        if i < 0:
            return {"status": "Rejected"}
    if cp.tx[i] or cp.flags[i] & 2 or ev[i].state in (5, 6):  # busy, Inoperative, faulted, offline
        return {"status": "Rejected"}
    if "chargingProfile" in p:
        pr = parse_profile(i + 1, p["chargingProfile"], cp_mod.now_s())
        if pr[2] != 2:
            return {"status": "Rejected"}
        _put(cp, pr)
    cp.tag[i] = p["idTag"]
    cp.flags[i] &= ~1  # (a remote stop before: charging again)
    if cp.artr:
        cp.flags[i] |= 16  # ocpp._F_AUTH: the link task asks Authorize first
    else:
        cp.app.control.authorize(ev[i].dev_id, "ocpp")
    cp.due = 0
    cp._wake.set()
    return {"status": "Accepted"}


async def remote_stop(cp, p):
    check(p, "transactionId=i")
    i = cp.tx_of(p["transactionId"])
    if i < 0:
        return {"status": "Rejected"}
    cp.flags[i] |= 1  # ocpp._F_STOP: the local task stops it (reason Remote), charging off until unplugged
    cp.tick()
    await cp.app.control.settle(cp.seq, 3000)
    return {"status": "Accepted"}


def _put(cp, pr):
    out = []
    for x in cp.profiles:
        # the same id, or the same stackLevel and purpose (and connector), is replaced
        if x[0] == pr[0] or (x[1] == pr[1] and x[2] == pr[2] and x[3] == pr[3]):
            continue
        out.append(x)
    if len(out) >= _MAX_PROFILES:
        return False
    out.append(pr)
    cp.profiles = out
    cp.due = 0
    return True


async def set_profile(cp, p):
    check(p, "connectorId=i csChargingProfiles=o")
    conn = _connector(cp, p, zero=True)
    pr = parse_profile(conn, p["csChargingProfiles"], cp_mod.now_s())
    if (pr[2] == 0) != (conn == 0):
        return {"status": "Rejected"}  # ChargePointMaxProfile on connector 0 only, the others not there
    if pr[2] == 2:
        tx = cp.txid(conn - 1) if cp.tx[conn - 1] > 0 else -1
        if tx < 0 or (pr[4] >= 0 and pr[4] != tx):
            return {"status": "Rejected"}  # a TxProfile needs its transaction
    if not _put(cp, pr):
        return {"status": "Rejected"}
    await _apply(cp)
    return {"status": "Accepted"}


async def clear_profile(cp, p):
    check(p, "id?=i connectorId?=i0: chargingProfilePurpose?=eChargePointMaxProfile/TxDefaultProfile/TxProfile "
             "stackLevel?=i0:")
    pu = _PURPOSES.index(p["chargingProfilePurpose"]) if "chargingProfilePurpose" in p else -1
    keep = []
    for x in cp.profiles:
        if "id" in p:
            gone = x[0] == p["id"]
        else:
            gone = (("connectorId" not in p or x[3] == p["connectorId"]) and (pu < 0 or x[2] == pu)
                    and ("stackLevel" not in p or x[1] == p["stackLevel"]))
        if not gone:
            keep.append(x)
    if len(keep) == len(cp.profiles):
        return {"status": "Unknown"}
    cp.profiles = keep
    cp.due = 0
    if not keep:
        for i in range(len(cp.pcap)):
            cp.pcap[i] = -1
            cp.flags[i] &= ~4
        cp.psite = -1
        cp.tick()
        await cp.app.control.settle(cp.seq, 3000)
    else:
        await _apply(cp)
    return {"status": "Accepted"}


async def composite_schedule(cp, p):
    check(p, "connectorId=i0: duration=i0:86400 chargingRateUnit?=eA/W")
    conn = _connector(cp, p, zero=True)
    t0 = cp_mod.now_s()
    end = t0 + p["duration"]
    # where no profile limits: the site's fuse (connector 0) or the EVSE's maximum
    fb = cp.app.site.params["max_total_current"] if conn == 0 else cp.evses()[conn - 1].cfg["max_charging_cur"]
    per = []
    t = t0
    last = -2
    i = max(conn - 1, 0)
    while t < end and len(per) < _MAX_PERIODS:
        s, c, n = composite(cp.profiles, conn, t, cp.txid(i) if cp.tx[i] > 0 else -1,
                            cp.txt[i] if cp.tx[i] else -1)
        v = fb
        for x in (s, c if conn else -1):
            if 0 <= x < v:
                v = x
        if v != last:
            per.append({"startPeriod": t - t0, "limit": v // 100 / 10})
            last = v
        t = n
    return {"status": "Accepted", "connectorId": conn, "scheduleStart": cp_mod.iso(t0),
            "chargingSchedule": {"duration": p["duration"], "chargingRateUnit": "A",
                                 "chargingSchedulePeriod": per}}


def _value(cp, k):
    if k == "HeartbeatInterval":
        return str(cp.hb_s)
    if k == "MeterValueSampleInterval":
        return str(cp.mv_s)
    if k == "MeterValuesSampledData":
        return cp.sampled
    if k == "NumberOfConnectors":
        return str(len(cp.evses()))
    if k == "SupportedFeatureProfiles":
        return "Core,SmartCharging,RemoteTrigger"
    return "true" if cp.artr else "false"


async def get_config(cp, p):
    check(p, "key?=a32")
    keys = p.get("key") or _CONFIG
    known = []
    unknown = []
    for k in keys:
        if type(k) is not str:
            raise OcppError("TypeConstraintViolation", "key: invalid")
        if k in _CONFIG:
            known.append({"key": k, "readonly": k in ("NumberOfConnectors", "SupportedFeatureProfiles"),
                          "value": _value(cp, k)})
        else:
            unknown.append(k[:50])
    r = {"configurationKey": known}
    if unknown:
        r["unknownKey"] = unknown
    return r


async def change_config(cp, p):
    check(p, "key=s50 value=s500")
    k, v = p["key"], p["value"]
    if k not in _CONFIG:
        return {"status": "NotSupported"}
    if k in ("NumberOfConnectors", "SupportedFeatureProfiles"):
        return {"status": "Rejected"}
    if k == "AuthorizeRemoteTxRequests":
        if v.lower() not in ("true", "false"):
            return {"status": "Rejected"}
        cp.artr = v.lower() == "true"
    elif k == "MeterValuesSampledData":
        m = [x.strip() for x in v.split(",")]
        for x in m:
            if x not in _MEASURANDS:
                return {"status": "Rejected"}
        cp.sampled = ",".join(m)
    else:
        if not v.isdigit() or len(v) > 6:
            return {"status": "Rejected"}
        if k == "HeartbeatInterval":
            if int(v) < 1:
                return {"status": "Rejected"}
            cp.hb_s = int(v)
        else:
            cp.mv_s = int(v)
    cp._wake.set()
    return {"status": "Accepted"}


async def change_availability(cp, p):
    check(p, "connectorId=i0: type=eInoperative/Operative")
    conn = _connector(cp, p, zero=True)
    inop = p["type"] == "Inoperative"
    st = "Accepted"
    for i in range(len(cp.evses())):
        if conn and i != conn - 1:
            continue
        f = cp.flags[i] & ~(2 | 32)
        if inop:
            if cp.tx[i]:
                f |= 32  # ocpp._F_INOP_LATER
                st = "Scheduled"
            else:
                f |= 2
        cp.flags[i] = f
    cp.tick()
    cp._wake.set()
    return {"status": st}


async def trigger(cp, p):
    check(p, "requestedMessage=eBootNotification/DiagnosticsStatusNotification/FirmwareStatusNotification/"
             "Heartbeat/MeterValues/StatusNotification connectorId?=i")
    m = p["requestedMessage"]
    if "connectorId" in p:
        _connector(cp, p)
    if m == "BootNotification":
        cp.trig |= 1
    elif m == "Heartbeat":
        cp.trig |= 2
    elif m == "StatusNotification":
        c = p.get("connectorId")
        for i in range(len(cp.sent)):
            if c is None or i == c - 1:
                cp.sent[i] = 255
    elif m == "MeterValues":
        cp.trig |= 8
    else:
        return {"status": "NotImplemented"}
    cp._wake.set()
    return {"status": "Accepted"}


async def reset(cp, p):
    check(p, "type=eHard/Soft")
    cp.reset = p["type"]
    cp._wake.set()
    return {"status": "Accepted"}


_CALLS = {
    "RemoteStartTransaction": remote_start,
    "RemoteStopTransaction": remote_stop,
    "SetChargingProfile": set_profile,
    "ClearChargingProfile": clear_profile,
    "GetCompositeSchedule": composite_schedule,
    "GetConfiguration": get_config,
    "ChangeConfiguration": change_config,
    "ChangeAvailability": change_availability,
    "TriggerMessage": trigger,
    "Reset": reset,
}
