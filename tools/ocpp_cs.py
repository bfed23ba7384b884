"""A test central system: the PyPI `ocpp` library (OCPP 1.6) on `websockets`,
run in a thread of its own (tests and benchmarks drive it synchronously).

    cs = CentralSystem().start()          # ws://127.0.0.1:<cs.port>/<identity>
    cs.wait("BootNotification")           # -> the payload (camelCase dict)
    cs.call(call.RemoteStartTransaction(id_tag="abc", connector_id=1))
    cs.raw('[2,"x1","FooBar",{}]')        # a frame as it is; -> the reply frame (a list)
    cs.stop()  # the server and every connection gone (a killed central system)

Every message from the charge point is recorded as (time, action, payload) in
`cs.log`, in order. Answers: BootNotification Accepted with `interval`
(heartbeat), Authorize Accepted for the idTags in `accept` (else Invalid),
StartTransaction transactionIds from 1000 on. `delay` (seconds, changeable
at any time): every CALL from the charge point is answered that much later
(a slow central system; it is recorded when it is handled, after the wait,
and the connection is read on only then, as the `ocpp` library does).
"""
import asyncio
import json
import threading
import time

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as _CP
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus


class _Station(_CP):
    cs = None

    async def _handle_call(self, msg):
        if self.cs.delay:
            await asyncio.sleep(self.cs.delay)
        await super()._handle_call(msg)

    def _rec(self, action, kw):
        from ocpp.charge_point import snake_to_camel_case

        with self.cs.cond:
            self.cs.log.append((time.time(), action, snake_to_camel_case(kw)))
            self.cs.cond.notify_all()

    @on(Action.boot_notification)
    def boot(self, **kw):
        self._rec("BootNotification", kw)
        return call_result.BootNotification(current_time=_now(), interval=self.cs.interval,
                                            status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def heartbeat(self, **kw):
        self._rec("Heartbeat", kw)
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def status(self, **kw):
        self._rec("StatusNotification", kw)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def authorize(self, **kw):
        self._rec("Authorize", kw)
        ok = kw["id_tag"] in self.cs.accept
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted if ok else
                                                  AuthorizationStatus.invalid})

    @on(Action.start_transaction)
    def start_tx(self, **kw):
        self._rec("StartTransaction", kw)
        self.cs.next_tx += 1
        return call_result.StartTransaction(transaction_id=self.cs.next_tx,
                                            id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.stop_transaction)
    def stop_tx(self, **kw):
        self._rec("StopTransaction", kw)
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def meter_values(self, **kw):
        self._rec("MeterValues", kw)
        return call_result.MeterValues()


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class CentralSystem:
    def __init__(self, port=0, interval=300, accept=(), delay=0):
        self.port = port
        self.delay = delay
        self.interval = interval
        self.accept = set(accept)
        self.next_tx = 999
        self.log = []
        self.cond = threading.Condition()
        self.station = None
        self.headers = None  # the last upgrade request's headers (names in lower case)
        self.loop = None
        self._server = None
        self._thread = None

    def url(self, identity="pb1"):
        return "ws://127.0.0.1:%d/%s" % (self.port, identity)

    # ---- lifecycle --------------------------------------------------------------
    def start(self):
        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(self._serve())
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    async def _serve(self):
        self._server = await websockets.serve(self._on_connect, "127.0.0.1", self.port, subprotocols=["ocpp1.6"])
        self.port = self._server.sockets[0].getsockname()[1]

    async def _on_connect(self, conn, path=None):
        req = getattr(conn, "request", None)
        h = req.headers if req is not None else conn.request_headers
        self.headers = dict((k.lower(), v) for k, v in h.raw_items())  # names in lower case
        p = path or (req.path if req is not None else "/")
        st = _Station(p.strip("/"), conn, response_timeout=10)
        st.cs = self
        self.station = st
        try:
            await st.start()
        except websockets.exceptions.ConnectionClosed:
            pass

    def stop(self):
        """The server and its connections go (like a killed central system); again: nothing."""
        if self.loop is None or not self.loop.is_running():
            return
        async def down():
            self._server.close()
            if self.station is not None:
                try:
                    await self.station._connection.close()
                except Exception:
                    pass
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    # ---- driving it -------------------------------------------------------------------
    def call(self, payload, timeout=15):
        """An ocpp.v16.call payload to the charge point; its CALLRESULT (a call_result
        object), or raises the CALLERROR (ocpp.exceptions.OCPPError)."""
        f = asyncio.run_coroutine_threadsafe(self.station.call(payload, suppress=False), self.loop)
        return f.result(timeout)

    def raw(self, text, uid=None, timeout=15):
        """A frame as it is; the reply frame to message id uid (parsed), None when none came."""
        async def go():
            st = self.station
            async with st._call_lock:
                await st._send(text)
                if uid is None:
                    return None
                try:
                    m = await st._get_specific_response(uid, timeout)
                except asyncio.TimeoutError:
                    return None
                return json.loads(m.to_json())

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(timeout + 5)

    def messages(self, action=None, since=0):
        with self.cond:
            return [m for m in self.log[since:] if action is None or m[1] == action]

    def wait(self, action, pred=None, timeout=20, since=0):
        """The payload of the first message action (matching pred) from log index since on."""
        end = time.time() + timeout
        with self.cond:
            while True:
                for m in self.log[since:]:
                    if m[1] == action and (pred is None or pred(m[2])):
                        return m[2]
                left = end - time.time()
                if left <= 0:
                    raise AssertionError("no %s within %ss: %r" % (action, timeout, self.log[since:][-20:]))
                self.cond.wait(left)

    def mark(self):
        with self.cond:
            return len(self.log)
