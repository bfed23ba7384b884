"""The diagnostic ring (CPython and MicroPython)."""
import diag


def test_lines_in_order_and_wrap():
    r = diag.Ring(64)
    for i in range(3):
        r.put("line %d\n" % i)
    assert r.lines() == ["line 0", "line 1", "line 2"]
    for i in range(3, 20):
        r.put("line %d\n" % i)
    got = r.lines()
    assert got[-1] == "line 19"
    assert len("\n".join(got)) < 64
    nums = [int(x.split()[1]) for x in got]
    assert nums == list(range(nums[0], 20))  # contiguous, oldest partial line dropped


def test_off_logs_nothing():
    r = diag.Ring(64)
    r.log("x")
    r.frame(1, "tx", b"\x01\x03")
    assert r.lines() == []
