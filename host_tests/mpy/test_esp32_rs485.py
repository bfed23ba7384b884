"""RS-485 driver-enable timing of rtu.Master, under MicroPython with a fake UART.

On the board the MAX485's DE and /RE share GPIO4: DE high drives the bus and
mutes our receiver. It must go high before the first byte is written, and go
low only after the UART reports the last stop bit sent (`UART.txdone()`,
not a fixed sleep) — and before the reply comes, or its first bytes are lost.

The program (mpy/scripts/rs485_de_timing.py) gives rtu.Master a UART that behaves like the ESP32's:
write() queues bytes that take 10 bit times each on the wire, txdone() is
true only once they all have, the reply arrives a turnaround after that and
is readable (and pollable: an io.IOBase stream, which asyncio polls like
machine.UART) from then on. The pin records every value() call. The
transitions are checked here, in CPython.
"""
import json
import os

import pytest

import mp


def run_script(baud, extra_dirs=()):
    r = mp.run([mp.script("rs485_de_timing.py"), str(baud)], extra_dirs=extra_dirs, timeout=60)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, text
    return {t["name"]: t for t in json.loads(line[0][7:])}


@pytest.fixture(scope="module")
def runs():
    return {baud: run_script(baud) for baud in (9600, 115200)}


def de_order(t):
    """Check one transaction's log; returns (first DE-low time, wire end)."""
    log = t["log"]
    kinds = [e[1] for e in log]
    writes = [i for i, k in enumerate(kinds) if k == "write"]
    assert writes, log
    de = [(i, e[2]) for i, e in enumerate(log) if e[1] == "de"]
    # DE high first, before the first byte is written
    assert de and de[0][1] == 1 and de[0][0] < writes[0], log
    assert log[de[0][0]][0] <= log[writes[0]][0]
    # it stays high while the frame is written
    lows = [i for i, v in de if v == 0]
    assert lows and lows[0] > writes[-1], log
    low = lows[0]
    wire_end = log[writes[-1]][3]
    # released only after txdone() said the last stop bit is out
    done = [i for i, k in enumerate(kinds) if k == "txdone"]
    assert done and writes[-1] < done[0] < low, "DE released before txdone() was true: %r" % log
    assert log[low][0] >= wire_end, "DE released %d us before the last stop bit" % (wire_end - log[low][0])
    # never high again in this transaction
    assert all(v == 0 for i, v in de if i > low), log
    # and released before the reply is read
    reads = [i for i, k in enumerate(kinds) if k == "read"]
    assert all(i > low for i in reads), log
    return log[low][0], wire_end, reads


@pytest.mark.parametrize("baud", [9600, 115200])
@pytest.mark.parametrize("name", ["read10", "write1_chunked", "writen_chunked"])
def test_de_around_each_frame(runs, baud, name):
    t = runs[baud][name]
    assert t["result"] == "ok", t
    low, wire_end, reads = de_order(t)
    assert reads  # the reply was read, after DE went low
    # and DE was not held long past the frame: the reply comes 3 chars later
    char_us = 10 * 1000000 // baud
    assert t["log"][reads[0]][0] >= wire_end + 3 * char_us
    # the chunked writes really were several write() calls under one DE high
    n_writes = sum(1 for e in t["log"] if e[1] == "write")
    assert n_writes == (1 if name == "read10" else 3 if name == "write1_chunked" else 3)


@pytest.mark.parametrize("baud", [9600, 115200])
def test_de_released_without_reply(runs, baud):
    t = runs[baud]["no_reply"]
    assert t["result"] == "modbus timeout", t
    de_order(t)
    assert t["log"][-1][1:] == ["de", 0]  # and low at the end


def test_a_fixed_sleep_is_caught(tmp_path):
    """The checks are not vacuous: a master that does not wait for txdone()
    (a fixed sleep too short for the frame) fails them."""
    src = open(os.path.join(mp.ROOT, "lib", "pblib", "rtu.py")).read()
    wait = "while not self._txdone():"
    assert wait in src, "lib/pblib/rtu.py changed: update this test"
    # a pblib package of its own, first on the path, holding the changed master
    (tmp_path / "pblib").mkdir()
    (tmp_path / "pblib" / "rtu.py").write_text(src.replace(wait, "while False:"))
    t = run_script(9600, extra_dirs=(str(tmp_path),))["read10"]
    with pytest.raises(AssertionError, match="before the last stop bit|txdone"):
        de_order(t)
