"""pbsim's command line.

    .venv/bin/python tools/pbsim [options]          (or: cd tools; python -m pbsim)

    --link PATH         also publish the firmware's tty as symlink PATH (replaced
                        if it is a symlink; removed at exit). READY reports PATH.
    --baud N            line speed for the wire-time emulation (default 9600)
    --parity N|E|O      parity (default N); E/O add one bit per character
    --control-host H    control server address (default 127.0.0.1)
    --control-port N    control server TCP port (default 0 = pick a free port)
    --evse-ids LIST     EVSE slave ids, comma separated (default: the scenario's
                        "evse_ids", else "1"). Meters are always slaves 2 and 3.
    --scenario FILE     JSON scenario (scenario.py); turns the physics on at start
    --speed X           physics time factor (default 1.0; 10 = ten times faster)
    --latency-ms N      extra device turnaround before a reply (default 0)
    --no-wire-time      deliver frames immediately (no baud-rate emulation)
    --verbose           pymodbus log + bridge trace on stderr (default: silent)

After the ptys exist and pymodbus listens, exactly one line goes to stdout:

    READY {"tty": "<path the firmware must open>", "control": <port>, "baud": <baud>}

SIGINT/SIGTERM: clean exit with status 0 (symlink removed, no traceback).
Bad options or a bad scenario: a message on stderr, exit status 2.
"""
import os
import sys

if not __package__:  # started as `python tools/pbsim`: make the package importable
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402

from pbsim.checks import CmdError  # noqa: E402
from pbsim.simulator import Simulator  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(prog="pbsim", description="Simulated Power Brain RS-485 bus")
    p.add_argument("--link", help="publish the firmware tty as this symlink")
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--parity", choices=("N", "E", "O"), default="N")
    p.add_argument("--control-host", default="127.0.0.1")
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--evse-ids", default=None)
    p.add_argument("--scenario")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--no-wire-time", action="store_true")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.baud <= 0 or args.speed <= 0 or args.latency_ms < 0:
        p.error("baud and speed must be > 0, latency >= 0")
    return args


def quiet_logging(verbose):
    lg = logging.getLogger("pymodbus")
    if verbose:
        from pymodbus import pymodbus_apply_logging_config
        pymodbus_apply_logging_config(logging.DEBUG)
    else:
        lg.addHandler(logging.NullHandler())
        lg.propagate = False
        lg.setLevel(logging.CRITICAL + 1)


async def amain(args):
    sim = Simulator(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        tty_path = await sim.start()
        sys.stdout.write("READY %s\n" % json.dumps(
            {"tty": tty_path, "control": sim.control_port, "baud": sim.baud}))
        sys.stdout.flush()
        await stop.wait()
        await sim.stop()
    finally:
        sim.cleanup()
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_logging(args.verbose)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
            return 2
        raise
    except (OSError, ValueError, CmdError) as exc:
        sys.stderr.write("pbsim: %s\n" % exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
