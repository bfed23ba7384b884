"""The /cnf dispatcher's routing table (CPython and MicroPython)."""
import cnf

COMMANDS = {
    "get_dev_info": "cmd_info", "get_params": "cmd_info", "sys_info": "cmd_sys", "modbus": "cmd_modbus",
    "set_params": "config", "del_device": "cfgdel", "reset_device": "cfgdel",
    "accept_license": "cmd_admin", "change_admin_pwd": "cmd_admin", "set_diag_logging": "cmd_admin",
    "get_diag_log": "cmd_admin", "set_ajax_meter": "cmd_ajax", "set_ajax_evse": "cmd_ajax",
    "enter_rfid": "cmd_session", "override_device": "cmd_session", "soft_meter": "cmd_session",
    "get_users": "cmd_users", "get_user": "cmd_users", "set_user": "cmd_users", "get_new_user_id": "cmd_users",
}


ADMIN = {"set_params", "del_device", "reset_device", "accept_license", "set_diag_logging", "get_diag_log",
         "set_ajax_meter", "set_ajax_evse", "get_users", "get_new_user_id"}


def test_every_command_routes_to_its_module():
    for cmd, mod in COMMANDS.items():
        assert cnf.route(cmd) == ("!" + mod if cmd in ADMIN else mod), cmd


def test_everything_else_is_unknown():
    for cmd in ("", " ", "x", "get", "cmd_info", "cmd_admin", "get_dev_info cmd_info", "info cmd",
                "get_dev_inf", "et_dev_info", "GET_DEV_INFO", "modbus ", "\u00e9", "a" * 300):
        assert cnf.route(cmd) is None, cmd


def test_every_module_is_on_demand():
    for mod in set(COMMANDS.values()):
        assert mod in cnf.ON_DEMAND, mod
