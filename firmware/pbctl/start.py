"""Start-up: everything `pbctl.main()` does once, loaded on demand, so its code
is freed again when the controller runs.

`demand` names the on-demand modules (api/cnf.py's table and what those
import: pbctl.main() found them); everything else this start-up imports stays
loaded. Order matters on a small heap: pbctl.main() has loaded
every on-demand module once before (their names are interned for good), the
imports below bring the resident code into the holes those left, then come
the HTTP server's long-lived head buffers, the configuration and devices, and
the tasks.
"""
import sys
import time

import asyncio

from pblib import balancer  # noqa: F401 (resident: the load balancer)
from pblib import httpd, rtu

from pbctl import app, control, devices  # noqa: F401 (devices: resident, the device model)
from pbctl.api import cnf


async def start(board, demand, reserve=None):
    # what is loaded now (this module's imports) is resident, whatever else imports it
    demand = tuple(k for k in demand if k not in sys.modules or k == __name__)
    # 1.5 KB heads: a browser's request with Basic auth is ~700 bytes. Two
    # buffers are kept for good, so one slow client (or a request waiting on
    # the bus) never keeps another from being served; connections 3 and 4
    # borrow one (a heap without a 1.5 KB hole then answers 503 "out of memory")
    # one 4 KB body buffer kept: a POSTed device or user (1-3 KB) fits without a
    # block that large, which a heap holding a large configuration may not have
    server = httpd.Server(None, max_conns=board.HTTP_MAX_CONNS, max_head=1536, prealloc=2, realm="cnf",
                          admin_slot=True, body_buf=4096)
    bus = rtu.Master(board.uart(), board.BAUD, board.de_pin(), timeout_ms=board.BUS_TIMEOUT_MS,
                     retries=board.BUS_RETRIES)
    # the list files' line buffer: a user's line is up to ~2 KB, a block a
    # heap holding a large configuration may not have later (app.take_line)
    line = bytearray(2560)
    from pbctl import config

    site = config.load(board.FLASH, time.ticks_ms())
    # the OCPP client's buffers, reserved by pbctl.main() before the heap was fragmented
    reserve = {"ocpp": reserve} if reserve and site.params["ocpp_url"] else {}
    pwd = getattr(board, "ADMIN_PWD", "")
    if pwd and not site.admin:
        # host simulation only: the board shim may preset the first password
        from pbctl.api import auth

        site.admin = auth.make_secret(pwd)
    # balancer slots for the EVSEs configured (set_params adds more when needed)
    ctl = control.Control(site, bus, board.FLASH, max(1, len([d for d in site.devices if d.is_evse])))
    ctl.clock_offset = getattr(board, "CLOCK_OFFSET", 0)
    a = app.App(board, site, ctl, server)
    server.admit = a.admit
    server.vip = a.known  # the clients the admin logged in from get in first
    a.demand = demand
    a.line = line
    a.reserve = reserve
    server.handler = cnf.Api(a).handle
    server.stream = cnf.streamed  # (cmd=update: the bundle a piece at a time)
    cnf.unload(demand)  # what the boot needed once (configuration loading) goes again
    asyncio.create_task(ctl.run())
    wd = getattr(board, "watchdog", None)
    if wd:  # the board's hardware watchdog, fed only while the control loop is healthy
        from pbctl.board import watchdog

        asyncio.create_task(watchdog.Watchdog(wd(), ctl).run())
    await server.start(board.HTTP_HOST, board.HTTP_PORT)
    a.links_changed()  # the integrations the configuration switches on
    if getattr(board, "WIFI", False):  # a real board: WiFi, status LED, start marked good
        from pbctl.board import onboard

        onboard.start(a)
    else:  # the host: a version installed over HTTP still tentative is marked good the same way
        try:
            with open(board.FLASH + "/fw.json") as f:
                p = f.read()  # (pbslot's pointer, tiny; no module loaded for it)
        except OSError:
            p = ""
        if '"ok": 0' in p:
            from pbctl.board import onboard

            asyncio.create_task(onboard.mark_good(ctl, getattr(board, "GOOD_MS", None)))
    try:  # the REPL beside the running controller (on the board; the host runs without it)
        import aiorepl

        asyncio.create_task(aiorepl.task())
    except ImportError:
        pass
    return a
