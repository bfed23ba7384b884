"""The layers of the code (README "Layout"), checked on the source.

    HTTP -> api (cnf dispatcher, commands) -> control (+ devices, the device model) -> pblib.rtu -> UART
            integrations ------------------^

- lib/ (package pblib and the balancer) imports nothing of the firmware or the board;
- the API and the integrations reach the bus only through the control task: they
  never touch the bus master (`.bus`, `rtu.Master`, its read/write calls);
- only the control task writes the charging limits and the phase relay
  (charging_cur_limit 8093, charging_enable 8094, relay_select 8087);
- the API and the integrations change no device, no site: no assignment to the
  attributes of a device or of the site (they hand the control task requests).
"""
import ast
import glob
import os

from simrun import ROOT

LIB = os.path.join(ROOT, "lib")
FW = os.path.join(ROOT, "firmware", "pbctl")


def sources(top):
    return sorted(glob.glob(os.path.join(top, "**", "*.py"), recursive=True))


def tree(path):
    with open(path) as f:
        return ast.parse(f.read(), path)


def imports(t):
    out = set()
    for n in ast.walk(t):
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module:
            out.add(n.module)
            out.update(n.module + "." + a.name for a in n.names)
    return out


def upper(path):
    """The API's and the integrations' modules (the layers above control)."""
    rel = os.path.relpath(path, FW)
    return rel.startswith("api" + os.sep) or rel.startswith("integrations" + os.sep)


def test_lib_imports_nothing_of_the_firmware():
    files = sources(LIB)
    assert len(files) >= 5, files
    for p in files:
        bad = [m for m in imports(tree(p)) if m.split(".")[0] in ("pbctl", "pbboard", "machine", "network")]
        assert not bad, (p, bad)


def test_the_api_and_the_integrations_reach_the_bus_only_through_the_control_task():
    files = [p for p in sources(FW) if upper(p)]
    assert any("cnf.py" in p for p in files), files
    for p in files:
        t = tree(p)
        for n in ast.walk(t):
            if isinstance(n, ast.Attribute):
                assert n.attr not in ("bus", "Master", "write1", "writen"), (p, n.lineno, n.attr)
                # raw reads and writes go through control.rtu_read / rtu_write
                if n.attr == "read" and isinstance(n.value, ast.Attribute) and n.value.attr == "bus":
                    raise AssertionError((p, n.lineno))


def _writes_register(t, regs):
    """Lines where a call passes one of regs as an argument (a register write;
    a bus read, `x.read(slave, reg, n)`, is none: devices.py reads the relay back;
    nor is naming it, `const(8087)`)."""
    out = []
    for n in ast.walk(t):
        if isinstance(n, ast.Call) and not (isinstance(n.func, ast.Attribute) and n.func.attr == "read"
                                            or isinstance(n.func, ast.Name) and n.func.id == "const"):
            for a in n.args:
                if isinstance(a, ast.Constant) and a.value in regs:
                    out.append(n.lineno)
                if isinstance(a, ast.Name) and a.id in ("_CUR_LIMIT", "_ENABLE", "_RELAY"):
                    out.append(n.lineno)
    return out


def test_only_the_control_task_writes_limits_and_the_relay():
    for p in sources(FW):
        if os.path.basename(p) == "control.py":
            continue
        assert not _writes_register(tree(p), (8093, 8094, 8087)), p
    # and control.py does write them (else this test checks nothing)
    assert _writes_register(tree(os.path.join(FW, "control.py")), (8093, 8094))
    src = open(os.path.join(FW, "control.py")).read()
    assert "write1(s, _RELAY," in src  # the phase switching sequence


def test_the_api_and_the_integrations_change_no_device_and_no_site():
    devish = ("d", "e", "dev", "evse", "old", "device", "site")
    for p in [p for p in sources(FW) if upper(p)]:
        for n in ast.walk(tree(p)):
            targets = []
            if isinstance(n, (ast.Assign, ast.AugAssign)):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            for x in targets:
                while isinstance(x, ast.Subscript):
                    x = x.value  # d.cfg["x"] = ... is a change of d too
                if isinstance(x, ast.Attribute):
                    base = x.value
                    while isinstance(base, ast.Attribute):
                        if base.attr == "site":
                            raise AssertionError((p, n.lineno, "app.site..."))
                        base = base.value
                    assert not (isinstance(base, ast.Name) and base.id in devish), (p, n.lineno, ast.dump(x))
