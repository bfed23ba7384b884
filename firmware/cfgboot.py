"""Boot-time configuration loading (API.md §10). Loaded once, at boot.

The newest complete stored copy (store.py) is validated field by field;
anything invalid falls back to the factory configuration, and the
controller always comes up serving /cnf.
"""
import devices
import schema
import store
from users import check_user


def _fields(dev_type):
    return schema.EVSE if dev_type[:5] == "evse_" else schema.METER


def factory_devices():
    """The vendor's standard configuration: one Power Brain and its two S0 meters."""
    e = schema.defaults(schema.EVSE)
    e.update({"name": "Wallbox", "address": "evse", "id": 1, "desc": "cFos Power Brain Wallbox 11kW"})
    m1 = schema.defaults(schema.METER)
    m1.update({"name": "S0 Zähler 1", "address": "meter1", "id": 2, "desc": "cFos Power Brain, S0 Zähler 1"})
    m2 = schema.defaults(schema.METER, m1)
    m2.update({"name": "S0 Zähler 2", "address": "meter2", "id": 3, "number": 2,
               "desc": "cFos Power Brain, S0 Zähler 2"})
    return [("evse_powerbrain", "E1", e), ("meter_powerbrain", "M1", m1), ("meter_powerbrain", "M2", m2)]


def boot(app):
    """Load the newest complete stored copy; anything invalid -> defaults."""
    st = store.Store(app.board.FLASH)
    cfg = st.load()
    app.params = schema.defaults(schema.PARAMS)
    app.devices = []
    app.users = []
    app.admin_secret = ""
    app.license = {"accepted": False, "allow_usage_stats": False}
    now = app.boot_ms
    try:
        if cfg is None:
            raise ValueError
        schema.check(schema.PARAMS, cfg.get("params", {}), app.params)
        for t, i, d in cfg.get("devices", ()):
            if t in devices.DEV_META:
                c = schema.check(_fields(t), d, schema.defaults(_fields(t), schema.like(app, t)))
                app.devices.append(devices.new_device(t, i, c, app.bus, now))
        for u in cfg.get("users", ()):
            app.users.append(check_user(u))
        lic = cfg.get("license")
        if isinstance(lic, dict):
            app.license.update(lic)
    except Exception:  # a broken file must never stop the boot
        if cfg is not None:
            print("pbctl: bad configuration in %s, using defaults" % st.loaded_from)
        app.params = schema.defaults(schema.PARAMS)
        app.users = []
        app.devices = [devices.new_device(t, i, c, app.bus, now) for t, i, c in factory_devices()]
    if cfg is not None and isinstance(cfg.get("admin"), str):
        app.admin_secret = cfg["admin"]
    pwd = getattr(app.board, "ADMIN_PWD", "")
    if pwd and not app.admin_secret:
        # host simulation only: the board shim may preset the first password
        import auth

        app.admin_secret = auth.make_secret(pwd)
