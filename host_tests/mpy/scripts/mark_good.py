# onboard.mark_good() under MicroPython: a start counts as good (the failed-start
# count goes) only once a stand-in control loop has run cycles and is not
# hung. Needs PBCTL_FLASH (the HOST board's flash). Prints RESULT <json>.
# Run by host_tests/board/test_esp32_onboard.py.
import json
import time

import asyncio
from pbctl.board import onboard, safemode


class Ctl:
    cycles = 0
    last_ok_ms = 0


async def main():
    ctl = Ctl()
    with open(safemode._path(safemode.COUNT), "w") as f:
        f.write("2")
    task = asyncio.create_task(onboard.mark_good(ctl, good_ms=200, poll_ms=20))
    out = {}

    def count():
        try:
            with open(safemode._path(safemode.COUNT)) as f:
                return f.read()
        except OSError:
            return None

    await asyncio.sleep_ms(300)
    out["no_cycle_yet"] = count()
    ctl.cycles = 1
    ctl.last_ok_ms = time.ticks_add(time.ticks_ms(), -95000)  # a hung loop
    await asyncio.sleep_ms(100)
    out["hung"] = count()
    ctl.last_ok_ms = time.ticks_ms()
    await asyncio.sleep_ms(100)
    out["running"] = count()
    out["task_done"] = task.done()
    print("RESULT " + json.dumps(out))


asyncio.run(main())
