"""cmd=modbus: raw register access (API.md §1). Loaded on demand."""
import json

from pblib import registers, rtu
from pblib.httpd import HTTPError

from pbctl.api.cnf import need

# device name -> (Power Brain slave id, register map)
DEVICES = {
    "evse": (1, registers.EVSE),
    "meter1": (2, registers.METER),
    "meter2": (3, registers.METER),
}


async def modbus(app, req):
    q = req.query
    dev = DEVICES.get(need(q, "device"))
    if dev is None:
        raise HTTPError(404, "unknown device")
    slave, regmap = dev
    rd = q.get("read")
    wr = q.get("write")
    if (rd is None) == (wr is None):
        raise HTTPError(400, "need read or write")
    try:
        if rd is not None:
            return await _read(app.control, q, slave, regmap, rd)
        # a write: admin, checked by cnf.py before this module was loaded
        return await _write(app.control, q, slave, regmap, wr)
    except registers.CodecError as e:
        raise HTTPError(400, e.args[0])
    except rtu.ModbusError as e:
        # 503: the device did not answer; 502: it answered wrongly or with an exception
        raise HTTPError(503 if e.kind == rtu.TIMEOUT else 502, e.args[0])


async def _read(ctl, q, slave, regmap, rd):
    if rd == "all":
        vals = {}
        for start, n in registers.runs(regmap):
            data = await ctl.rtu_read(slave, start, n)
            for e in registers.entries(regmap):
                if start <= e[0] < start + n:
                    vals[e[0]] = registers.decode(data, 2 * (e[0] - start), e[2], e[3])
        # keys in map order (MicroPython dicts are unordered): stream the text
        return _text(",".join('"%d%s":%s' % (e[0], e[1], json.dumps(vals[e[0]])) for e in registers.entries(regmap)))
    addr, kind = registers.parse_addr(rd)
    w = registers.width(regmap, addr, kind)
    c = q.get("count")
    count = 1 if c is None else registers.parse_int(c)
    if count < 1 or count * w > rtu.MAX_READ or addr + count * w > 0x10000:
        raise HTTPError(400, "bad count")
    data = await ctl.rtu_read(slave, addr, count * w)
    if c is None:
        return registers.decode(data, 0, kind, w)
    return [registers.decode(data, 2 * w * i, kind, w) for i in range(count)]


def _text(body):
    yield "{" + body + "}"


async def _write(ctl, q, slave, regmap, wr):
    addr, kind = registers.parse_addr(wr)
    if "values" in q:
        if kind == "s":
            raise HTTPError(400, "bad value")
        values = registers.parse_values(q["values"])
    elif "value" in q:
        v = q["value"]
        values = [v if kind == "s" else registers.parse_int(v)]
    else:
        raise HTTPError(400, "missing parameter: value")
    regs = registers.check_write(regmap, addr, kind, len(values))
    if addr + regs > 0x10000:
        raise HTTPError(400, "bad register address")
    w = regs // len(values)
    data = bytearray(2 * regs)
    for i, v in enumerate(values):
        registers.encode(data, 2 * w * i, kind, w, v)
    await ctl.rtu_write(slave, addr, data)
    return "ok"
