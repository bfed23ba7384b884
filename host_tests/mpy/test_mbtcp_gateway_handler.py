"""The Modbus TCP gateway's handler under MicroPython (the .mpy build, 96 KB
heap): host_tests/mpy/scripts/mbtcp_gateway.py drives
firmware/pbctl/integrations/mbtcp.py against a fake control task and prints
each case's exception code (0: the normal reply), whether it took the 2 s
bound, the requests it handed in and the bytes it read; compared here exactly.
The same over the network against the simulator: e2e/test_mbtcp_gateway.py."""
import mp

WANT = """no_device 10  []
not_read_yet 11  []
bus_read 0  [] 01020304
bus_exception 2  []
bus_timeout 11  []
bus_busy 6 >=2s []
cap 0  [('cap', 'E1', 0, 8000)]
cap_0 0  [('cap', 'E1', 0, 100)]
fn16 0  [('cap', 'E1', 0, 6000), ('enable', 'E1', 0, False)]
phases 0  [('disconnect', 'E1', 5), ('wish', 'E1', 1)]
three 0  [('wish', 'E1', 3)]
bad_enable 3  []
other_reg 2  []
meter 2  []
queue_full 6  []
no_pass 11  [('enable', 'E1', 0, True)]
mode_1 1  []
status 1 {port} '' 0 0 4 6
shed 1 0
stop [('release', 0)] []
DONE
"""


def test_the_handler_maps_reads_writes_and_failures():
    base = mp.free_base()
    r = mp.run([mp.script("mbtcp_gateway.py"), str(base)], built=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == WANT.format(port=base), r.stdout + r.stderr
