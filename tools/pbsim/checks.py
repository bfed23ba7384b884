"""CmdError and the checks of control-command and scenario arguments."""


class CmdError(Exception):
    """A control command or scenario that cannot be carried out; its text is the reply's error."""


def as_int(value, what):
    """value if it is an integer (not a bool), else CmdError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise CmdError("%s must be an integer" % what)
    return value


def phases3(value, what):
    """[l1, l2, l3] from a list of 3 integers or one integer for all phases."""
    if isinstance(value, list):
        if len(value) != 3:
            raise CmdError("%s needs 3 values" % what)
        return [as_int(x, what) for x in value]
    x = as_int(value, what)
    return [x, x, x]


def as_u16(value, what):
    """An integer 0..65535 (a register value)."""
    if not 0 <= as_int(value, what) <= 0xFFFF:
        raise CmdError("%s must be 0..65535" % what)
    return value
