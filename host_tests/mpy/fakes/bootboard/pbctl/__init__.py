"""A stand-in for the pbctl package in the boot tests: run(board) says that it
ran (and whether safe mode's module is still loaded), or crashes with
FAKE_CRASH. Its sub-packages are the real ones: __path__ is firmware/pbctl, so
`from pbctl.board import safemode` (boot.py) loads the real safemode.py."""
import os
import sys

__path__ = __file__.rsplit("/", 6)[0] + "/firmware/pbctl"  # (the repository's root)


def run(board):
    print("PBCTL RUN (safemode loaded: %s)" % ("pbctl.board.safemode" in sys.modules))
    if os.getenv("FAKE_CRASH"):
        raise MemoryError("start-up crash")
