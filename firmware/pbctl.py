"""pbctl: start the controller (`run()`), and REPL helpers for a running one:

    >>> import pbctl
    >>> pbctl.status()                 # devices, currents, limits and why
    >>> pbctl.get("max_total_current")
    >>> pbctl.set(max_total_current=25000)
    >>> pbctl.log()                    # the diagnostic ring (cmd=set_diag_logging)
"""
import asyncio
import board
import cnf
import control
import devices  # noqa: F401 (resident: loaded before the on-demand modules that use it)
import httpd
from app import App

app = None  # the running controller, for the REPL helpers


def _warm():
    """Load every on-demand module once, one at a time, while the heap is
    still in one piece: their names are interned for good now (qstr pools
    grow by doubling and need one contiguous block), so loading them later
    on a fragmented heap only needs small blocks."""
    import gc

    for name in cnf.ON_DEMAND:
        __import__(name)
        cnf.unload()
        gc.collect()


async def main():
    global app
    # long-lived buffers first, while the heap is in one piece
    server = httpd.Server(None, max_conns=board.HTTP_MAX_CONNS)
    _warm()
    app = App(board)
    api = cnf.Api(app)
    cnf.unload()  # what the boot needed once (config validation) goes again
    server.handler = api.handle
    app.server = server
    app.control = control.Control(app, app.MAX_EVSES)
    asyncio.create_task(app.control.run())
    wd = getattr(board, "watchdog", None)
    if wd:  # the board's hardware watchdog, fed only while the control loop is healthy
        import watchdog

        asyncio.create_task(watchdog.Watchdog(wd(), app.control).run())
    await server.start(board.HTTP_HOST, board.HTTP_PORT)
    import gc

    gc.collect()
    print("pbctl: serving http://%s:%d/cnf (heap free %d)" % (board.HTTP_HOST, board.HTTP_PORT, gc.mem_free()))
    while True:
        await asyncio.sleep(3600)


def _repl(name, *a, **kw):
    import repl

    try:
        return getattr(repl, name)(app, *a, **kw)
    finally:
        cnf.unload()


def status():
    _repl("status")


def get(name=None):
    return _repl("get", name)


def set(**kw):
    return _repl("set", **kw)


def log():
    _repl("log")


def run():
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("pbctl: stopped")
