"""Updates over HTTP on the running firmware (README "Updates over HTTP").

- A bundle (tools/bundle.py, `make bundle`) is uploaded in pieces over 4 s
  while a car charges at 16 A: the control loop keeps polling the wallbox
  every cycle and the car's current stays; the version is staged, switched
  to (tentative) and, after the restart, runs and is marked good.
- Bad bundles (wrong hash, truncated, oversize, another board, no body, no
  credentials) get their exact error and change nothing on flash.
- A version that crashes at start runs 3 times, then the previous version
  boots again (sys_info.update.failed).

Boots are modelled as on the board: the firmware process is started again
on the same flash directory (simrun's boot_image() runs pbslot.select()
first, as the board's boot.py); the update's restart is the process ending
with status 75 (boards/HOST reset()).
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

import bundle
import mpybuild
from simrun import ADMIN, ROOT, Sim, read_all

OCTETS = {"Content-Type": "application/octet-stream"}


def snapshot(flash):
    out = {}
    for top, _, names in os.walk(flash):
        for n in names:
            p = os.path.join(top, n)
            if "/fw" in p or n.startswith("fw."):
                with open(p, "rb") as f:
                    out[os.path.relpath(p, flash)] = hashlib.sha256(f.read()).hexdigest()
    return out


def raw_post(sim, query, head_extra, body, shut=False, timeout=10):
    """Status line and JSON reply of a POST sent as given (body may be shorter than its length)."""
    c = socket.create_connection(("127.0.0.1", sim.http_port), timeout=timeout)
    try:
        c.sendall(("POST /cnf?%s HTTP/1.1\r\nAuthorization: Basic YWRtaW46MTIzNGFiY2Q=\r\n%s\r\n"
                   % (query, head_extra)).encode() + body)
        if shut:
            c.shutdown(socket.SHUT_WR)
        data = read_all(c)
    finally:
        c.close()
    head, _, b = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(b)


@pytest.fixture(scope="module")
def new_bundle():
    return bundle.build("HOST", ver="9.9.9-test")


def test_upload_while_charging_then_boot_and_confirm(tmp_path, new_bundle):
    flash = str(tmp_path / "flash")
    s = Sim(flash=flash)
    s.start()
    try:
        st, obj = s.request("cmd=set_params", ADMIN, b'{"cycle_time": 1000}', "POST",
                            {"Content-Type": "application/json"})[:2]
        assert (st, obj) == (200, "ok")
        s.control(cmd="plug", slave=1, car={"phases": 7, "max_ma": 16000})
        end = time.time() + 20
        while s.control(cmd="state")["evses"]["1"]["current_ma"] != [16000] * 3:
            assert time.time() < end
            time.sleep(0.2)
        assert s.get("cmd=sys_info", ADMIN)[1]["update"] == {
            "version": "0.2.0", "slot": "", "tentative": False, "tries": 0, "previous": "", "failed": ""}
        cycles0 = s.get("cmd=sys_info", ADMIN)[1]["cycles"]
        # the upload: 4 s in 40 pieces, the car charging
        c = socket.create_connection(("127.0.0.1", s.http_port), timeout=10)
        c.sendall(("POST /cnf?cmd=update&restart=0 HTTP/1.1\r\nAuthorization: Basic YWRtaW46MTIzNGFiY2Q=\r\n"
                   "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                   % len(new_bundle)).encode())
        t0 = time.time()
        currents = []
        step = len(new_bundle) // 40 + 1
        for i in range(0, len(new_bundle), step):
            c.sendall(new_bundle[i : i + step])
            currents.append(s.control(cmd="state")["evses"]["1"]["current_ma"])
            time.sleep(0.1)
        data = read_all(c)
        c.close()
        took = time.time() - t0
        assert data.split(b"\r\n")[0] == b"HTTP/1.1 200 OK", data
        assert json.loads(data.partition(b"\r\n\r\n")[2]) == {"version": "9.9.9-test", "restart": False}
        info = s.get("cmd=sys_info", ADMIN)[1]
        # the control loop kept its cycle (1 s) through the upload; the car charged on
        assert info["cycles"] - cycles0 >= int(took) - 1, (info["cycles"], cycles0, took)
        assert all(a == [16000] * 3 for a in currents), currents
        assert info["update"] == {"version": "9.9.9-test", "slot": "s1", "tentative": True, "tries": 0,
                                  "previous": "factory", "failed": ""}
        with open(os.path.join(flash, "fw", "s1", "pbctl.romfs"), "rb") as f:
            assert f.read() == new_bundle[new_bundle.index(b"pbctl.romfs\n") + 12 :]
    finally:
        s.stop()
    # the next boot runs it, tentative; 2 s of control cycles later it is good
    s = Sim(flash=flash, fw_env={"PBCTL_GOOD_MS": "2000"})
    s.start()
    try:
        assert s.get("cmd=sys_info", ADMIN)[1]["update"]["tries"] == 1
        end = time.time() + 15
        while s.get("cmd=sys_info", ADMIN)[1]["update"]["tentative"]:
            assert time.time() < end
            time.sleep(0.5)
        info = s.get("cmd=sys_info", ADMIN)[1]
        assert info["update"] == {"version": "9.9.9-test", "slot": "s1", "tentative": False, "tries": 0,
                                  "previous": "factory", "failed": ""}
        assert "pbctl.board.onboard" not in info["modules"] and "pbslot" not in info["modules"]
    finally:
        s.stop()


def test_bad_bundles_change_nothing(tmp_path, new_bundle):
    flash = str(tmp_path / "flash")
    s = Sim(flash=flash)
    s.start()
    try:
        st, obj = s.request("cmd=update&restart=0", ADMIN, new_bundle, headers=OCTETS)[:2]
        assert (st, obj) == (200, {"version": "9.9.9-test", "restart": False})
        before = snapshot(flash)
        i = new_bundle.index(b"pbctl.romfs\n") + 100
        wrong = new_bundle[:i] + bytes([new_bundle[i] ^ 1]) + new_bundle[i + 1 :]
        other = new_bundle.replace(b" HOST ", b" ESP32_GENERIC ", 1)
        cases = [
            (wrong, 400, "hash mismatch: pbctl.romfs"),
            (other, 400, "bundle for another board"),
            (new_bundle + b"\n", 400, "bad bundle"),
            (b"GET / HTTP/1.1\r\n", 400, "bad bundle"),
        ]
        for body, status, msg in cases:
            assert s.request("cmd=update&restart=0", ADMIN, body, headers=OCTETS)[:2] == (status, msg)
            assert snapshot(flash) == before
        # truncated: the client stops 1000 bytes short and closes its side
        assert raw_post(s, "cmd=update", "Content-Length: %d\r\n" % len(new_bundle), new_bundle[:-1000],
                        shut=True) == (400, "truncated bundle")
        # oversize: refused from its length, before a byte is read or written
        assert raw_post(s, "cmd=update", "Content-Length: %d\r\n" % (2 << 20), b"", shut=True) == (
            413, "bundle too large")
        assert s.get("cmd=update", ADMIN) == (400, "bad bundle")  # no body (a GET)
        assert s.request("cmd=update", None, new_bundle, headers=OCTETS)[:2] == (401, "authentication required")
        assert snapshot(flash) == before
        assert s.get("cmd=get_params")[0] == 200  # still serving
        log = "".join(s.fw_lines)
        assert "Traceback" not in log and "MemoryError" not in log, log
    finally:
        s.stop()


def crashing_bundle(tmp_path):
    """This build with a pbctl/start.mpy that raises: a version that never starts."""
    src = mpybuild.build(os.path.join(ROOT, "build", "rom"), "HOST", root="/rom/")
    d = str(tmp_path / "crash")
    shutil.copytree(src, d)
    py = tmp_path / "start.py"
    py.write_text("raise RuntimeError('boom: this version does not start')\n")
    subprocess.run([mpybuild.mpy_cross(), "-o", os.path.join(d, "pbctl", "start.mpy"), "-s",
                    "/rom/pbctl/start.mpy", str(py)], check=True)
    image = str(tmp_path / "crash.romfs")
    mpybuild.romfs(d, image)
    with open(image, "rb") as f:
        return bundle.pack([("pbctl.romfs", f.read())], "HOST", "6.6.6-crash")


def test_a_version_that_crashes_at_start_is_rolled_back(tmp_path):
    flash = str(tmp_path / "flash")
    data = crashing_bundle(tmp_path)
    s = Sim(flash=flash)
    s.start()
    try:
        st, obj = s.request("cmd=update", ADMIN, data, headers=OCTETS)[:2]
        assert (st, obj) == (200, {"version": "6.6.6-crash", "restart": True})
        assert s.fw.wait(10) == 75  # the restart (boards/HOST reset())
    finally:
        s.stop()
    for boot in (1, 2, 3):  # the new version's 3 starts: each one fails
        s = Sim(flash=flash)
        with pytest.raises(RuntimeError) as e:
            s.start(timeout=20)
        assert "boom: this version does not start" in str(e.value)
        with open(os.path.join(flash, "fw.json")) as f:
            assert json.load(f)["tries"] == boot
    s = Sim(flash=flash)  # the 4th boot: the version before it
    s.start()
    try:
        assert s.get("cmd=sys_info", ADMIN)[1]["update"] == {
            "version": "0.2.0", "slot": "", "tentative": False, "tries": 0, "previous": "",
            "failed": "6.6.6-crash"}
        assert s.get("cmd=get_dev_info")[0] == 200
    finally:
        s.stop()
