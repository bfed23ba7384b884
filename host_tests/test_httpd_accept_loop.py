"""The server keeps accepting after asyncio's accept loop has ended.

MicroPython's `asyncio.start_server` runs one task that accepts connections;
when it cannot allocate a new connection's objects (MemoryError, seen by the
robustness campaign at -X heapsize=96k under a connection flood) that task
ends, and nothing would ever accept again. httpd.Server watches it and starts
a new one (counted in `restarts`). Here the loop is ended on purpose
(tools/bench/hello_httpd.py cmd=kill) in the real unix port.
"""
import json
import socket
import subprocess
import threading
import time

import mp
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
    return int(head.split(b" ")[1]), json.loads(body)


def test_accept_loop_is_started_again():
    port = free_port()
    p = subprocess.Popen([mp.micropython_bin(), "-X", "heapsize=" + mp.HEAP, HELLO, str(port)], cwd=mp.ROOT,
                         env=mp.micropython_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdout.readline().startswith("READY")
        out = []
        threading.Thread(target=lambda: out.extend(p.stdout), daemon=True).start()
        assert get(port, "cmd=stats")[1]["restarts"] == 0
        assert get(port, "cmd=kill") == (200, "ok")
        # the old loop is gone (a cancelled one also closed its socket: refused
        # until the new one listens, ≈ 100 ms later)
        t0 = time.monotonic()
        while True:
            try:
                st, stats = get(port, "cmd=stats")
                break
            except ConnectionRefusedError:
                assert time.monotonic() - t0 < 2, "".join(out)
                time.sleep(0.02)
        assert st == 200 and stats["restarts"] == 1, stats
        for _ in range(20):  # and it keeps serving
            assert get(port, "cmd=echo")[0] == 200
        assert p.poll() is None, "".join(out)
    finally:
        p.kill()
        p.wait(5)
