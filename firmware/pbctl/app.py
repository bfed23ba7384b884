"""The running controller's parts, wired together by start.start().

    board    the board module (pbboard: pins, UART, flash path, HTTP port)
    serial   this controller's serial number (from the board: chip id, flash path)
    site     devices.Site: configuration in force, devices, users (changed by
             the control task only)
    control  control.Control: the one owner of the limits; everyone else
             hands it requests
    server   httpd.Server
    lock     held by a configuration change from validation to installation:
             changes build on each other, never on a stale copy
    fails    the admin check's failure records (api/auth.py), kept here
             because that module is loaded per request
    diag     diag.Ring once diagnostic logging has been used, else None
    net      board/wifi.Net on a board with WiFi (board/onboard.py), else None
    demand   the on-demand modules (api/cnf.py unloads them after a request)
    links    the integrations running now: name -> their object (status fields)
    reserve  large buffers reserved at boot for an integration switched on then
             (start.py: before the heap is fragmented), name -> buffers

Integrations (Modbus TCP, MQTT, OCPP) are the modules pbctl/integrations/<name>.py
listed in INTEGRATIONS with the parameter that switches them on (falsy: off,
and the module is not even loaded). Each has `settings(params)` (what it runs
with: a tuple, or None when it is off) and `start(app, settings)` (its object;
its tasks started) and the object a `stop()`. `links()` starts, restarts (other
settings) and stops them to match the parameters in force: at boot and after
every configuration change. An integration reads app.site and hands the
control task requests; its module stays loaded while it runs.
"""
import gc
import sys
import time

import asyncio
from micropython import const

_RESERVE = const(10240)  # heap kept for the control task: requests are shed before it runs short

VERSION = "0.2.0"
INTEGRATIONS = (("mbtcp", "modbus_tcp"), ("ocpp", "ocpp_url"), ("mqtt", "mqtt_url"))  # (module name in pbctl/integrations/, the parameter that switches it on)
# An integration's buffers (receive sizes, largest first; send 256 B), allocated before its code
# loads when it is switched on while running (at boot pbctl.main() reserves the first size): the
# OCPP client's receive buffer is max message + 140 (README "OCPP 1.6J", Heap)
_BUFS = {"ocpp": (2188, 1940, 1676)}


def drop(name):
    """Forget module name: sys.modules and its package (which holds it too)."""
    sys.modules.pop(name, None)
    pkg, _, sub = name.rpartition(".")
    pkg = sys.modules.get(pkg)
    if pkg is not None:
        try:
            delattr(pkg, sub)
        except (AttributeError, KeyError):  # (MicroPython: KeyError when it has none)
            pass


class App:
    VERSION = VERSION

    def __init__(self, board, site, control, server):
        self.board = board
        self.site = site
        self.control = control
        self.server = server
        self.max_evses = getattr(board, "MAX_EVSES", 8)  # balancer slots at most; each costs heap
        self.config_size = getattr(board, "CONFIG_SIZE", 0)  # the devices' configuration at most (cfgsize.py)
        self.serial = board.serial()  # params.vsn.serialno: never changes
        self.boot_ms = time.ticks_ms()
        self.lock = asyncio.Lock()
        self.fails = {}
        self.diag = None
        self.net = None
        self.demand = ()
        self.links = {}
        self.link_errors = {}  # integrations switched on that could not start: name -> why (sys_info links)
        self.reserve = {}  # buffers reserved at boot for an integration: name -> what its start() takes
        self._link_settings = {}
        self._link_mods = {}  # name -> the pblib modules its start loaded (dropped when it stops)
        self._full = time.ticks_add(self.boot_ms, -1000)  # when a collection last found the heap full
        self.line = None  # the list files' line buffer (start.py), lent to one reader at a time

    def take_line(self):
        """Lend the line buffer (store.Store.each), or None while it is lent."""
        b = self.line
        self.line = None
        return b

    def give_line(self, b):
        self.line = b

    def admit(self):
        """May the HTTP server (and the integrations' servers) take on a
        connection? Not while the heap's free space is below the control
        task's reserve after a collection (BENCHMARKS.md, Reliability).
        MicroPython collects only when an allocation fails, so a heap full of
        garbage is the rule: collect then (the allocator would soon). After a
        collection that found the heap really full, refuse for 10 ms without
        collecting again: in a flood a collection per connection would eat
        the time the control task needs."""
        if gc.mem_free() >= _RESERVE:
            return True
        now = time.ticks_ms()
        if time.ticks_diff(now, self._full) < 10:
            return False
        gc.collect()
        if gc.mem_free() >= _RESERVE:
            return True
        self._full = now
        return False

    def known(self, ip):
        """Did the admin log in from this address (api/auth.py's Guard keeps
        the last ones)? Its connections get in first, even in a flood."""
        return ip in self.fails.get("+", ())

    def links_changed(self):
        """Start, restart or stop the integrations to match the parameters in force."""
        p = self.site.params
        for name, key in INTEGRATIONS:
            if not p[key] and name not in self.links and name not in self.link_errors:
                continue
            sizes = _BUFS.get(name)
            if sizes and p[key] and name not in self.links and name not in self.reserve:
                # switched on while running: its buffers first, before its code and objects take the
                # heap's holes; the largest receive buffer there is a hole for
                gc.collect()
                for n in sizes:
                    try:
                        self.reserve[name] = (bytearray(n), bytearray(256))
                        break
                    except MemoryError:
                        pass
            base = None if name in self.links else tuple(sys.modules)
            try:
                self._link(name, key, p)
            finally:  # (also when it raised: MemoryError): not running, its code and libraries go
                if base is not None:  # the libraries its start loaded (pblib.ws, ...) go with it
                    new = tuple(k for k in sys.modules if k not in base and k[:6] == "pblib.")
                    self._link_mods[name] = self._link_mods.get(name, ()) + new
                if name not in self.links:  # off: it is loaded again when switched on
                    for k in self._link_mods.pop(name, ()) + ("pbctl.integrations." + name,):
                        drop(k)

    def _link(self, name, key, p):
        mod = __import__("pbctl.integrations." + name, None, None, ("settings",))
        want = mod.settings(p) if p[key] else None
        if want == self._link_settings.get(name) and (want is None or name in self.links):
            return
        old = self.links.pop(name, None)
        if old is not None:
            old.stop()
        self._link_settings[name] = want
        self.link_errors.pop(name, None)
        if want is not None:
            try:
                self.links[name] = mod.start(self, want)
            except Exception as e:  # (no heap, a bad address): the controller goes on without it
                print("pbctl: %s: %r" % (name, e))
                # shown in sys_info links (tried again with the next set_params)
                self.link_errors[name] = e.args[0] if e.args and type(e.args[0]) is str else repr(e)
