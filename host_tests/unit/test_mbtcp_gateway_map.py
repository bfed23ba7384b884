"""The Modbus TCP gateway's mapping (pbctl/integrations/mbtcp.py) on CPython
and MicroPython: which reads the cache answers and with what bytes, which
writes become which requests, and the control task's requests behind them
(phase wish 11, disconnect 12, release)."""
from pbctl import devices
from pbctl.integrations import mbtcp as gw

COMMON = bytes(range(64))


def cfg(slave):
    # what the gateway and the device model read of a device's configuration
    # (config.defaults would load the whole field table onto a small heap)
    return {"address": "rtu:%d" % slave, "id": 1, "device_enabled": 1, "soft_meter": 0}


def evse(slave=1, static=COMMON + b"\x00\x01" + b"\x00\x01\x01\x00"):
    c = cfg(slave)
    e = devices.new_device("evse_powerbrain", "E%d" % slave, c, 0)
    e.static = bytearray(static) if static is not None else None
    e.seen = True
    e.state = 3
    e.cp = 2
    e.dev_limit = 16000
    e.dev_enable = 1
    e.energy = 0x123456789A
    e.power = 11040
    e.cur[:] = [16000, 15900, -100]
    e.voltage[:] = [230, 231, 232]
    return e


def meter(slave=2, invert=False):
    c = cfg(slave)
    c["invert"] = invert
    m = devices.new_device("meter_powerbrain", "M%d" % slave, c, 0)
    m.static = bytearray(COMMON + b"\x00\x00")
    m.seen = True
    m.energy = 5
    m.power = -1200 if not invert else 1200
    s = -1 if invert else 1
    m.cur[:] = [s * -5200, 0, 0]
    return m


def words(b):
    return [b[i] << 8 | b[i + 1] for i in range(0, len(b), 2)]


def read(d, addr, count):
    out = bytearray(2 * count)
    code = gw.cached(d, addr, count, out)
    return words(out) if code == 0 else code


def test_evcc_registers_come_from_the_last_poll():
    e = evse()
    assert read(e, 8112, 1) == [1]
    assert read(e, 8057, 1) == [1]
    assert read(e, 8113, 1) == [0x100]
    assert read(e, 8092, 1) == [2]
    assert read(e, 8093, 2) == [160, 1]
    assert read(e, 8062, 2) == [0, 11040]
    assert read(e, 8058, 4) == [0, 0x12, 0x3456, 0x789A]
    assert read(e, 8064, 6) == [0, 160, 0, 159, 0xFFFF, 0xFFFF]
    assert read(e, 8045, 3) == [230, 231, 232]
    assert read(e, 8000, 32) == words(COMMON)
    assert read(e, 8057, 13) == [1, 0, 0x12, 0x3456, 0x789A, 0, 11040, 0, 160, 0, 159, 0xFFFF, 0xFFFF]


def test_a_meter_is_served_as_the_device_sent_it():
    m = meter()
    assert read(m, 8062, 2) == [0xFFFF, 0xFFFF - 1199]  # -1200 W, 32 bits
    assert read(m, 8064, 2) == [0xFFFF, 0xFFFF - 51]  # -5.2 A
    assert read(m, 8092, 1) == -1  # no EVSE registers on a meter: to the device
    assert read(meter(invert=True), 8062, 4) == read(m, 8062, 4)  # invert undone


def test_what_is_not_cached_goes_to_the_device():
    e = evse()
    for addr, count in ((8096, 15), (8044, 1), (8031, 2), (8070, 1), (8087, 1), (8091, 2), (8094, 2),
                        (8111, 2), (8114, 1), (8048, 1), (8056, 2)):
        assert read(e, addr, count) == -1, (addr, count)
    # a box that refused 8112..8113 at its first poll: those go to it
    e = evse(static=COMMON + b"\x00\x01")
    assert read(e, 8112, 1) == -1 and read(e, 8113, 1) == -1
    assert read(e, 8057, 1) == [1]


def test_nothing_before_the_first_poll_and_no_stale_readings():
    e = evse(static=None)
    assert read(e, 8000, 2) == 11 and read(e, 8058, 4) == 11 and read(e, 8112, 1) == 11
    e = evse()
    e.missed = True
    assert read(e, 8092, 1) == 11 and read(e, 8058, 4) == 11 and read(e, 8093, 1) == 11
    assert read(e, 8000, 1) == [1] and read(e, 8113, 1) == [0x100] and read(e, 8045, 1) == [230]
    e = evse()
    e.state = 6  # offline
    assert read(e, 8062, 2) == 11
    e = evse()
    e.dev_limit = -1  # not read back yet
    assert read(e, 8093, 1) == 11
    e = evse()
    e.seen = False
    assert read(e, 8058, 4) == 11
    m = meter()
    m.cfg["device_enabled"] = 0  # not polled
    assert read(m, 8062, 2) == 11 and read(m, 8000, 1) == [1]


def test_unit_ids_select_bus_devices():
    e1, e4, m2 = evse(1), evse(4), meter(2)
    h = devices.new_device("evse_http", "H", cfg(9), 0)  # (no bus id: never served)
    devs = [h, e1, m2, e4]
    assert gw.device(devs, 1) is e1 and gw.device(devs, 4) is e4 and gw.device(devs, 2) is m2
    assert gw.device(devs, 3) is None and gw.device(devs, 7) is None


def test_writes_map_to_requests():
    e = evse()
    assert gw.check_write(e, 8093, 1, b"\x00\x50") == [(8093, 80)]
    assert gw.check_write(e, 8093, 2, b"\x00\x00\x00\x01") == [(8093, 0), (8094, 1)]
    assert gw.check_write(e, 8086, 2, b"\x00\x05\x00\x01") == [(8086, 5), (8087, 1)]
    assert gw.check_write(e, 8086, 1, b"\x00\x00") == []  # 0 s: nothing to do
    assert gw.check_write(e, 8094, 1, b"\x00\x02") == 3
    assert gw.check_write(e, 8087, 1, b"\x00\x03") == 3
    assert gw.check_write(e, 8093, 3, b"\x00\x50\x00\x01\x00\x00") == 2  # 8095: all or nothing
    assert gw.check_write(e, 8044, 1, b"\x00\x07") == 2
    assert gw.check_write(meter(), 8093, 1, b"\x00\x50") == 2


def test_settings():
    assert gw.settings({"modbus_tcp": 2, "modbus_tcp_port": 502, "x": 1}) == (2, 502)


class Wake:
    def set(self):
        pass


def site_with(*devs):
    return devices.Site({}, list(devs), "", {"accepted": False, "allow_usage_stats": False})


def test_phase_wish_disconnect_and_release_requests():
    e, m = evse(), meter()
    from pbctl import control  # (last: it loads the balancer)

    ctl = object.__new__(control.Control)  # (its __init__ needs MicroPython's time)
    ctl.site = site_with(e, m)
    ctl._req = []
    ctl._seq = ctl.errors = 0
    ctl._wake = Wake()
    ctl.site_caps = [-1, -1, -1]
    ctl.cap("E1", 0, 8000)
    ctl.enable("E1", 0, False)
    ctl.phase_wish("E1", 1)
    ctl.disconnect("E1", 5)
    ctl.cap("E1", 1, 10000)
    ctl.phase_wish("M2", 1)  # a meter: ignored
    ctl.apply()
    assert (e.caps, list(e.enables), e.phase_wish, e.disconnect) == ([8000, 10000, 0], [0, 1, 1], 1, 5)
    assert e.cap() == 8000 and e.disabled()
    assert not hasattr(m, "phase_wish")
    for _ in range(16):
        ctl.enable("E1", 1, True)
    assert ctl.room() == 0
    ctl.release(0)  # never refused
    ctl.apply()
    assert (e.caps, list(e.enables), e.phase_wish) == ([0, 10000, 0], [1, 1, 1], 0)
    assert ctl.room() == 16
