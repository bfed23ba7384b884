"""The Power Brain register maps (REGISTERS.md) and the datastore that holds them.

Only mapped registers exist. Anything else (also a read/write spanning a gap)
gets exception 2. Mapped ranges:

    all devices:  8000-8031, 8040-8047, 8050-8071, 8120-8121
    EVSEs also:   8086-8087, 8092-8094, 8096-8110, 8112-8113

Factory values: meters 2 and 3 reproduce the document (`read=all` of meter2,
`read=8002&count=10` of meter1); 8040 = 2 (meter1), 41 (meter2), the id
(EVSE). EVSE: serial "6d31-0c2a-77e1" (id 1; "6d31-0c2a-77xx" = 0x77e0+id for
others), 8057 = 1, 8086 = 0, 8087 = 0, 8092 = 0, 8093 = 0, 8094 = 0, 8096s = "",
8112 = 1, 8113 = 0x100 (bit 8: 1p/3p switching available).

Read-only registers (access "r" in REGISTERS.md) reject writes with exception
2 (pymodbus' readonly flag). rw/w registers accept any 16-bit value. Writing
8040 (slave_id) stores the value but does not change the bus id. What some
writes do besides storing the value (8070, 8086, 8087) is in simulator.py.

The registers live in pymodbus' own datastore (one `SimDevice` per slave);
`Datastore` reads and writes its register lists directly, for the physics and
the control channel.
"""

METER1 = 2
METER2 = 3

VOLTAGE_L1 = 8045
PULSES = 8050
ENERGY = 8058
RESET_PULSES = 8070
DISCONNECT_CP = 8086
RELAY_SELECT = 8087
CP_STATE = 8092
CHARGING_CUR_LIMIT = 8093
CHARGING_ENABLE = 8094
FEATURES = 8113
FEATURE_PHASE_SWITCH = 0x100  # 8113 bit 8: 1p/3p switching available


def str_regs(text, nregs):
    """ASCII string -> registers, 2 chars per register, high byte first, NUL-padded."""
    raw = text.encode("ascii")
    if len(raw) > 2 * nregs:
        raise ValueError("string too long")
    raw = raw.ljust(2 * nregs, b"\0")
    return [(raw[2 * i] << 8) | raw[2 * i + 1] for i in range(nregs)]


def int_regs(value, nregs):
    """Signed/unsigned integer -> nregs registers, high word first."""
    value &= (1 << (16 * nregs)) - 1
    return [(value >> (16 * (nregs - 1 - i))) & 0xFFFF for i in range(nregs)]


def regs_int(regs):
    """Registers (high word first) -> signed integer."""
    value = 0
    for r in regs:
        value = (value << 16) | (r & 0xFFFF)
    bits = 16 * len(regs)
    if value >> (bits - 1):
        value -= 1 << bits
    return value


def _common_and_meter(serial, own_id, flags):
    return [
        (8000, [0xCF05, 0x0000], True),   # vendor_id
        (8002, [1], True),                # product_id
        (8003, [257], True),              # device_id
        (8004, [256, 0], True),           # product_version + product_build
        (8006, [256], True),              # mapping_version
        (8007, [0], True),                # padding_1
        (8008, str_regs(serial, 8), True),
        (8016, str_regs("cFos Power Brain", 16), True),
        (8040, [own_id], False),          # slave_id
        (8041, [1], True),                # input
        (8042, int_regs(1000, 2), False),  # pulsesperkwh
        (8044, [1], False),               # phases
        (8045, [230, 230, 230], False),   # voltage_l1..l3
        (8050, int_regs(0, 4), False),    # pulses
        (8054, int_regs(0, 2), True),     # timeperpulse
        (8056, [0], True),                # level
        (8057, [flags], True),            # flags
        (8058, int_regs(0, 4), False),    # energy
        (8062, int_regs(-1, 2), True),    # power
        (8064, int_regs(0, 2), True),     # current_l1
        (8066, int_regs(0, 2), True),     # current_l2
        (8068, int_regs(0, 2), True),     # current_l3
        (8070, [0], False),               # reset_pulses
        (8071, [0], True),                # reserved
        (8120, int_regs(0, 2), True),     # reserved
    ]


def _evse_block():
    return [
        (8086, [0], False),               # disconnect_cp
        (8087, [0], False),               # relay_select
        (8092, [0], True),                # cp_state
        (8093, [0], False),               # charging_cur_limit
        (8094, [0], False),               # charging_enable
        (8096, str_regs("", 15), True),   # last_rfid
        (8112, [1], True),                # meter_type
        (8113, [FEATURE_PHASE_SWITCH], True),  # features
    ]


def device_map(kind, slave_id):
    """Register map of one device ("evse" or "meter"): [(addr, [factory regs], readonly)]."""
    if kind == "evse":
        m = _common_and_meter("6d31-0c2a-%04x" % ((0x77E0 + slave_id) & 0xFFFF), slave_id, 1)
        m += _evse_block()
    else:
        m = _common_and_meter("fcf5-c46d-310c", 41 if slave_id == METER2 else slave_id, 0)
    m.sort(key=lambda e: e[0])
    return m


class Datastore:
    """The register maps of every slave, stored in pymodbus' datastore once attached."""

    def __init__(self, evse_ids):
        self.maps = {}
        for sid in evse_ids:
            self.maps[sid] = device_map("evse", sid)
        self.maps[METER1] = device_map("meter", METER1)
        self.maps[METER2] = device_map("meter", METER2)
        self.context = None

    def sim_devices(self):
        """pymodbus SimDevice per slave, with the factory values and read-only flags."""
        from pymodbus.simulator import DataType, SimData, SimDevice
        devices = []
        for sid, m in self.maps.items():
            data = [SimData(addr, values=list(vals), datatype=DataType.REGISTERS, readonly=ro)
                    for addr, vals, ro in m]
            devices.append(SimDevice(id=sid, simdata=data))
        return devices

    def attach(self, context):
        """Use the running server's datastore (pymodbus copies the SimDevices into it)."""
        self.context = context

    def __contains__(self, sid):
        return sid in self.maps

    def _block(self, sid):
        start, _n, regs, flags = self.context.devices[sid].block["x"]
        return start, regs, flags

    def mapped(self, sid, addr, count):
        start, regs, flags = self._block(sid)
        off = addr - start
        if off < 0 or off + count > len(regs):
            return False
        return all(flags[off + i] & 15 != 1 for i in range(count))  # 1 = DataType.INVALID

    def get(self, sid, addr, count=1):
        start, regs, _ = self._block(sid)
        return list(regs[addr - start:addr - start + count])

    def get1(self, sid, addr):
        start, regs, _ = self._block(sid)
        return regs[addr - start]

    def set(self, sid, addr, values):
        start, regs, _ = self._block(sid)
        for i, v in enumerate(values):
            regs[addr - start + i] = v & 0xFFFF

    def get_int(self, sid, addr, nregs):
        return regs_int(self.get(sid, addr, nregs))

    def set_int(self, sid, addr, value, nregs):
        self.set(sid, addr, int_regs(value, nregs))

    def factory(self):
        for sid, m in self.maps.items():
            for addr, vals, _ro in m:
                self.set(sid, addr, vals)
