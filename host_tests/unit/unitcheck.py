"""Tiny assertion helpers shared by the unit tests on CPython and MicroPython."""


def raises(exc, fn, *args, **kw):
    """Call fn and return the exception of type exc it raised; fail otherwise."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %s%s" % (exc.__name__, fn.__name__, repr(args)[:80]))
