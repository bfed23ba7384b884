"""Issue 6 acceptance: the firmware boots from .mpy files under the unix port
with an ESP32-sized heap (`-X heapsize=96k`) and does its whole job there —
polls and controls the bus, answers every kind of command (reads, admin
writes, configuration changes) — with a clean log.

Not yet at 96k on this 64-bit host (BENCHMARKS.md, "Heap"): sustained mixed
traffic, adding devices; those run at simrun.HEAP.

The rest of the e2e suite runs at simrun.HEAP; this one pins 96k, so a
change that no longer fits an ESP32's heap fails here. It is stricter than
the board: objects on this 64-bit host are ~1.7x their size on the ESP32,
and the heap after boot is in holes of under 1 KB, so a command's module
may find no room for a moment (the firmware waits up to ~0.9 s for one,
api/cnf.py roomy). The client here does what the web UI does (README,
"Never an empty answer"): after a 503 "out of memory" it asks again, 0.3,
0.6 and 1.2 s later; any other answer, or a fourth 503, fails the test."""
import json

import pytest

from conftest import running
from simrun import ADMIN, asked_again, wait_for

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def sim96():
    yield from running(heap="96k")


def ask(sim, query, auth=None, body=None):
    """(status, JSON) of a GET (a POST with body), asked again after a 503
    "out of memory" as the web UI does (the module docstring)."""
    if body is None:
        return asked_again(lambda: sim.get(query, auth))[0]
    data = json.dumps(body).encode()
    return asked_again(lambda: sim.request(query, auth, data, "POST", JSON)[:2])[0]


def room_left(sim):
    """More than 8 KB free for requests (sys_info's figure, after a
    collection): once the connections before it have ended, within 3 s."""
    def free():
        st, d = ask(sim, "cmd=sys_info")
        assert st == 200, d
        return d["mem_free"] > 8192 and d

    wait_for(free, 3, "more than 8 KB free")


def post(sim, query, body):
    return ask(sim, query, ADMIN, body)


def test_boots_and_serves_at_96k(sim96):
    room_left(sim96)
    st, info = ask(sim96, "cmd=get_dev_info")
    assert st == 200
    assert [x["dev_id"] for x in info["devices"]] == ["E1", "M1", "M2"]


def test_control_loop_runs_and_writes_at_96k(sim96):
    sim96.control(cmd="plug", slave=1, car={"phases": 7, "max_ma": 16000})

    def written():
        limit, enable = sim96.control(cmd="get_regs", slave=1, addr=8093, count=2)["values"]
        return enable == 1 and limit >= 60 and (limit, enable)

    wait_for(written, 20, "a charging limit written to E1")

    def charging():
        e1 = ask(sim96, "cmd=get_dev_info")[1]["devices"][0]
        return e1["state"] in (3, 4) and e1["charging_enabled"] and e1

    wait_for(charging, 20, "E1 charging")


def test_every_kind_of_command_at_96k(sim96):
    assert ask(sim96, "cmd=get_params")[0] == 200
    assert ask(sim96, "cmd=modbus&device=evse&read=8092", ADMIN)[0] == 200
    assert ask(sim96, "cmd=modbus&device=evse&write=8044&value=3", ADMIN) == (200, "ok")
    assert post(sim96, "cmd=set_params", {"reserve_current": 1000}) == (200, "ok")
    assert ask(sim96, "cmd=get_params")[1]["reserve_current"] == 1000
    assert [x["dev_id"] for x in ask(sim96, "cmd=get_dev_info")[1]["devices"]] == ["E1", "M1", "M2"]
    room_left(sim96)
