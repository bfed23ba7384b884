"""pbctl: start the controller (`run(board)`), and REPL helpers for a running one:

    >>> import pbctl
    >>> pbctl.status()                 # devices, currents, limits and why
    >>> pbctl.get("max_total_current")
    >>> pbctl.set(max_total_current=25000)
    >>> pbctl.log()                    # the diagnostic ring (cmd=set_diag_logging)
    >>> pbctl.wifi("home", "password") # WiFi credentials (board); pbctl.wifi() shows the WiFi

The package's parts (README, "Layout"): api/ (the /cnf API), config + store
(the configuration), control + devices (the one owner of the limits and the
device model), board/ (what runs only on a real board).
"""
import asyncio

controller = None  # the running controller (app.App), for the REPL helpers


async def main(board):
    global controller
    import gc
    import sys

    from pbctl.api import cnf

    asyncio.get_event_loop().set_exception_handler(_ended)
    # every on-demand module once, first: their names are interned for good
    # while the heap is empty (qstr pools grow by doubling and need one
    # contiguous block); the holes their code leaves are filled by the
    # resident modules that load next
    reserve = _reserve(board)  # before anything fragments the heap
    base = tuple(sys.modules)
    demand = ["pbctl.start"]  # the on-demand modules: these and what they import
    for name in cnf.on_demand():
        if name in cnf.LATE:
            demand.append(name)
            continue
        __import__(name)
        new = [k for k in sys.modules if k not in base]
        cnf.unload(new)
        gc.collect()
        demand += [k for k in new if k not in demand]
    demand = tuple(demand)
    from pbctl import start  # on demand: its heap goes again once it ran

    controller = app = await start.start(board, demand, reserve)
    reserve = None
    del start
    cnf.unload(app.demand)
    gc.collect()
    app.site.compact()  # (no await: as atomic for the other tasks as the control task's install)
    gc.collect()
    print("pbctl: serving http://%s:%d/cnf (heap free %d)" % (board.HTTP_HOST, board.HTTP_PORT, gc.mem_free()))
    while True:
        await asyncio.sleep(3600)


def _ended(loop, ctx):
    # a task nobody awaits ended with an exception. MemoryError: the inner
    # task of asyncio.wait_for_ms whose runner task found no room (its
    # connection ended with that MemoryError already: no bug, as in httpd);
    # anything else is printed as asyncio does
    if not isinstance(ctx.get("exception"), MemoryError):
        loop.default_exception_handler(loop, ctx)


def _reserve(board):
    """The OCPP client's buffers (integrations/ocpp.py: buffers(), 2188 + 256
    bytes), allocated first thing when the stored configuration switches OCPP
    on: later a heap holding 8 EVSEs has no 2 KB hole (README "OCPP 1.6J").
    The params are the list file's first line; a look at its head (no JSON
    parsing) is enough."""
    try:
        with open(board.FLASH + "/pbctl.json", "rb") as f:
            on = b'"ocpp_url": "w' in f.read(2048)
    except OSError:
        return None
    return (bytearray(2188), bytearray(256)) if on else None


def _repl(name, *a, **kw):
    from pbctl import repl
    from pbctl.api import cnf

    try:
        return getattr(repl, name)(controller, *a, **kw)
    finally:
        cnf.unload(controller.demand)


def status():
    _repl("status")


def get(name=None):
    return _repl("get", name)


def set(**kw):
    return _repl("set", **kw)


def log():
    _repl("log")


def wifi(ssid=None, password=None):
    """Show the WiFi; wifi(ssid, password) stores new credentials ("" forgets them)."""
    from pbctl.board import wifi

    wifi.repl(controller, ssid, password)


def run(board):
    try:
        asyncio.run(main(board))
    except KeyboardInterrupt:
        print("pbctl: stopped")
