"""Only ESP32 APIs: type-check the firmware against MicroPython v1.29's ESP32 stubs.

    python tools/check.py            # lib/, firmware/ (packages too), boards/ESP32_GENERIC (`make check`)
    python tools/check.py --all      # every mypy finding, not just the API ones
    python tools/check.py FILE...    # other files (with lib/, firmware/ and the board on the path)

mypy runs with the typeshed of `micropython-stdlib-stubs` merged with the
modules of `micropython-esp32-stubs` (the board's `machine`, `time`, `json`,
`network`, `ntptime`, ...), so `time.monotonic()`, `json.dumps(indent=2)`,
`machine.UART(..., bogus=1)` or `import termios` fail here although they run
under CPython or the unix port. Blind spots of the stubs: builtins, `os`
and `asyncio` are typeshed's CPython ones cut down, so CPython-only methods
there (`os.getenv`, `str.removeprefix`) still pass, and modules that exist
only for the type checker (`typing`, `abc`, `enum`) look importable. A short
syntax pass after mypy catches the ones docs/CONVENTIONS.md names: imports of
those modules, `int.from_bytes(..., signed=True)`, `str.format_map`.

The tools live in their own venv, `.venv-check` (created on first use, pinned
below), so `make test` does not install them into `.venv`. boards/HOST/ and
host_tests/shim/ (the host-only shims) are never checked. Settings:
tools/check.ini (which mypy error codes count in the default run, and why).
"""
import ast
import glob
import hashlib
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv-check")
PINS = ("mypy==2.4.1", "micropython-esp32-stubs==1.29.0.post1", "micropython-stdlib-stubs==1.29.0.post2")
BOARD = "ESP32_GENERIC"
CONFIG = os.path.join(ROOT, "tools", "check.ini")
TYPESHED = os.path.join(ROOT, "build", "check", "typeshed")  # named in check.ini too
STUB_DISTS = ("micropython_stdlib_stubs", "micropython_esp32_stubs")
_KEY = hashlib.sha1(" ".join(PINS).encode()).hexdigest()[:12]


def venv_python():
    return os.path.join(VENV, "bin", "python")


def ensure_venv():
    """Create .venv-check with the pinned tools (once per set of pins)."""
    stamp = os.path.join(VENV, ".installed-" + _KEY)
    if os.path.exists(stamp):
        return
    if not os.path.exists(venv_python()):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    with open(os.path.join(VENV, ".gitignore"), "w") as f:
        f.write("*\n")  # not part of the repository (Python 3.13's venv writes this itself)
    r = subprocess.run([venv_python(), "-m", "pip", "install", "-q", "--disable-pip-version-check"] + list(PINS),
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit("check: installing %s into %s failed:\n%s" % (" ".join(PINS), VENV, r.stdout + r.stderr))
    for old in glob.glob(os.path.join(VENV, ".installed-*")):
        os.remove(old)
    open(stamp, "w").close()


def _purelib():
    r = subprocess.run([venv_python(), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       check=True, capture_output=True, text=True)
    return r.stdout.strip()


def ensure_typeshed():
    """build/check/typeshed: the stdlib stubs' typeshed with the ESP32 modules added to its stdlib.

    The ESP32 stubs are top-level .pyi files, which mypy does not take from
    site-packages (no package, no py.typed) and which must win over CPython's
    modules of the same name: as part of the custom typeshed's stdlib they do.
    """
    stamp = os.path.join(TYPESHED, ".built-" + _KEY)
    if os.path.exists(stamp):
        return TYPESHED
    if os.path.exists(TYPESHED):
        shutil.rmtree(TYPESHED)
    site = _purelib()
    added = set()
    for dist in STUB_DISTS:
        records = glob.glob(os.path.join(site, dist + "-*.dist-info", "RECORD"))
        if len(records) != 1:
            raise SystemExit("check: %s is not installed in %s" % (dist, VENV))
        with open(records[0]) as f:
            paths = [line.split(",")[0] for line in f]
        for rel in paths:
            if not rel.endswith(".pyi") and os.path.basename(rel) != "VERSIONS":
                continue
            if rel.startswith(("stdlib/", "stubs/")):
                dst = rel
            else:  # a board module: into the stdlib
                dst = "stdlib/" + rel
                added.add(rel.split("/")[0].replace(".pyi", ""))
            dst = os.path.join(TYPESHED, dst)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(os.path.join(site, rel), dst)
    versions = os.path.join(TYPESHED, "stdlib", "VERSIONS")
    with open(versions) as f:
        known = {line.split(":")[0].strip() for line in f if ":" in line and not line.startswith("#")}
    with open(versions, "a") as f:
        f.write("\n# MicroPython ESP32 modules (added by tools/check.py)\n")
        for name in sorted(added - known):
            f.write("%s: 3.0-\n" % name)
    open(stamp, "w").close()
    return TYPESHED


def _disabled_codes():
    with open(CONFIG) as f:
        for line in f:
            if line.startswith("disable_error_code"):
                return [c.strip() for c in line.split("=", 1)[1].split(",") if c.strip()]
    return []


def targets():
    """Everything that runs on the board: lib/ and firmware/ with their packages
    (pblib, pbctl and its sub-packages), the board module (not its manifest)."""
    out = []
    for d in ("lib", "firmware"):
        out += sorted(glob.glob(os.path.join(ROOT, d, "**", "*.py"), recursive=True))
    out += sorted(glob.glob(os.path.join(ROOT, "boards", BOARD, "*.py")))
    return [os.path.relpath(p, ROOT) for p in out if os.path.basename(p) != "manifest.py"]


# Modules that the stubs provide for mypy's sake but the ESP32 firmware does not have.
NOT_ON_BOARD = ("typing", "typing_extensions", "_typeshed", "abc", "enum", "types", "dataclasses", "collections.abc")


def conventions(path):
    """The syntax pass: findings as mypy-style lines."""
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        for name in names:
            if name in NOT_ON_BOARD or name.split(".")[0] in NOT_ON_BOARD:
                out.append("%s:%d: error: module %s is not on the ESP32  [esp32-import]" % (path, node.lineno, name))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr = node.func.attr
            if attr == "from_bytes" and any(k.arg == "signed" for k in node.keywords):
                out.append("%s:%d: error: int.from_bytes() takes no signed= on MicroPython: decode the sign by hand"
                           "  [esp32-builtin]" % (path, node.lineno))
            elif attr == "format_map":
                out.append("%s:%d: error: str.format_map() does not exist on MicroPython  [esp32-builtin]"
                           % (path, node.lineno))
    return out


def run(files=None, all_codes=False):
    """Run mypy; returns (exit code, output)."""
    ensure_venv()
    ensure_typeshed()
    cmd = [venv_python(), "-m", "mypy", "--config-file", CONFIG]
    if all_codes:  # switch the codes check.ini leaves out back on
        for code in _disabled_codes():
            cmd += ["--enable-error-code", code]
    env = dict(os.environ)
    env.pop("MYPYPATH", None)  # the path is check.ini's
    files = list(files or targets())
    r = subprocess.run(cmd + files, cwd=ROOT, env=env, capture_output=True, text=True)
    extra = [line for p in files for line in conventions(p)]
    out = r.stdout + r.stderr + "".join(line + "\n" for line in extra)
    if extra:
        out += "%d more in the syntax pass\n" % len(extra)
    return r.returncode or (1 if extra else 0), out


def main(argv):
    all_codes = "--all" in argv
    files = [a for a in argv if not a.startswith("--")]
    code, out = run(files or None, all_codes)
    sys.stdout.write(out)
    sys.stdout.flush()
    if code:
        print("check: the code above uses something MicroPython v1.29 on the ESP32 does not have "
              "(or mypy cannot tell that it does); see tools/check.py", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
