# pblib.ws + pblib.ocppj under the MicroPython unix port: a minimal charge point, driven by
# host_tests/mpy/test_ocpp_rpc.py against the PyPI ocpp library (central system) or a raw websockets server.
#   micropython ocpp_cp.py URL SCENARIO [timeout_ms]
# Prints one JSON line per result.
import asyncio
import json
import sys

from pblib import ocppj, ws

CONF = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "60", "NumberOfConnectors": "1"}
BOOT_CONF = "status=eAccepted/Pending/Rejected currentTime=t interval=i0:"
go = asyncio.Event()


def out(d):
    print(json.dumps(d))


async def handler(action, payload):
    if action == "GetConfiguration":
        ocppj.check(payload, "key?=a")
        keys = payload.get("key") or list(CONF)
        return {"configurationKey": [{"key": k, "readonly": False, "value": CONF[k]} for k in keys if k in CONF],
                "unknownKey": [k for k in keys if k not in CONF]}
    if action == "ChangeConfiguration":
        ocppj.check(payload, "key=s50 value=s500")
        if payload["key"] not in CONF:
            return {"status": "NotSupported"}
        CONF[payload["key"]] = payload["value"]
        return {"status": "Accepted"}
    if action == "DataTransfer":
        ocppj.check(payload, "vendorId=s255 messageId?=s50 data?=s")
        m = payload.get("messageId")
        if m == "go":
            go.set()
        elif m == "boom":
            raise ValueError("a bug in the handler")
        elif m == "slow":
            await asyncio.sleep_ms(5000)
        return {"status": "Accepted"}
    raise ocppj.OcppError("NotSupported", action + " is not supported")


def counters(rpc):
    return {"calls": rpc.calls, "results": rpc.results, "errors": rpc.errors, "timeouts": rpc.timeouts,
            "calls_in": rpc.calls_in, "errors_out": rpc.errors_out, "bad": rpc.bad, "ignored": rpc.ignored,
            "last_error": rpc.last_error}


async def outcome(coro):
    # a call's result, or what it raised
    try:
        return {"result": await coro}
    except ocppj.OcppError as e:
        return {"error": e.code, "description": e.description, "details": e.details}
    except asyncio.TimeoutError:
        return {"timeout": True}
    except OSError as e:
        return {"oserror": str(e)}


async def central_system(rpc):
    r = await rpc.call("BootNotification", {"chargePointVendor": "pbctl", "chargePointModel": "PB-ESP32"})
    ocppj.check(r, BOOT_CONF)
    out({"boot": r})
    await asyncio.wait_for_ms(go.wait(), 10000)  # the central system has made its calls
    out({"heartbeat": await outcome(rpc.call("Heartbeat", {}))})
    # the central system answers after 2 s; meanwhile it calls us (GetConfiguration), and we answer
    out({"slow": await outcome(rpc.call("DataTransfer", {"vendorId": "pbctl", "messageId": "slow"}))})
    await asyncio.sleep_ms(2500)  # its late answer arrives and is dropped
    out({"after": await outcome(rpc.call("Heartbeat", {}))})
    out({"counters": counters(rpc)})


async def calls(rpc):
    # against the raw server of test_calls_*: see there
    rpc.max_queue = 1
    a = asyncio.create_task(outcome(rpc.call("Heartbeat", {})))
    b = asyncio.create_task(outcome(rpc.call("StatusNotification", {"connectorId": 1})))
    await asyncio.sleep_ms(0)
    out({"third": await outcome(rpc.call("Heartbeat", {}))})  # the queue (1) is full
    out({"a": await a, "b": await b})
    out({"late": await outcome(rpc.call("Authorize", {"idTag": "late"}))})
    out({"broken": await outcome(rpc.call("Authorize", {"idTag": "broken"}))})
    out({"wrong_id_first": await outcome(rpc.call("Authorize", {"idTag": "wrongid"}))})
    out({"closed_meanwhile": await outcome(rpc.call("Authorize", {"idTag": "close"}))})
    out({"not_connected": await outcome(rpc.call("Heartbeat", {}))})
    out({"counters": counters(rpc)})


async def main():
    url = sys.argv[1]
    scenario = sys.argv[2]
    c = ws.Client(timeout_ms=3000)
    await c.connect(url)
    rpc = ocppj.Rpc(c, handler, timeout_ms=int(sys.argv[3]) if len(sys.argv) > 3 else 30000)
    reader = asyncio.create_task(rpc.run())
    if scenario == "cs":
        await central_system(rpc)
        await c.close()
    elif scenario == "calls":
        await calls(rpc)
    await reader  # (malformed: until the server closes)
    out({"end": counters(rpc), "ws": c.last_error, "code": c.close_code})
    out({"done": True})


asyncio.run(main())
