"""pblib.ocppj over pblib.ws under the MicroPython unix port (96 KB heap), against real peers.

The charge point is host_tests/mpy/scripts/ocpp_cp.py. Its peers run here, in a thread: the PyPI `ocpp`
library's v16 ChargePoint as central system on a `websockets` server (it checks our payloads against the
OCPP 1.6 JSON schemas), and raw `websockets` servers that send what no central system should.
"""
import asyncio
import json
import os
import threading
import time

import pytest
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, DataTransferStatus, RegistrationStatus
from websockets.asyncio.server import serve

import mp

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "ocpp_cp.py")


class Server:
    """A websockets server in a thread with its own event loop; handler(ws) per connection."""

    def __init__(self, handler):
        self.handler = handler
        self.error = None
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.t = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)
        self.t.start()
        assert self.ready.wait(10)

    async def _conn(self, ws):
        try:
            await self.handler(ws)
        except Exception as e:  # kept for the test: an assert in the handler fails it
            self.error = e

    async def _main(self):
        self.stop_ev = asyncio.Event()
        async with serve(self._conn, "127.0.0.1", 0, subprotocols=["ocpp1.6"], ping_interval=None) as s:
            self.port = s.sockets[0].getsockname()[1]
            self.ready.set()
            await self.stop_ev.wait()

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_ev.set)
        self.t.join(10)
        if self.error:
            raise self.error


def run_cp(port, scenario, *args, timeout=60):
    r = mp.run([SCRIPT, "ws://127.0.0.1:%d/CP_1" % port, scenario] + list(args), timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert lines and lines[-1] == {"done": True}, out
    return {k: v for d in lines[:-1] for k, v in d.items()}


NOW = "2026-07-05T10:00:00Z"


class CentralSystem(ChargePoint):
    def __init__(self, cp_id, conn, log):
        super().__init__(cp_id, conn, response_timeout=10)
        self.log = log

    @on(Action.boot_notification)
    async def on_boot(self, charge_point_vendor, charge_point_model, **kw):
        self.log["boot"] = [self.id, charge_point_vendor, charge_point_model]
        asyncio.create_task(self.after_boot())
        return call_result.BootNotification(current_time=NOW, interval=300, status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    async def on_heartbeat(self):
        self.log["heartbeats"] = self.log.get("heartbeats", 0) + 1
        return call_result.Heartbeat(current_time=NOW)

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id, message_id=None, data=None):
        if message_id == "slow":
            # answer late (the charge point has given up by then); call it meanwhile
            asyncio.create_task(self.call_meanwhile())
            await asyncio.sleep(2)
        return call_result.DataTransfer(status=DataTransferStatus.accepted)

    async def call_meanwhile(self):
        r = await self.call(call.GetConfiguration(key=["NumberOfConnectors"]))
        self.log["meanwhile"] = r.configuration_key

    async def error_of(self, payload, **kw):
        try:
            await self.call(payload, suppress=False, **kw)
        except OCPPError as e:
            return [type(e).__name__, e.code, e.description, e.details]
        return None

    async def after_boot(self):
        r = await self.call(call.GetConfiguration(key=["HeartbeatInterval", "Nope"]))
        self.log["getconf"] = [r.configuration_key, r.unknown_key]
        r = await self.call(call.ChangeConfiguration(key="HeartbeatInterval", value="120"))
        self.log["change"] = r.status
        self.log["unlock"] = await self.error_of(call.UnlockConnector(connector_id=1))
        self.log["bad_change"] = await self.error_of(call.ChangeConfiguration(key=5, value="1"),
                                                     skip_schema_validation=True)
        self.log["boom"] = await self.error_of(call.DataTransfer(vendor_id="pbctl", message_id="boom"))
        r = await self.call(call.GetConfiguration())
        self.log["all"] = sorted((k["key"], k["value"]) for k in r.configuration_key)
        await self.call(call.DataTransfer(vendor_id="pbctl", message_id="go"))


def test_with_the_pypi_ocpp_central_system():
    log = {}

    async def handler(ws):
        log["subprotocol"] = ws.subprotocol
        cs = CentralSystem(ws.request.path.rsplit("/", 1)[1], ws, log)
        try:
            await cs.start()
        except Exception as e:  # the charge point closed the connection
            log["end"] = type(e).__name__

    s = Server(handler)
    try:
        out = run_cp(s.port, "cs", "1000")  # our CALLs time out after 1 s
    finally:
        time.sleep(0.3)
        s.stop()
    # our CALLs and their CALLRESULTs
    assert out["boot"] == {"status": "Accepted", "currentTime": NOW, "interval": 300}
    assert out["heartbeat"] == {"result": {"currentTime": NOW}}
    assert out["slow"] == {"timeout": True}
    assert out["after"] == {"result": {"currentTime": NOW}}
    # the central system's CALLs, answered (and schema-checked by the ocpp library)
    assert log["subprotocol"] == "ocpp1.6" and log["boot"] == ["CP_1", "pbctl", "PB-ESP32"]
    assert log["getconf"] == [[{"key": "HeartbeatInterval", "readonly": False, "value": "300"}], ["Nope"]]
    assert log["change"] == "Accepted"
    assert log["unlock"] == ["NotSupportedError", "NotSupported", "UnlockConnector is not supported", {}]
    assert log["bad_change"] == ["TypeConstraintViolationError", "TypeConstraintViolation", "key: invalid", {}]
    assert log["boom"] == ["InternalError", "InternalError", "", {}]
    assert log["all"] == [("HeartbeatInterval", "120"), ("MeterValueSampleInterval", "60"), ("NumberOfConnectors", "1")]
    assert log["meanwhile"] == [{"key": "NumberOfConnectors", "readonly": False, "value": "1"}]  # while ours waited
    assert log["heartbeats"] == 2 and log["end"] == "ConnectionClosedOK"
    assert out["counters"] == {"calls": 4, "results": 3, "errors": 0, "timeouts": 1, "calls_in": 8, "errors_out": 3,
                               "bad": 0, "ignored": 1, "last_error": "ocpp: answer to no call"}
    assert out["end"]["calls"] == 4 and out["code"] == 1000


# (frame sent, the CALLERROR expected or None: no answer)
MALFORMED = [
    ("hello", None),
    ('[2, "m1", "Heartbeat", {', [4, "m1", "FormationViolation", "not JSON", {}]),
    ('{"a": 1}', None),
    ("[]", None),
    ('[5, "m2", {}]', [4, "m2", "PropertyConstraintViolation", "unknown message type", {}]),
    ('[2, "m3", "Heartbeat"]', [4, "m3", "FormationViolation", "bad call", {}]),
    ('[2, "m3b", "Heartbeat", []]', [4, "m3b", "FormationViolation", "bad call", {}]),
    ('[2, 7, "Heartbeat", {}]', None),
    ('[2, "%s", "Heartbeat", {}]' % ("i" * 37), None),
    ('[3, "zz", {}]', None),  # an answer to no call
    ('[4, "zz", "GenericError", "", {}]', None),
    ('[3, "zz", []]', None),  # a broken answer to no call
    ("[" * 2000 + "]" * 2000, None),  # no heap for it on the board: dropped
    ('[2, "m4", "ChangeConfiguration", {"key": 5, "value": "1"}]', [4, "m4", "TypeConstraintViolation", "key: invalid", {}]),
    ('[2, "m5", "ChangeConfiguration", {"value": "1"}]', [4, "m5", "OccurenceConstraintViolation", "key: missing", {}]),
    ('[2, "m6", "DataTransfer", {"vendorId": "x", "messageId": "boom"}]', [4, "m6", "InternalError", "", {}]),
    ('[2, "m7", "DataTransfer", {"vendorId": "x", "messageId": "slow"}]', [4, "m7", "InternalError", "", {}]),
    ('[2, "m8", "SetDisplayMessage", {}]', [4, "m8", "NotSupported", "SetDisplayMessage is not supported", {}]),
]


def test_malformed_frames_are_answered_or_dropped_and_the_reader_goes_on():
    got = []

    async def handler(ws):
        for frame, want in MALFORMED:
            await ws.send(frame)
            if want is not None:
                r = await asyncio.wait_for(ws.recv(), 5)
                got.append(r)
                assert json.loads(r) == want, (frame, r)
        # the frames without answer left nothing behind: the next answer is this one's
        await ws.send('[2, "last", "GetConfiguration", {"key": ["NumberOfConnectors"]}]')
        r = await asyncio.wait_for(ws.recv(), 5)
        got.append(r)
        await ws.close()

    s = Server(handler)
    try:
        out = run_cp(s.port, "malformed", "1000")  # the handler's time: 1 s ("slow" takes 5)
    finally:
        s.stop()
    # exact bytes: compact JSON
    assert got[0] == '[4,"m1","FormationViolation","not JSON",{}]'
    assert json.loads(got[-1]) == [3, "last", {"configurationKey": [{"key": "NumberOfConnectors", "readonly": False,
                                                                      "value": "1"}], "unknownKey": []}]
    assert got[-1].startswith('[3,"last",{') and " " not in got[-1]  # (a dict's key order is MicroPython's)
    assert out["end"] == {"calls": 0, "results": 0, "errors": 0, "timeouts": 0, "calls_in": 6, "errors_out": 9,
                          "bad": 11, "ignored": 9, "last_error": "ocpp: TimeoutError in DataTransfer"}
    assert out["code"] == 1000 and out["ws"] == ""


def test_calls_one_at_a_time_timeouts_and_broken_answers():
    seen = {}

    async def handler(ws):
        ids = []

        async def take():
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert m[0] == 2 and isinstance(m[1], str) and m[1].isdigit() and len(m[1]) <= 36, m
            ids.append(m[1])
            return m

        a = await take()
        assert a[2:] == ["Heartbeat", {}]
        try:  # the second CALL waits for our answer to the first
            early = await asyncio.wait_for(ws.recv(), 0.3)
        except asyncio.TimeoutError:
            early = None
        seen["early"] = early
        await ws.send(json.dumps([3, a[1], {"currentTime": NOW}]))
        b = await take()
        assert b[2:] == ["StatusNotification", {"connectorId": 1}]
        await ws.send(json.dumps([4, b[1], "PropertyConstraintViolation", "connectorId", {"max": 0}]))
        m = await take()  # answered after the charge point's timeout (1 s)
        await asyncio.sleep(1.3)
        await ws.send(json.dumps([3, m[1], {"idTagInfo": {"status": "Accepted"}}]))
        m = await take()
        await ws.send(json.dumps([3, m[1], []]))
        m = await take()
        await ws.send(json.dumps([3, "nope", {}]))
        await ws.send(json.dumps([3, m[1], {"idTagInfo": {"status": "Blocked"}}]))
        m = await take()
        seen["t_close"] = time.monotonic()
        await ws.close()
        seen["ids"] = ids

    s = Server(handler)
    try:
        out = run_cp(s.port, "calls", "1000")
    finally:
        s.stop()
    assert seen["early"] is None
    assert len(set(seen["ids"])) == 6  # unique message ids
    assert out["third"] == {"oserror": "ocpp: queue full"}
    assert out["a"] == {"result": {"currentTime": NOW}}
    assert out["b"] == {"error": "PropertyConstraintViolation", "description": "connectorId", "details": {"max": 0}}
    assert out["late"] == {"timeout": True}
    assert out["broken"] == {"error": "FormationViolation", "description": "bad result", "details": None}
    assert out["wrong_id_first"] == {"result": {"idTagInfo": {"status": "Blocked"}}}
    assert out["closed_meanwhile"] == {"oserror": "ocpp: connection closed"}
    assert out["not_connected"] == {"oserror": "ws: not open"}
    assert out["counters"] == {"calls": 6, "results": 2, "errors": 1, "timeouts": 1, "calls_in": 0, "errors_out": 0,
                               "bad": 1, "ignored": 2, "last_error": "ocpp: answer to no call"}
