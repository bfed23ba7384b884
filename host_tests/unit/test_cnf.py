"""The /cnf dispatcher's route table (CPython and MicroPython): which module of
pbctl.api holds each command, and who may run it."""
from pbctl.api import cnf

# command: (module, policy); policies (api/cnf.py): r read, a admin, u the
# command decides (a user's PIN/RFID or the admin), p the old password, m
# cmd=modbus (read: r, write: a)
COMMANDS = {
    "get_dev_info": ("info", "r"), "get_params": ("info", "r"), "sys_info": ("info", "r"),
    "modbus": ("modbus", "m"),
    "set_params": ("admin", "a"), "del_device": ("admin", "a"), "reset_device": ("admin", "a"),
    "accept_license": ("admin", "a"), "change_admin_pwd": ("admin", "p"), "set_diag_logging": ("admin", "a"),
    "get_diag_log": ("admin", "a"), "set_ajax_meter": ("ajax", "a"), "set_ajax_evse": ("ajax", "a"),
    "enter_rfid": ("session", "u"), "override_device": ("session", "u"), "soft_meter": ("session", "u"),
    "get_users": ("users", "a"), "get_user": ("users", "u"), "set_user": ("users", "u"),
    "get_new_user_id": ("users", "a"), "scan_wifi": ("wifi", "a"), "set_wifi": ("wifi", "a"),
    "get_config": ("backup", "a"), "set_config": ("backup", "a"),
    "update": ("update", "a"),
}


def test_only_update_bodies_are_streamed():
    # httpd's stream hook (cmd=update's bundle is read a piece at a time)
    for qs in ("cmd=update", "cmd=update&restart=0", "restart=0&cmd=update"):
        assert cnf.streamed("/cnf", qs), qs
    for path, qs in (("/cnf", "cmd=updatex"), ("/cnf", "cmd=set_params"), ("/cnf", ""), ("/x", "cmd=update"),
                     ("/cnf", "xcmd=update")):
        assert not cnf.streamed(path, qs), (path, qs)


def test_every_command_routes_to_its_module_and_policy():
    for cmd, want in COMMANDS.items():
        assert cnf.route(cmd) == want, cmd


def test_the_table_has_no_other_command():
    # every entry of the table is one of the commands above, each once
    entries = cnf._ROUTES.split()
    assert sorted(e.split(":")[0] for e in entries) == sorted(COMMANDS)


def test_everything_else_is_unknown():
    for cmd in ("", " ", "x", "get", "info", "admin", "get_dev_info info", "info cmd", "get_dev_info:info",
                "get_dev_info:info:r", ":info", "info:r", "r", "a", ":", "get_dev_inf", "et_dev_info",
                "GET_DEV_INFO", "modbus ", " modbus", "\u00e9", "a" * 300):
        assert cnf.route(cmd) is None, cmd


def test_every_module_is_on_demand():
    demand = cnf.on_demand()
    for mod, _ in COMMANDS.values():
        assert "pbctl.api." + mod in demand, mod
    assert len(demand) == len(set(demand))
    # the resident dispatcher itself never is
    assert "pbctl.api.cnf" not in demand


def test_lower_layers_errors_as_replies():
    # api/cnf.py maps what config, store and control raise to the replies of API.md
    from pblib.httpd import HTTPError

    from pbctl import config, control, store

    for e, want in ((config.ConfigError("bad value: title"), (400, "bad value: title")),
                    (config.ConfigError("unknown device", 404), (404, "unknown device")),
                    (config.ConfigError("admin required: dev_ids", 403), (403, "admin required: dev_ids")),
                    (store.StoreError("OSError(28,)"), (507, "flash write failed")),
                    (control.Busy(), (503, "busy")),
                    (HTTPError(409, "as it is"), (409, "as it is"))):
        got = cnf._mapped(e)
        assert isinstance(got, HTTPError) and (got.status, got.message) == want, want
    other = ValueError("a bug")
    assert cnf._mapped(other) is other  # anything else stays what it is (the server's 500)
