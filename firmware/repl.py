"""REPL helpers behind `import pbctl; pbctl.status()` (issue 6). Loaded on demand.

status(): one line per device — state, currents per phase, limit and why;
get(name) / set(name=value, ...): controller parameters (validated and
saved like set_params); log(): the diagnostic ring.
"""
import time


def status(app):
    now = time.ticks_ms()
    ctl = app.control
    p = app.params
    print("max_total_current %d mA, lb_enabled %s, cycle %d ms, %d cycles, heap free %s"
          % (p["max_total_current"], p["lb_enabled"], ctl.cycle_ms if ctl else 0, ctl.cycles if ctl else 0,
             _free()))
    print("%-4s %-16s %-5s %7s %7s %7s %7s  %s" % ("id", "name", "state", "L1 mA", "L2 mA", "L3 mA", "limit", "reason"))
    for d in app.devices:
        c = d.cur
        if d.is_evse:
            import cmd_info

            st = str(d.state) + ("P" if d.paused else "")
            lim = str(d.limit)
            why = cmd_info.reason(d.reason)
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
    return app.params if name is None else app.params[name]


def set(app, **kw):
    import config

    return config.apply_params(app, kw)


def log(app):
    for line in app.diag.lines() if app.diag else ():
        print(line)
