"""pbctl: start the controller (`run()`), and REPL helpers for a running one:

    >>> import pbctl
    >>> pbctl.status()                 # devices, currents, limits and why
    >>> pbctl.get("max_total_current")
    >>> pbctl.set(max_total_current=25000)
    >>> pbctl.log()                    # the diagnostic ring (cmd=set_diag_logging)
    >>> pbctl.wifi("home", "password") # WiFi credentials (board); pbctl.wifi() shows the WiFi
"""
import asyncio
import board
import cnf

app = None  # the running controller, for the REPL helpers


async def main():
    global app
    import gc

    # every on-demand module once, first: their names are interned for good
    # while the heap is empty (qstr pools grow by doubling and need one
    # contiguous block); the holes their code leaves are filled by the
    # resident modules that load next
    for name in cnf.ON_DEMAND:
        __import__(name)
        cnf.unload()
        gc.collect()
    import start  # the start-up code: on demand, its heap goes again once it ran

    app = await start.start(board)
    del start
    cnf.unload()
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


def wifi(ssid=None, password=None):
    """Show the WiFi; wifi(ssid, password) stores new credentials ("" forgets them)."""
    import net

    net.repl(app, ssid, password)


def run():
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("pbctl: stopped")
