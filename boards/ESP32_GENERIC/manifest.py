# Frozen-firmware manifest: build MicroPython v1.29 for ESP32_GENERIC with
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/pbctl/boards/ESP32_GENERIC/manifest.py
# Frozen modules live in flash and cost no heap. Do not also copy .mpy files
# of the same modules to the board: frozen modules shadow /lib copies.
include("$(PORT_DIR)/boards/manifest.py")
require("aiorepl")
module("board.py", base_path="$(MPY_DIR)/../pbctl/boards/ESP32_GENERIC")
package_dir = "$(MPY_DIR)/../pbctl"
for name in ("rtu.py", "registers.py", "httpd.py", "balancer.py", "balancer_core.py", "balancer_alloc.py", "rules.py"):
    module(name, base_path=package_dir + "/lib")
for name in ("pbctl.py", "app.py", "cnf.py", "control.py", "devices.py", "config.py", "schema.py", "store.py",
             "auth.py", "diag.py", "cmd_info.py", "cmd_modbus.py", "cmd_admin.py", "cmd_ajax.py", "cmd_session.py",
             "cmd_users.py", "cmd_sys.py"):
    module(name, base_path=package_dir + "/firmware")
