"""The ESP32 build: the frozen-firmware manifest and the cross-compiled modules.

- boards/ESP32_GENERIC/manifest.py is valid Python for MicroPython's manifest
  tool, names only files and packages that exist, and freezes every module of
  lib/ and firmware/ — the packages pblib and pbctl with their sub-packages,
  under their package paths — except boot.py and main.py (they stay files on
  the board), plus the board module pbboard.py.
- every .py of lib/, firmware/ and the board compiles with
  `mpy-cross -march=xtensawin` (tools/mpybuild.py, what `make mpy` runs) into
  the same package directories, and a compile error fails that build.
"""
import glob
import os
import subprocess

import pytest

import mpybuild

ROOT = mpybuild.ROOT
BOARD_DIR = os.path.join(ROOT, "boards", "ESP32_GENERIC")
MANIFEST = os.path.join(BOARD_DIR, "manifest.py")


def py_files(d):
    """Every .py below d (packages and their sub-packages too)."""
    return sorted(glob.glob(os.path.join(ROOT, d, "**", "*.py"), recursive=True))


def run_manifest(path=MANIFEST):
    """Execute a manifest the way tools/manifestfile.py does (from its own
    directory, with the manifest functions as globals), recording the calls;
    returns the calls and the frozen modules as (target path, source path,
    opt): module() freezes one file as its name, package() every .py below
    base_path/package as its path below base_path (manifestfile.py's _search)."""
    calls = {"include": [], "require": [], "module": [], "package": [], "freeze": []}

    def rec(kind):
        def f(*args, **kw):
            calls[kind].append((args, kw))
        return f

    g = {k: rec(k) for k in calls}
    g["options"] = None
    prev = os.getcwd()
    os.chdir(os.path.dirname(path))
    try:
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), g)
        # resolve the paths as the tool does: base_path relative to the manifest
        modules = []
        for args, kw in calls["module"]:
            name = args[0]
            base = kw.get("base_path", args[1] if len(args) > 1 else ".")
            modules.append((name, os.path.abspath(os.path.join(base, name)), kw.get("opt")))
        for args, kw in calls["package"]:
            pkg = args[0]
            base = kw.get("base_path", ".")
            assert "files" not in kw and len(args) == 1, (args, kw)  # every file of the package
            assert os.path.isdir(os.path.join(base, pkg)), "manifest names a missing package: " + pkg
            for top, _, names in os.walk(os.path.join(base, pkg), followlinks=True):
                for n in names:
                    if n.endswith(".py"):
                        target = os.path.relpath(os.path.join(top, n), base)
                        modules.append((target, os.path.abspath(os.path.join(base, target)), kw.get("opt")))
    finally:
        os.chdir(prev)
    return calls, modules


def test_manifest_is_valid_python():
    with open(MANIFEST) as f:
        compile(f.read(), MANIFEST, "exec")


def test_manifest_names_only_existing_files():
    calls, modules = run_manifest()
    assert modules
    for name, path, _ in modules:
        assert name.endswith(".py") and not name.startswith(("/", ".")), name
        assert os.path.isfile(path), "manifest names a missing file: " + path
    assert [a[0] for a, _ in calls["package"]] == ["pblib", "pbctl"]
    assert not calls["freeze"]


def test_manifest_freezes_every_module_but_boot_and_main():
    _, modules = run_manifest()
    # source -> the path it is frozen as (the module's package path on the board)
    frozen = {p: n for n, p, _ in modules}
    want = {}
    for d in ("lib", "firmware"):
        for p in py_files(d):
            want[p] = os.path.relpath(p, os.path.join(ROOT, d))
    assert "boot.py" in want.values() and "main.py" in want.values()
    want = {p: n for p, n in want.items() if n not in ("boot.py", "main.py")}
    want[os.path.join(BOARD_DIR, "pbboard.py")] = "pbboard.py"
    assert frozen == want
    assert "pblib/rtu.py" in frozen.values() and "pbctl/api/cnf.py" in frozen.values()
    assert "pbctl/board/safemode.py" in frozen.values()
    # one module space on the board: no module frozen twice, no two under one name
    names = [n for n, _, _ in modules]
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    assert len(modules) == len(frozen)
    # the same optimisation as tools/mpybuild.py (-O3)
    assert {opt for _, _, opt in modules} == {3}


def test_manifest_port_modules_and_requirements():
    calls, _ = run_manifest()
    assert calls["include"] == [(("$(PORT_DIR)/boards/manifest.py",), {})]
    assert [a[0] for a, _ in calls["require"]] == ["aiorepl"]


def test_manifest_warns_against_frozen_plus_lib():
    with open(MANIFEST) as f:
        text = f.read()
    assert "never both" in text and "shadows" in text


@pytest.fixture(scope="module")
def esp32_build(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("esp32"))
    mpybuild.build(out, "ESP32_GENERIC", "xtensawin")
    return out


def test_every_module_cross_compiles_for_xtensawin(esp32_build):
    srcs = [(p, os.path.relpath(p, os.path.join(ROOT, d))) for d in ("lib", "firmware") for p in py_files(d)]
    srcs.append((os.path.join(BOARD_DIR, "pbboard.py"), "pbboard.py"))
    assert {"pbctl/api/cnf.py", "pblib/httpd.py", "pbctl/board/wifi.py"} <= {r for _, r in srcs}
    for src, name in srcs:
        if name in ("boot.py", "main.py"):
            assert os.path.isfile(os.path.join(esp32_build, name))  # stays source, compiled by the board
            assert not os.path.exists(os.path.join(esp32_build, name[:-3] + ".mpy"))
            r = subprocess.run([mpybuild.mpy_cross(), "-march=xtensawin", "-o", os.devnull, src],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr  # and it is MicroPython
            continue
        mpy = os.path.join(esp32_build, name[:-3] + ".mpy")  # in its package's directory
        assert os.path.isfile(mpy), name
        with open(mpy, "rb") as f:
            head = f.read(4)
        # .mpy v6 bytecode (what MicroPython v1.29 loads), ESP32's 31-bit small ints
        assert head[:2] == b"M\x06" and head[3] == 31, (name, head)
    assert not os.path.exists(os.path.join(esp32_build, "manifest.mpy"))


def test_a_compile_error_fails_the_build(tmp_path, monkeypatch):
    bad = tmp_path / "broken.py"
    bad.write_text("def f(:\n    pass\n")
    monkeypatch.setattr(mpybuild, "sources", lambda board: [(str(bad), "broken.py")])
    with pytest.raises(RuntimeError, match="broken.py"):
        mpybuild.build(str(tmp_path / "out"), "ESP32_GENERIC", "xtensawin")
