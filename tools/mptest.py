"""Run shared unit-test modules under MicroPython.

Usage: micropython tools/mptest.py test_module [test_module ...]
Every module-level callable named test_* is run; an `async def` test is run
with asyncio.run. Prints one line per failure and a closing
"N passed, N failed" line; exits 1 on any failure.
"""
import gc
import sys


def _run_one(fn):
    # the runner plays the application: it collects before each test, so a
    # test starts on the heap a fresh request would (libraries never collect)
    gc.collect()
    r = fn()
    if hasattr(r, "send"):  # coroutine (a generator object on MicroPython)
        import asyncio

        asyncio.run(r)


def main(names):
    passed = failed = 0
    for modname in names:
        mod = __import__(modname)
        for name in sorted(dir(mod)):
            if not name.startswith("test_"):
                continue
            fn = getattr(mod, name)
            if not callable(fn):
                continue
            try:
                _run_one(fn)
                passed += 1
            except Exception as e:
                failed += 1
                print("FAIL %s.%s: %s: %s" % (modname, name, type(e).__name__, e))
                sys.print_exception(e)
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
