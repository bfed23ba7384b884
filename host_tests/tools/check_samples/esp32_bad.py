import time
import json
import machine
import pbboard
import termios
import select
from typing import Any

a = time.monotonic()
b = json.dumps({}, indent=2)
u = machine.UART(2, baudrate=9600, bogus=1)
c = pbboard.TTY
d = select.epoll()
x = int.from_bytes(b"\x01", "big", signed=True)
y = "{a}".format_map({"a": 1})
