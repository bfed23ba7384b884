# The host's stand-in for a board with a ROMFS partition (README "Memory"):
#
#     micropython -X heapsize=<budget + image size> boards/HOST/romfs_main.py MAIN.py
#
# with PBCTL_ROMFS = the image (tools/mpybuild.py --romfs). The image is read
# into one block first, so what the heap has left is the budget; mounted at
# /rom like the board mounts its partition, the modules run from it in place
# (their code outside the budget, as in the board's flash), then MAIN.py (the
# board's /main.py) starts the firmware. Modules come only from the image.
#
# Updates (README "Updates over HTTP"): like the board's boot.py, pbslot.py
# (source, beside MAIN.py) first picks the version to run from the flash
# directory PBCTL_FLASH; a version installed by cmd=update is the image
# fw/<slot>/pbctl.romfs there, the cable's one PBCTL_ROMFS. The heap must fit
# the larger (tools/simrun.py adds the largest image it finds).
import gc
import os
import sys
import vfs

sys.path[:] = [sys.argv[1].rpartition("/")[0] or "."]
import pbslot  # noqa: E402

_p = pbslot.select(os.getenv("PBCTL_FLASH") or "/tmp/pbctl-flash")
del sys.modules["pbslot"], pbslot
try:
    _p = _p + "/pbctl.romfs"
    os.stat(_p)
except (TypeError, OSError):
    _p = os.getenv("PBCTL_ROMFS")
gc.collect()
_b = bytearray(os.stat(_p)[6])
with open(_p, "rb") as _f:
    _f.readinto(_b)
vfs.mount(vfs.VfsRom(_b), "/rom")
sys.path[:] = ["/rom", ".frozen"]
with open(sys.argv[1]) as _f:
    _m = _f.read()
del _p, _f
exec(_m)
