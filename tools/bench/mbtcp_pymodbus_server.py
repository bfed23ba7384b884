"""The baseline of mbtcp_bench.py: pymodbus' own Modbus TCP server on CPython.

It holds the register bank of host_tests/mpy/scripts/mbtcp_server.py (units 1, 2, 3; registers
8000..8199; register r of unit u reads u * 1000 + r - 8000), so the same requests get the same
answers from both servers.

Usage: .venv/bin/python tools/bench/mbtcp_pymodbus_server.py PORT   (prints "READY" once listening)
"""
import asyncio
import sys

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


async def main(port):
    devices = [SimDevice(id=u, simdata=[SimData(8000, values=[u * 1000 + r for r in range(200)],
                                                datatype=DataType.REGISTERS)]) for u in (1, 2, 3)]
    server = ModbusTcpServer(devices, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
