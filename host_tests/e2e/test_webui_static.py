"""The web UI's files served by the firmware under MicroPython (README "Web UI").

GET /NAME answers www/NAME.gz next to the firmware's modules (tools/mpybuild.py
gzips firmware/pbctl/www/ into build/host/pbctl/www/) as it is: Content-Encoding: gzip,
Cache-Control, an ETag from the gzip trailer and 304 for a matching
If-None-Match; streamed through the connection's head buffer, so the heap
does not grow with the file. Anything else outside /cnf is 404 "not found".
"""
import gzip
import http.client
import os
import socket
import threading
import time

import pytest

from conftest import assert_clean_log
from simrun import ROOT

WWW = os.path.join(ROOT, "firmware", "pbctl", "www")
FILES = sorted(n for n in os.listdir(WWW) if not n.startswith("."))
TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}
BUDGET = 40 * 1024  # all files gzipped (issue 8)


def source(name):
    with open(os.path.join(WWW, name), "rb") as f:
        return f.read()


def fetch(sim, path, headers=None, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", sim.http_port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def raw(sim, data):
    s = socket.create_connection(("127.0.0.1", sim.http_port), timeout=10)
    try:
        s.sendall(data)
        out = b""
        while True:
            b = s.recv(4096)
            if not b:
                return out
            out += b
    finally:
        s.close()


def test_the_ui_is_plain_files_within_the_flash_budget():
    """index.html, app.js and app.css, nothing fetched from elsewhere; gzipped
    (level 9, mtime 0, as the build does) they fit in 40 KB of flash."""
    assert FILES == ["app.css", "app.js", "index.html"]
    total = sum(len(gzip.compress(source(n), 9, mtime=0)) for n in FILES)
    assert total <= BUDGET, total
    for n in FILES:
        text = source(n).decode()
        assert "http://" not in text and "https://" not in text, n  # no CDN: the controller has no internet
    # served without a charset: the page names UTF-8, its script and style sheet inherit it
    assert '<meta charset="utf-8">' in source("index.html").decode()


def test_build_writes_deterministic_gzip(tmp_path):
    import mpybuild

    mpybuild.www(str(tmp_path))
    built = sorted(os.listdir(tmp_path / "pbctl" / "www"))
    assert built == [n + ".gz" for n in FILES]
    for n in FILES:
        data = (tmp_path / "pbctl" / "www" / (n + ".gz")).read_bytes()
        assert data == gzip.compress(source(n), 9, mtime=0)
        assert data[4:8] == b"\0\0\0\0"  # mtime 0: the same bytes on every machine
        assert gzip.decompress(data) == source(n)
    # a file gone from firmware/pbctl/www/ goes from the build too; other files stay
    (tmp_path / "pbctl" / "www" / "old.js.gz").write_bytes(b"x")
    mpybuild.www(str(tmp_path))
    assert sorted(os.listdir(tmp_path / "pbctl" / "www")) == built


@pytest.mark.parametrize("name", FILES)
def test_file_is_served_gzipped_with_caching_headers(sim, name):
    st, h, body = fetch(sim, "/" + name)
    assert st == 200
    assert body == gzip.compress(source(name), 9, mtime=0)  # the exact bytes of the build
    assert gzip.decompress(body) == source(name)
    assert h["Content-Type"] == TYPES[name.rsplit(".", 1)[1]]
    assert h["Content-Encoding"] == "gzip"
    assert h["Content-Length"] == str(len(body))
    assert h["Cache-Control"] == "max-age=60"
    # the ETag: the gzip trailer (CRC-32 and length of the content) as hex
    assert h["ETag"] == '"%x"' % int.from_bytes(body[-8:], "big")
    assert h["Connection"] == "close"


def test_root_is_index_html(sim):
    st, h, body = fetch(sim, "/")
    assert st == 200 and h["Content-Type"] == "text/html"
    assert gzip.decompress(body) == source("index.html")


def test_if_none_match_gets_304_without_body(sim):
    st, h, body = fetch(sim, "/app.js")
    etag = h["ETag"]
    resp = raw(sim, b"GET /app.js HTTP/1.1\r\nIf-None-Match: " + etag.encode() + b"\r\n\r\n")
    assert resp == ("HTTP/1.1 304 Not Modified\r\nContent-Type: text/javascript\r\n"
                    "Cache-Control: max-age=60\r\nContent-Encoding: gzip\r\nETag: %s\r\n"
                    "Connection: close\r\n\r\n" % etag).encode()
    # another file's or a stale ETag: the file
    st, h, body2 = fetch(sim, "/app.js", {"If-None-Match": fetch(sim, "/app.css")[1]["ETag"]})
    assert st == 200 and body2 == body
    st, _, body2 = fetch(sim, "/app.js", {"If-None-Match": '"0"'})
    assert st == 200 and body2 == body


@pytest.mark.parametrize("path", [
    b"/nope.js", b"/nope.html", b"/index.htm", b"/index.html.gz", b"/app.js.gz", b"/cnf.mpy", b"/main.py",
    b"/.options", b"/../cnf.mpy", b"/../www/app.js", b"/%2e%2e/host/www/app.js", b"/www/app.js", b"//app.js",
    b"/app.js/", b"/cnf/", b"/CNF", b"/%2Fapp.js", b"/app.js%00.css", b"/.js", b"/x/..%2fapp.js", b"/favicon.ico",
])
def test_unknown_and_escaping_paths_are_404(sim, path):
    resp = raw(sim, b"GET " + path + b" HTTP/1.1\r\n\r\n")
    assert resp == (b'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 11\r\n'
                    b'Connection: close\r\n\r\n"not found"')


def test_head_is_not_served(sim):
    # the server answers GET and POST only (HEAD would need the reply without its body)
    st, h, _ = fetch(sim, "/index.html", method="HEAD")
    assert st == 405 and h["Allow"] == "GET, POST"


def test_files_are_streamed_not_loaded(sim):
    """3 clients fetch the UI 10 times each while the API is polled: every
    reply exact, the heap afterwards where it was (a file never sits in RAM
    whole; MemoryError would show in the log), the API unaffected."""
    want = {n: gzip.compress(source(n), 9, mtime=0) for n in FILES}
    st, info = sim.get("cmd=sys_info")
    assert st == 200
    errors = []

    def client(k):
        # each reply read to the end of the connection: a client that closes
        # after Content-Length bytes and reconnects at once may find its old
        # slot still taken (503, the connection cap; issue 7's business)
        for i in range(10):
            n = FILES[(i + k) % len(FILES)]
            try:
                head, _, body = raw(sim, ("GET /%s HTTP/1.1\r\n\r\n" % n).encode()).partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200 OK\r\n") or body != want[n]:
                    errors.append((n, head, len(body)))
            except OSError as e:
                errors.append((n, repr(e)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    polls = 0
    while any(t.is_alive() for t in threads):
        st, d = sim.get("cmd=get_dev_info")
        assert st == 200 and d["devices"], d
        polls += 1
    for t in threads:
        t.join()
    assert errors == []
    # (the last connections may still be closing: their buffers come back then)
    end = time.time() + 3
    while True:
        st, after = sim.get("cmd=sys_info")
        assert st == 200
        if after["mem_free"] >= info["mem_free"] - 2048 or time.time() > end:
            break
        time.sleep(0.3)
    assert after["mem_free"] >= info["mem_free"] - 2048, (info["mem_free"], after["mem_free"])
    assert polls > 0
    assert_clean_log(sim)
