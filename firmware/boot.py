# The board runs this file from source at every reset, before main.py: it
# decides whether the controller starts (pbctl/board/safemode.py: BOOT button,
# /safemode, failed starts). It stays a file on the board, like main.py;
# nothing in it may stop the boot.
import sys

try:  # the version to run (updates over HTTP: pbslot.py, a source file beside this one)
    import pbboard
    import pbslot

    _d = pbslot.select(pbboard.FLASH)
    del sys.modules["pbslot"], sys.modules["pbboard"]
    if _d:  # a version installed by cmd=update: its modules first
        sys.path.insert(0, _d)
    del _d
except Exception as e:
    print("pbctl: boot.py:", repr(e))

try:
    from pbctl.board import safemode

    if not safemode.check():  # a normal start: main.py sees no safemode module
        # its heap goes (onboard.py loads it once more, for good())
        del sys.modules["pbctl.board.safemode"]
        delattr(sys.modules["pbctl.board"], "safemode")
    del safemode
except Exception as e:
    print("pbctl: boot.py:", repr(e))
