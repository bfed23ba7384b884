"""The device model: the site (configuration in force, devices, users) and
each device's runtime state and polling.

Kinds (dev_type → display name in `dev_meta`):
- evse_powerbrain: Power Brain wallbox on the RS-485 bus (address "evse" =
  slave 1, or "rtu:<id>"), polled every cycle.
- meter_powerbrain: a Power Brain S0 meter ("meter1" = slave 2, "meter2" =
  slave 3, or "rtu:<id>").
- evse_http / meter_http: values pushed by `set_ajax_evse` / `set_ajax_meter`
  (Device.http_update, applied by the control task).

Who changes what: the control task (control.py) is the only writer of the
site and of every device's state — it installs configuration changes,
applies readings and requests at one point of its cycle, polls and decides.
Everyone else (the API, the integrations) only reads.

Communication statistics are an `rtu.Stats` per device: for bus devices the
master's own record for that slave id (attached by the control task when it
installs the device), for HTTP devices one of their own.
`model` is "name,device version,product version,serial" read once from the
common block, e.g. "cFos Power Brain,1.1,1.0.0,fcf5-c46d-310c" (8016s, 8003
as major.minor, 8004/8005 as major.minor.build, 8008s).
"""
from micropython import const

from pblib import rtu

DEV_META = {
    "evse_powerbrain": "cFos Power Brain",
    "evse_http": "HTTP Input EVSE",
    "meter_powerbrain": "cFos Power Brain S0 meter",
    "meter_http": "HTTP Input meter",
}
_NAMED = {"evse": 1, "meter1": 2, "meter2": 3}

# Power Brain registers (REGISTERS.md)
_COMMON = const(8000)  # 32 registers: vendor .. name
_VOLTAGE = const(8045)
_FLAGS = const(8057)  # flags (first poll only), then energy q, power d, current_l1..l3 d
_ENERGY = const(8058)  # energy q, power d, current_l1..l3 d: 12 registers
_METER_TYPE = const(8112)  # meter_type, features (EVSEs, first poll only)
_CP_STATE = const(8092)  # cp_state, charging_cur_limit, charging_enable
_RELAY = const(8087)  # relay_select: 0 three phases, 1 one phase (volatile)
_OFFLINE = const(6)
# EVSE state (API.md §2) from cp_state: 0→1, 1→2, 2→3, 3→4, 4/5→5
_STATES = b"\x01\x02\x03\x04\x05\x05"
_SOURCES = const(3)  # who may cap/disable an EVSE besides its overrides: 0 Modbus TCP, 1 MQTT, 2 OCPP


def is_evse(dev_type):
    """The one test of a device kind: EVSE or meter."""
    return dev_type[:5] == "evse_"


def slave_id(address, default):
    """Modbus slave id of a Power Brain device address, or None if invalid."""
    if address in _NAMED:
        return _NAMED[address]
    if address.startswith("rtu:") and address[4:].isdigit():
        i = int(address[4:])
        return i if 1 <= i <= 247 else None
    if address == "":
        return default
    return None


class Site:
    """The configuration in force and the devices: replaced part by part by the
    control task only (control.Control.install); read by everyone. (The users
    are on flash: userlist.users().)"""

    def __init__(self, params, devices, admin, license):
        self.params = params  # dict (config.PARAMS)
        self.devices = devices  # [Device], in configuration order
        self.admin = admin  # the admin password's "salt$hash", "" when none is set
        self.license = license  # {"accepted": bool, "allow_usage_stats": bool}

    def compact(self):
        """The configuration's dicts made again, each of just its size, once
        start-up's modules and garbage are gone (pbctl.main()): the same
        contents in less heap (~600 B with the factory devices at 96k), and
        out of the room the commands' modules load into later (BENCHMARKS.md,
        "The heap right after boot")."""
        self.params = dict(self.params)
        for d in self.devices:
            d.cfg = dict(d.cfg)

    def compact_rules(self, rules):
        """Charging rules (a user's, parsed from flash) as the site keeps them:
        each rule a dict of just its size whose key strings are those of a
        rule already held (an EVSE's), not new ones (~1.5 KB less a
        session of a user with 4 rules)."""
        like = None
        for d in self.devices:
            if d.is_evse and d.cfg.get("charging_rules"):
                like = d.cfg["charging_rules"][0]
                break
        out = []
        for r in rules:
            c = {}
            for k in like or r:
                c[k] = None  # these key objects stay; r's values replace the Nones
            for k in r:
                c[k] = r[k]
            out.append(dict(c))
            like = like or out[0]
        return out

    def device(self, dev_id):
        for d in self.devices:
            if d.dev_id == dev_id:
                return d
        return None


def _word(d, i):
    return (d[i] << 8) | d[i + 1]


def _signed(d, off, nbytes):
    v = 0
    for i in range(off, off + nbytes):
        v = (v << 8) | d[i]
    return v - (1 << (8 * nbytes)) if d[off] & 0x80 else v


def _text(d, off, n):
    # ASCII up to the first NUL; other bytes show as "?" (a UnicodeError here
    # would fail every poll of the device, and with it every control cycle)
    b = bytearray()
    for i in range(off, off + n):
        if not d[i]:
            break
        b.append(d[i] if d[i] < 128 else 63)
    return str(b, "utf-8")


class Device:
    is_evse = False
    psw = 0  # (an Evse's phase switching sequence, control.py; a meter has none)

    def __init__(self, dev_type, dev_id, cfg, now):
        self.dev_type = dev_type
        self.dev_id = dev_id
        self.cfg = cfg  # validated configuration (persisted)
        self.rtu = dev_type[-10:] == "powerbrain"
        self.stats = rtu.Stats()  # a bus device gets its slave's record when installed
        self.stats.last_err_ms = now
        self.model = ""
        self.voltage = [230, 230, 230]
        self.cur = [0, 0, 0]  # current per phase, mA (inverted if configured)
        self.power = 0  # W
        self.energy = 0  # Wh: import for meters, total_energy for EVSEs
        self.last_ms = now  # last good reading
        self.seen = False
        self.missed = False  # the last poll failed (control.Control.read)
        # the registers read once, as the device sent them (the Modbus TCP
        # gateway answers from them): 8000..8031, 8057, on EVSEs 8112..8113
        # unless the box refused them; None until the first poll got through
        self.static = None

    def slave(self):
        return slave_id(self.cfg["address"], self.cfg["id"])

    def updated(self, now):
        self.last_ms = now
        self.seen = True
        self.missed = False
        self.stats.err = False

    async def poll(self, bus, now):
        """Read the device over the bus (prio lane); ModbusError on failure."""
        s = self.slave()
        st = self.static
        if st is None:
            d = await bus.read(s, _COMMON, 32, True)
            st = bytearray(d)
            d = await bus.read(s, _VOLTAGE, 3, True)
            for i in range(3):
                self.voltage[i] = _word(d, 2 * i)
            st.extend(await bus.read(s, _FLAGS, 1, True))
            if self.is_evse:
                self.features = 0  # a box without the registers cannot switch phases
                try:  # (quiet: a box without them refuses, and is still polled)
                    d = await bus.read(s, _METER_TYPE, 2, True, True)
                    self.features = _word(d, 2)  # INTEGRATIONS.md §5: only a box with bit 8 is switched
                    st.extend(d)
                except rtu.ModbusError as e:
                    if e.kind != rtu.EXCEPTION:
                        raise
            d = st
            dev = _word(d, 6)
            pv = _word(d, 8)
            self.model = "%s,%d.%d,%d.%d.%d,%s" % (_text(d, 32, 32), dev >> 8, dev & 255, pv >> 8, pv & 255,
                                                   _word(d, 10), _text(d, 16, 16))
            self.static = st
        if self.is_evse:
            if self.features & 0x100:  # the relay, read back (a reset box is on three again)
                self.relay = _word(await bus.read(s, _RELAY, 1, True), 0)
            d = await bus.read(s, _CP_STATE, 3, True)
            cp = self.cp = _word(d, 0)
            self.dev_limit = _word(d, 2) * 100
            self.dev_enable = _word(d, 4)
        d = await bus.read(s, _ENERGY, 12, True)
        self.energy = _signed(d, 0, 8)
        power = _signed(d, 8, 4)
        sign = -1 if self.cfg.get("invert") else 1
        c = self.cur
        for i in range(3):
            c[i] = sign * _signed(d, 12 + 4 * i, 4) * 100  # 0.1 A -> mA
        self.power = sign * power if power != -1 else self.estimate_power()
        if self.is_evse:
            self.set_state(_STATES[cp] if cp < 6 else 5, now)
        self.updated(now)

    def http_update(self, v, now):
        """A reading of an HTTP input device (set_ajax_*, validated fields v);
        applied by the control task."""
        if "model" in v:
            self.model = v["model"]
        energy = "total_energy" if self.is_evse else "import_wh"
        if energy in v:
            self.energy = v[energy]
        sign = -1 if self.cfg.get("invert") else 1
        if "voltage" in v:
            self.voltage[:] = v["voltage"]
        if "current" in v:
            for i in range(3):
                self.cur[i] = sign * v["current"][i]
        if "power_w" in v:
            self.power = sign * v["power_w"]
        elif "current" in v or "voltage" in v:
            self.power = self.estimate_power()  # API.md §4: missing power_w = voltage × current
        self.updated(now)

    def set_state(self, st, now):
        pass  # meters have no EVSE state

    def estimate_power(self):
        p = 0
        for i in range(3):
            p += self.cur[i] * self.voltage[i] // 1000
        return p


class Meter(Device):
    export = 0  # Wh; S0 meters count import only

    def http_update(self, v, now):
        if "export_wh" in v:
            self.export = v["export_wh"]
        if "is_va" in v:
            self.cfg["is_va"] = v["is_va"]
        super().http_update(v, now)


class Evse(Device):
    # (resident: only what the control loop needs; what one command needs
    # lives in that command's module)
    is_evse = True

    def __init__(self, dev_type, dev_id, cfg, now):
        super().__init__(dev_type, dev_id, cfg, now)
        self.state = _OFFLINE if self.rtu else 1
        self.cp = -1  # cp_state (8092) as the box sent it, -1 before its first reading
        self.dev_limit = -1  # charging_cur_limit read back from the box, mA
        self.dev_enable = -1  # charging_enable read back
        self.max_http = 0  # HTTP EVSE: the max_charging_current it reported
        # phase switching (INTEGRATIONS.md §5): features (8113, read at the first
        # poll; 0 until then and on an HTTP EVSE), relay_select read back (1 one
        # phase), the wish of an integration (0 none, 1, 3), the control task's
        # switching sequence (psw: 0 none, 1 charging_enable 0 written at psw_ms,
        # 2 relay_select written at psw_ms)
        self.features = 0
        self.relay = 0
        self.phase_wish = 0  # 0 none, 1 or 3 phases (Modbus TCP's 8087; phase switching honours it)
        self.psw = 0
        self.psw_ms = now
        # balancer decision
        self.limit = 0
        self.paused = False
        self.pause_ms = now
        self.reason = 0  # balancer reason code
        # session: cleared on unplug
        self.plugged = False
        self.plug_ms = now
        self.session_start = 0
        self.user = ""
        self.user_rules = None  # the session's user's charging rules (from flash at authorisation)
        self.ov_flags = ""  # active override flags, subset of "CEU"
        self.ov_mamps = 0
        self.disconnect = 0  # s: disconnect_cp (8086) to write at the next pass, 0 none
        # requests of the integrations (control.Control.cap/enable), by source:
        # a cap in mA (0 none), charging allowed (1) or not (0)
        self.caps = [0] * _SOURCES
        self.enables = bytearray(b"\x01" * _SOURCES)
        self.soft_wh = cfg["soft_meter"]
        self.soft_mws = 0  # sub-Wh remainder, mW·ms

    def http_update(self, v, now):
        if "max_charging_current" in v:
            self.max_http = v["max_charging_current"]
        super().http_update(v, now)
        if "state" in v:
            self.set_state(v["state"], now)

    def set_state(self, st, now):
        self.state = st
        if st == _OFFLINE:
            return  # a silent box says nothing about the car: keep the session
        plugged = st != 1
        if plugged and not self.plugged:
            self.plug_ms = now
            self.session_start = self.energy
        elif self.plugged and not plugged:
            # unplugged: the session's user and overrides end (API.md §5)
            self.user = ""
            self.user_rules = None
            self.ov_flags = ""
            self.ov_mamps = 0
        self.plugged = plugged

    def cap(self):
        """The smallest cap in force (override mamps, integrations), mA; 0 = none."""
        c = self.ov_mamps
        for x in self.caps:
            if x and (not c or x < c):
                c = x
        return c

    def disabled(self):
        """Charging disabled by override C or by an integration."""
        return "C" in self.ov_flags or min(self.enables) == 0

    def integrate(self, dt_ms):
        """HTTP EVSEs without an energy reading: integrate the power."""
        if self.rtu or self.energy:
            return
        self.soft_mws += self.power * dt_ms
        if self.soft_mws >= 3600000:
            self.soft_wh += self.soft_mws // 3600000
            self.soft_mws %= 3600000

    def session_wh(self):
        return max(0, self.energy - self.session_start)


def new_device(dev_type, dev_id, cfg, now):
    return (Evse if is_evse(dev_type) else Meter)(dev_type, dev_id, cfg, now)
