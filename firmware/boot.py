# The board runs this file from source at every reset, before main.py: it
# decides whether the controller starts (pbctl/board/safemode.py: BOOT button,
# /safemode, failed starts). It stays a file on the board, like main.py;
# nothing in it may stop the boot.
import sys

try:
    from pbctl.board import safemode

    if not safemode.check():  # a normal start: main.py sees no safemode module
        # its heap goes (onboard.py loads it once more, for good())
        del sys.modules["pbctl.board.safemode"]
        delattr(sys.modules["pbctl.board"], "safemode")
    del safemode
except Exception as e:
    print("pbctl: boot.py:", repr(e))
