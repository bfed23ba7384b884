"""The server keeps accepting when a connection cannot be set up.

MicroPython's `asyncio.start_server` runs one task that accepts connections;
when it cannot allocate a new connection's objects (MemoryError — seen by the
robustness campaign under 4 concurrent clients with 8 EVSEs) that task ends,
nothing accepts again, and its listening socket keeps the port. httpd.Server
runs its own accept loop: such a connection alone is dropped (`dropped`),
answered with a constant 503 "out of memory" (never an empty answer). Here
tools/bench/hello_httpd.py (cmd=nomem) makes the accept loop's
`asyncio.create_task` fail as on a full heap, in the real unix port; and
(cmd=nohead) a reply whose head finds no room gets the same constant reply;
the vip's (pbctl's admin's) connection is set up again up to 4 times, 20 ms
apart, before it is dropped.
"""
import json
import socket
import subprocess
import threading

import os

import mp
import mpybuild
from test_httpd_server import HELLO, free_port


def get(port, query, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET /cnf?" + query.encode() + b" HTTP/1.1\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body) if body else None


OOM = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 15\r\n"
       b'Connection: close\r\n\r\n"out of memory"')


def raw(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                return data
            data += b


def test_a_connection_without_heap_is_dropped_not_the_server():
    port = free_port()
    p = subprocess.Popen([mp.micropython_bin(), "-X", "heapsize=" + mp.HEAP, HELLO, str(port)], cwd=mp.ROOT,
                         env=mpy_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdout.readline().startswith("READY")
        out = []
        threading.Thread(target=lambda: out.extend(p.stdout), daemon=True).start()
        assert get(port, "cmd=stats")[1]["dropped"] == 0
        assert get(port, "cmd=nomem&n=3") == (200, "ok")
        for _ in range(3):  # these three are closed at once, with the constant reply
            assert raw(port, b"GET /cnf?cmd=echo HTTP/1.1\r\n\r\n") == OOM
        st, stats = get(port, "cmd=stats")
        assert st == 200 and stats["dropped"] == 3, stats
        # a reply whose head cannot be made: the same bytes, and the connection's end
        assert raw(port, b"GET /cnf?cmd=nohead HTTP/1.1\r\n\r\n") == OOM
        # the vip's (the admin's) connection is set up again, 20 ms later, up to 4 times
        assert get(port, "cmd=vip&ip=127.0.0.1") == (200, "ok")
        assert get(port, "cmd=nomem&n=4") == (200, "ok")
        assert get(port, "cmd=echo")[0] == 200
        assert get(port, "cmd=stats")[1]["dropped"] == 3
        assert get(port, "cmd=nomem&n=5") == (200, "ok")
        assert raw(port, b"GET /cnf?cmd=echo HTTP/1.1\r\n\r\n") == OOM  # the fifth time: no more
        assert get(port, "cmd=stats")[1]["dropped"] == 4
        for _ in range(20):  # and the server goes on accepting
            assert get(port, "cmd=echo")[0] == 200
        assert p.poll() is None, "".join(out)
        assert "Traceback" not in "".join(out), "".join(out)
    finally:
        p.kill()
        p.wait(5)


def mpy_env():
    """MICROPYPATH: the .mpy build of lib/ (as on the board: precompiled)."""
    return dict(mp.micropython_env(), MICROPYPATH=mpybuild.build(os.path.join(mp.ROOT, "build", "host"), "HOST")
                + ":.frozen")
