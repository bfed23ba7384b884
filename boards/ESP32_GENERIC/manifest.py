# Frozen-firmware manifest: MicroPython v1.29 for ESP32_GENERIC with pbctl built in.
#
#   cd micropython/ports/esp32        # v1.29.0, with the ESP-IDF its README names
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/pbctl/boards/ESP32_GENERIC/manifest.py
#
# Frozen modules are executed from flash and cost no heap for their code: the
# firmware's RAM budget is met with them. Relative paths below are relative to
# this file (MicroPython's manifest tool runs it from its own directory).
#
# Frozen OR copied modules, never both. The board searches sys.path =
# ['', '.frozen', '/lib']: a frozen package shadows a copy in /lib (where
# `mpremote mip install` puts them), and a copy in / (where `make deploy` puts
# them) shadows the frozen one (a package is found whole, in the first place
# that has its directory). Either way one of the two is dead weight, and a
# stale copy in / silently runs instead of the firmware's. With this firmware
# put only /boot.py and /main.py on the board (its configuration, /pbctl.json, is written
# by the firmware); `make deploy` and package.json are for stock MicroPython.
# host_tests/tools/test_esp32_build.py checks this file.

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (_boot, inisetup, ...)
require("aiorepl")  # the REPL as an asyncio task next to the controller

# The packages, every .py below them (new ones too): pblib (lib/pblib/) and
# pbctl (firmware/pbctl/). firmware/boot.py and firmware/main.py stay files on
# the board, run from source at boot (a frozen boot.py or main.py would run
# instead of the files), so that deleting /main.py (mpremote rm :main.py) is
# the way back to a plain REPL.
package("pblib", base_path="../../lib", opt=3)
package("pbctl", base_path="../../firmware", opt=3)
module("pbboard.py", base_path=".", opt=3)
# boot.py picks the version to run with it (updates over HTTP); frozen it is never replaced
module("pbslot.py", base_path="../../firmware", opt=3)
