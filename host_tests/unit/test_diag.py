"""The diagnostic ring (CPython and MicroPython)."""
from pbctl import diag


def test_lines_in_order_and_wrap():
    r = diag.Ring(64)
    for i in range(3):
        r.put("line %d\n" % i)
    assert list(r.lines()) == ["line 0", "line 1", "line 2"]
    for i in range(3, 20):
        r.put("line %d\n" % i)
    got = list(r.lines())  # (a generator: a line at a time)
    assert got[-1] == "line 19"
    assert len("\n".join(got)) < 64
    nums = [int(x.split()[1]) for x in got]
    assert nums == list(range(nums[0], 20))  # contiguous, oldest partial line dropped


def test_off_logs_nothing():
    r = diag.Ring(64)
    r.log("x")
    r.frame(1, "tx", b"\x01\x03")
    assert list(r.lines()) == []


def test_lines_stop_when_the_writer_overtakes_the_reader():
    r = diag.Ring(64)
    for i in range(10):
        r.put("line %d\n" % i)
    it = r.lines()
    first = next(it)
    r.put("x" * 100)  # the ring is overwritten while it is read
    assert first.startswith("line") and list(it) == []
