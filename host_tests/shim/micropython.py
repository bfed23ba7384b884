"""CPython stand-in for MicroPython's `micropython` module (host tests only).

The only host shim for library code: `const` is identity, the heap functions
do nothing. MicroPython never sees this file (its built-in module wins).
"""


def const(x):
    return x


def heap_lock():
    return 0


def heap_unlock():
    return 0


def native(f):
    return f


viper = native
