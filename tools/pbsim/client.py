"""Python side of the control channel: start pbsim, send it commands (tests, simrun, tools).

    from pbsim.client import Client, launch
    proc, info = launch(["--baud", "9600"])        # info: the READY object
    with Client(info["control"]) as sim:
        sim.cmd("plug", slave=1, car={"phases": 7})
        sim.cmd("state")["evses"]["1"]["current_ma"]

A reply with "ok": false raises PbsimError (a RuntimeError) unless
`raw(msg, check=False)` is used. Standard library only: importing this module
does not import pymodbus.
"""
import json
import os
import select
import socket
import subprocess
import sys
import time

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class PbsimError(RuntimeError):
    """The simulator refused a command (error: its text) or did not start."""

    def __init__(self, text, error=None):
        RuntimeError.__init__(self, text)
        self.error = error


def command(args=(), python=None):
    """The argv that starts the simulator with these CLI options: python tools/pbsim ..."""
    return [python or sys.executable, PACKAGE_DIR] + list(args)


class Client:
    """Blocking JSON-lines client of the control channel (one connection; not thread-safe)."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.f = self.sock.makefile("rwb")

    def cmd(self, cmd, **params):
        msg = dict(params)
        msg["cmd"] = cmd
        return self.raw(msg)

    def raw(self, msg, check=True):
        """Send one command object; -> the reply object (check: raise PbsimError if not ok)."""
        self.f.write((json.dumps(msg) + "\n").encode())
        self.f.flush()
        line = self.f.readline()
        if not line:
            raise PbsimError("pbsim: control connection closed")
        res = json.loads(line)
        if check and not res.get("ok"):
            raise PbsimError("pbsim: %r -> %r" % (msg, res), res.get("error"))
        return res

    def close(self):
        try:
            self.f.close()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def control(port, msg, host="127.0.0.1", timeout=10.0):
    """One command on its own connection (safe from several threads); -> the reply."""
    with Client(port, host, timeout) as c:
        return c.raw(msg)


def read_ready(proc, timeout=15.0):
    """Read the simulator's READY line from proc.stdout (bytes); -> its object."""
    fd = proc.stdout.fileno()
    buf = b""
    end = time.monotonic() + timeout
    while b"\n" not in buf:
        left = end - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise PbsimError("pbsim did not become ready: %r" % buf)
        r, _, _ = select.select([fd], [], [], left)
        if r:
            buf += os.read(fd, 4096)
    line = buf.split(b"\n", 1)[0].decode()
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise PbsimError("unexpected first line: %r" % line)
    return json.loads(line[6:])


def launch(args=(), python=None, timeout=15.0, **popen_kw):
    """Start pbsim as a subprocess; -> (Popen, READY info dict)."""
    popen_kw.setdefault("stdout", subprocess.PIPE)
    proc = subprocess.Popen(command(args, python), **popen_kw)
    return proc, read_ready(proc, timeout)
