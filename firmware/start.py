"""Start-up: everything `pbctl.main()` does once, loaded on demand (cnf.ON_DEMAND),
so its code is freed again when the controller runs.

Order matters on a small heap: pbctl.main() has loaded every on-demand
module once before (their names are interned for good), this module's
imports bring the resident code into the holes those left, then come the
HTTP server's long-lived head buffer, the configuration and devices, and the
tasks.
"""
import asyncio

import cnf
import control
import devices  # noqa: F401 (resident: the device model)
import httpd
from app import App


async def start(board):
    # 1.5 KB heads: a browser's request with Basic auth is ~700 bytes. Two
    # buffers are kept for good, so one slow client (or a request waiting on
    # the bus) never keeps another from being served; connections 3 and 4
    # borrow one (a heap without a 1.5 KB hole then answers 503 "out of memory")
    server = httpd.Server(None, max_conns=board.HTTP_MAX_CONNS, max_head=1536, prealloc=2)
    app = App(board)
    api = cnf.Api(app)
    cnf.unload()  # what the boot needed once (config validation) goes again
    server.handler = api.handle
    app.server = server
    # balancer slots for the EVSEs configured (set_params adds more when needed)
    app.control = control.Control(app, max(1, len([d for d in app.devices if d.is_evse])))
    asyncio.create_task(app.control.run())
    wd = getattr(board, "watchdog", None)
    if wd:  # the board's hardware watchdog, fed only while the control loop is healthy
        import watchdog

        asyncio.create_task(watchdog.Watchdog(wd(), app.control).run())
    await server.start(board.HTTP_HOST, board.HTTP_PORT)
    if getattr(board, "WIFI", False):  # a real board: WiFi, status LED, start marked good
        import onboard

        onboard.start(app)
    try:  # the REPL beside the running controller (on the board; the host runs without it)
        import aiorepl

        asyncio.create_task(aiorepl.task())
    except ImportError:
        pass
    return app
