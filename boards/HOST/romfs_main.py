# The host's stand-in for a board with a ROMFS partition (README "Memory"):
#
#     micropython -X heapsize=<budget + image size> boards/HOST/romfs_main.py MAIN.py
#
# with PBCTL_ROMFS = the image (tools/mpybuild.py --romfs). The image is read
# into one block first, so what the heap has left is the budget; mounted at
# /rom like the board mounts its partition, the modules run from it in place
# (their code outside the budget, as in the board's flash), then MAIN.py (the
# board's /main.py) starts the firmware. Modules come only from the image.
import os
import sys
import vfs

_p = os.getenv("PBCTL_ROMFS")
_b = bytearray(os.stat(_p)[6])
with open(_p, "rb") as _f:
    _f.readinto(_b)
vfs.mount(vfs.VfsRom(_b), "/rom")
sys.path[:] = ["/rom", ".frozen"]
with open(sys.argv[1]) as _f:
    _m = _f.read()
del _p, _f
exec(_m)
