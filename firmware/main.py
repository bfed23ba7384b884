# The board runs this file from source at boot, after boot.py; everything else
# is precompiled. In safe mode (boot.py, pbctl/board/safemode.py) the
# controller is not started and the REPL stays free. The host runs no boot.py.
import sys

if not getattr(sys.modules.get("pbctl.board.safemode"), "reason", None):
    import pbboard
    import pbctl

    pbctl.run(pbboard)
