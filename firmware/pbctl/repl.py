"""REPL helpers behind `import pbctl; pbctl.status()` (issue 6). Loaded on demand.

status(): one line per device — state, currents per phase, limit and why;
get(name) / set(name=value, ...): controller parameters (validated and
saved like set_params); log(): the diagnostic ring.
"""
import time


def status(app):
    now = time.ticks_ms()
    ctl = app.control
    p = app.site.params
    print("max_total_current %d mA, lb_enabled %s, cycle %d ms, %d cycles, heap free %s"
          % (p["max_total_current"], p["lb_enabled"], ctl.cycle_ms, ctl.cycles,
             _free()))
    print("%-4s %-16s %-5s %7s %7s %7s %7s  %s" % ("id", "name", "state", "L1 mA", "L2 mA", "L3 mA", "limit", "reason"))
    for d in app.site.devices:
        c = d.cur
        if d.is_evse:
            from pbctl.api import info

            st = str(d.state) + ("P" if d.paused else "")
            lim = str(d.limit)
            why = info.reason(d.reason)
        else:
            st, lim, why = "role" + str(d.cfg["role"]), "", ""
        err = " com_err: " + d.stats.last_error if d.stats.err else ""
        print("%-4s %-16s %-5s %7d %7d %7d %7s  %s%s" % (d.dev_id, d.cfg["name"][:16], st, c[0], c[1], c[2], lim,
                                                         why, err))
    del now


def _free():
    import gc

    gc.collect()
    return gc.mem_free()


def get(app, name=None):
    return app.site.params if name is None else app.site.params[name]


def set(app, **kw):
    """Validated and saved like set_params; the control task installs it at its
    next pass (the REPL does not wait for it)."""
    from pbctl import config

    if app.lock.locked():
        raise OSError("a configuration change is under way; try again")
    ch = config.change_params(app.site, kw, app.max_evses, app.config_size)
    if ch.evses() > app.control.slots():
        raise ValueError("add EVSEs with cmd=set_params")
    config.save(app.board.FLASH, ch)
    app.control.install(ch)
    return "ok"


def log(app):
    for line in app.diag.lines() if app.diag else ():
        print(line)
