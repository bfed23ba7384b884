"""httpd's pure parts: head parsing, percent-decoding, auth, Request, HTTPError, File (CPython and MicroPython)."""
import unitcheck as check
from pblib import httpd

# ---- parse_head ---------------------------------------------------------------------


def test_request_line_ok():
    assert httpd.parse_head("GET /cnf?cmd=x HTTP/1.1") == ("GET", "/cnf", "cmd=x", {})
    assert httpd.parse_head("POST /cnf HTTP/1.0\r\n\r\n") == ("POST", "/cnf", "", {})
    assert httpd.parse_head("GET / HTTP/1.1\r\n") == ("GET", "/", "", {})
    assert httpd.parse_head("GET /a?b?c HTTP/1.1")[1:3] == ("/a", "b?c")
    assert httpd.parse_head("GET /a? HTTP/1.1")[1:3] == ("/a", "")
    # raw: decoding is left to unquote/parse_query
    assert httpd.parse_head("GET /a%20b?x=%41 HTTP/1.1")[1:3] == ("/a%20b", "x=%41")
    # other methods parse (the server answers 405 for them)
    assert httpd.parse_head("DELETE /x HTTP/1.1")[0] == "DELETE"
    assert httpd.parse_head("get /x HTTP/1.1")[0] == "get"


def test_request_line_garbage():
    for line in (
        "",
        "GET",
        "GET /",
        "GET / HTTP/1.1 x",
        "GET  / HTTP/1.1",
        " / HTTP/1.1",
        "GET / HTTP/2.0",
        "GET / http/1.1",
        "GET x HTTP/1.1",
        "GET http://h/ HTTP/1.1",
        "G(T / HTTP/1.1",
        "GET /a\tb HTTP/1.1",
        "GET /a\x00 HTTP/1.1",
        "GET /\x7f HTTP/1.1",
        "GET /\xe9 HTTP/1.1",
        "\x16\x03\x01 / HTTP/1.1",
    ):
        check.raises(ValueError, httpd.parse_head, line)


def _header(line):
    h = httpd.parse_head("GET / HTTP/1.1\r\n" + line + "\r\n\r\n")[3]
    assert len(h) == 1, h
    return list(h.items())[0]


def test_header_line():
    assert _header("Content-Length: 12") == ("content-length", "12")
    assert _header("X-A:b") == ("x-a", "b")
    assert _header("Host:   h:80  ") == ("host", "h:80")
    assert _header("Empty:") == ("empty", "")
    assert _header("A: x\ty") == ("a", "x\ty")
    assert _header("A: \xe9t\xe9") == ("a", "\xe9t\xe9")  # UTF-8 text in values is fine
    for line in (":x", "NoColon", "Bad Name: x", " Folded: x", "A : x", "A\x00: x", "A: x\x00y", "A: \x7f",
                 "\xe9: x", "A: x\ry"):
        check.raises(ValueError, httpd.parse_head, "GET / HTTP/1.1\r\n" + line + "\r\n\r\n")


def test_headers_joined_and_bare_lf():
    m, p, q, h = httpd.parse_head("POST /x?a HTTP/1.1\nHost: h\nX-A: 1\nx-a: 2\n\n")
    assert (m, p, q) == ("POST", "/x", "a")
    assert h == {"host": "h", "x-a": "1, 2"}


# ---- unquote ----------------------------------------------------------------------


def test_unquote():
    assert httpd.unquote("abc") == "abc"
    assert httpd.unquote("a%20b") == "a b"
    assert httpd.unquote("%41%42c") == "ABc"
    assert httpd.unquote("%2f%2F") == "//"
    assert httpd.unquote("a+b") == "a+b"  # '+' is parse_query's business
    assert httpd.unquote("%2B") == "+"
    assert httpd.unquote("%C3%A9t%C3%A9") == "\xe9t\xe9"
    assert httpd.unquote("\xe9") == "\xe9"  # already decoded text passes through
    assert httpd.unquote("") == ""
    assert httpd.unquote("[7,230,230,230%20]") == "[7,230,230,230 ]"


def test_unquote_bad():
    for s in ("%", "%4", "a%4", "%zz", "%4g", "%g4", "%%", "x%-1", "%Fz", "%zF", "%F", "%FF", "%C3", "%C3%28"):
        e = check.raises(ValueError, httpd.unquote, s)
        assert "percent" in str(e)


# ---- parse_query ------------------------------------------------------------------


def test_parse_query():
    assert httpd.parse_query("") == {}
    assert httpd.parse_query("cmd=modbus&device=meter1&read=8002&count=10") == {
        "cmd": "modbus",
        "device": "meter1",
        "read": "8002",
        "count": "10",
    }
    assert httpd.parse_query("a=1&a=2") == {"a": "1"}  # first wins
    assert httpd.parse_query("a&b=&=c") == {"a": "", "b": "", "": "c"}
    assert httpd.parse_query("&&a=1&") == {"a": "1"}
    assert httpd.parse_query("x=a+b%2Bc&y=%3D%26") == {"x": "a b+c", "y": "=&"}
    assert httpd.parse_query("k%20ey=v=w") == {"k ey": "v=w"}
    assert httpd.parse_query("values=[7,230,230,230+]") == {"values": "[7,230,230,230 ]"}


def test_parse_query_first_wins():
    # the server parses "<query>&<form body>": the URL's keys win
    assert httpd.parse_query("cmd=post&x=1&cmd=other&y=2") == {"cmd": "post", "x": "1", "y": "2"}


def test_parse_query_bad():
    check.raises(ValueError, httpd.parse_query, "a=%zz")
    check.raises(ValueError, httpd.parse_query, "%=1")
    # even for a repeated key (the request is rejected, not half-used)
    check.raises(ValueError, httpd.parse_query, "a=1&a=%")


# ---- Request.auth ------------------------------------------------------------------


def _auth(value):
    return httpd.Request("GET", "/", {}, {} if value is None else {"authorization": value}, b"", "").auth()


def test_basic_auth():
    # base64("admin:secret") and base64("admin:pa:ss")
    assert _auth("Basic YWRtaW46c2VjcmV0") == ("admin", "secret")
    assert _auth("basic YWRtaW46cGE6c3M=") == ("admin", "pa:ss")
    assert _auth("BASIC   YWRtaW46cGE6c3M=  ") == ("admin", "pa:ss")
    assert _auth("Basic YWRtaW46") == ("admin", "")  # "admin:"
    assert _auth("Basic OnB3") == ("", "pw")  # ":pw"
    assert _auth("Basic w6k6w6k=") == ("\xe9", "\xe9")  # UTF-8 "é:é"


def test_basic_auth_bad():
    for v in (
        None,
        "",
        "Basic",
        "Basic ",
        "Bearer YWRtaW46c2VjcmV0",
        "YWRtaW46c2VjcmV0",
        "Basic YWRtaW46c2VjcmV",  # length not a multiple of 4
        "Basic YWRt!W46c2VjcmV0",  # not base64
        "Basic YW=taW46c2VjcmV0",  # '=' inside
        "Basic YWRtaW4===",  # too much padding
        "Basic YWRtaW4=",  # "admin": no colon
        "Basic /w==",  # b"\xff": not UTF-8
        "Basic YWRt aW46c2VjcmV0",
    ):
        assert _auth(v) is None, v


# ---- Request / HTTPError / File ------------------------------------------------------


def _req(body=b"", headers=None):
    return httpd.Request("POST", "/cnf", {}, headers or {}, body, "1.2.3.4")


def test_request_auth_and_json():
    r = _req(b'{"a":[1,257],"b":"x"}', {"authorization": "Basic YWRtaW46c2VjcmV0"})
    assert r.auth() == ("admin", "secret")
    assert r.json() == {"a": [1, 257], "b": "x"}
    assert r.client == "1.2.3.4"
    assert _req().auth() is None
    assert _req(headers={"authorization": "Basic %%%"}).auth() is None


def test_request_bad_json():
    for body in (b"", b"{", b"[1,2", b"nope", b'"\xff"', b"[1,]x"):
        e = check.raises(httpd.HTTPError, _req(body).json)
        assert e.status == 400 and e.message == "bad json"


def test_request_json_bomb():
    # too deep to parse on this heap / for CPython's recursion limit: 413, never a crash
    e = check.raises(httpd.HTTPError, _req(b"[" * 5000).json)
    assert (e.status, e.message) == (413, "request body too large")


def test_http_error_fields():
    e = httpd.HTTPError(400, "bad count")
    assert e.status == 400 and e.message == "bad count" and e.headers is None
    assert e.args[0] == "bad count"
    h = [("WWW-Authenticate", 'Basic realm="cnf"')]
    assert httpd.HTTPError(401, "x", h).headers is h


def test_file_fields():
    f = httpd.File("/www/app.js.gz", "application/javascript", gzip=True)
    assert (f.path, f.content_type, f.gzip, f.max_age) == ("/www/app.js.gz", "application/javascript", True, 3600)
    assert httpd.File("/a", "text/html", max_age=60).max_age == 60



def test_json_nested_too_deep_is_refused_before_parsing():
    # 33 levels: 413 without parsing (a small body of "[[[[" would be
    # thousands of objects); 32 levels and brackets inside strings are fine
    e = check.raises(httpd.HTTPError, _req(b"[" * 33 + b"]" * 33).json)
    assert (e.status, e.message) == (413, "request body too large")
    assert _req(b"[" * 32 + b"]" * 32).json() is not None
    assert _req(b'{"a": "' + b"[{" * 40 + b'\\"[", "b": [[1]]}').json()["b"] == [[1]]
