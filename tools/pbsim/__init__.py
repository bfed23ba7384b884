"""pbsim - simulated RS-485 bus of cFos Power Brain devices (CPython only).

The firmware (MicroPython unix port) opens a pty as its UART; behind that pty
this program emulates the Modbus RTU bus with one EVSE (slave 1), two S0 meters
(slaves 2 and 3) and optionally more EVSEs. The Modbus server is pymodbus
(3.16, `ModbusSerialServer` + `SimDevice`/`SimData` datastore) - an independent
implementation, not our own code.

    firmware <-> pty B slave (published path, --link) | pty B master
                    <-> bridge (asyncio: framing, wire time, faults, request log)
                    <-> pty A master | pty A slave <-> pymodbus serial RTU server

Start it with `python tools/pbsim [options]` (or `python -m pbsim` with tools/
on the path); it prints one `READY {...}` line and runs until SIGINT/SIGTERM.
Each module documents its part:

  __main__.py   the command line, the READY line, signals
  simulator.py  the whole simulator started and stopped together; what writes
                of 8070, 8086, 8087 do
  registers.py  the register maps, factory values, read-only rules; the datastore
  frames.py     Modbus RTU CRC, frame lengths, request decoding
  bridge.py     the pty pair, request framing, wire time, unknown slaves
  faults.py     fault injection (timeout, crc, exception, wrong_slave,
                truncated, offline)
  reqlog.py     the request log and the bus statistics
  physics.py    EV, house load and PV models
  relay.py      the phase switching relay (relay_select 8087, features 8113)
  scenario.py   the scenario JSON
  control.py    the JSON-lines control channel and every command
  checks.py     argument checks of commands and scenarios
  client.py     Python client: launch(), Client, PbsimError (tests, simrun)

This file imports nothing: `pbsim.client` can be used without pymodbus.
"""
