"""REPL helpers (pbctl.status/get/set/log) on a controller built from real device objects."""
import devices
import repl
import rtu


class App:
    def __init__(self):
        self.params = {"max_total_current": 32000, "lb_enabled": True}
        self.control = None
        self.diag = None
        e = devices.new_device("evse_powerbrain", "E1", {"address": "evse", "id": 1, "name": "Wallbox",
                                                         "soft_meter": 0}, None, 0)
        e.stats = rtu.Stats()
        e.state, e.limit, e.reason = 3, 16000, 0
        e.cur[:] = [15900, 15800, 15700]
        m = devices.new_device("meter_powerbrain", "M1", {"address": "meter1", "id": 2, "name": "grid",
                                                          "role": 3}, None, 0)
        m.stats = rtu.Stats()
        m.stats.err = True
        m.stats.last_error = "modbus timeout"
        self.devices = [e, m]


def test_status_table(capsys, monkeypatch):
    import time
    monkeypatch.setattr(time, "ticks_ms", lambda: 0, raising=False)
    monkeypatch.setattr(repl, "_free", lambda: 12345)
    repl.status(App())
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "max_total_current 32000 mA, lb_enabled True, cycle 0 ms, 0 cycles, heap free 12345"
    assert out[2].split() == ["E1", "Wallbox", "3", "15900", "15800", "15700", "16000"]
    assert out[3].split()[:6] == ["M1", "grid", "role3", "0", "0", "0"]
    assert out[3].endswith("com_err: modbus timeout")


def test_get_and_log(capsys):
    app = App()
    assert repl.get(app) is app.params
    assert repl.get(app, "max_total_current") == 32000
    repl.log(app)
    assert capsys.readouterr().out == ""
