"""cmd=sys_info: heap and uptime figures for benchmarks and support. Loaded on demand.

Open like get_dev_info. `mem_free` is measured after a collection, with this
small module itself loaded.
"""
import gc
import sys
import time


async def sys_info(app, req):
    gc.collect()
    return {
        "mem_free": gc.mem_free(),
        "mem_alloc": gc.mem_alloc(),
        "uptime": time.ticks_diff(time.ticks_ms(), app.boot_ms) // 1000,
        "requests": app.server.requests if app.server else 0,
        "cycles": app.control.cycles if app.control else 0,
        "modules": sorted(sys.modules),
    }
