"""A real WebSocket server (the `websockets` library) for the pblib.ws tests: a peer program, not a test.

    python ws_peer.py PORT [CERTFILE KEYFILE]      (with a cert: TLS, wss://)

Prints "READY" when listening, then one JSON line per event ({"path": ..., "ev": ..., ...}); the tests
read them. What it does depends on the request path:
  /echo     echoes every message (text stays text, binary stays binary); a text "quit" ends it
  /frag     sends a fragmented text message (a ping between the fragments) and a fragmented binary one,
            reports whether the client's echoes are equal and the ping was answered
  /ping     pings the client 3 times with payloads and waits for each pong, then says "done"
  /close    closes with the code in the query (?4001) and reason "bye"
  /big      sends a message of ?n bytes (&frag: in 3 fragments), then waits for what comes
  /quiet    sends nothing; after ?ms milliseconds says "still here" (the client's keepalive answered meanwhile)
  /auth     asks for HTTP Basic CP_1:secret (401 otherwise), then echoes
  /noproto  accepts the upgrade without the subprotocol
Every connection reports its request headers of interest ("open") and the close frame it got ("closed").
"""
import asyncio
import base64
import http
import json
import ssl
import sys

from websockets.asyncio.server import serve


def say(**kw):
    print(json.dumps(kw), flush=True)


def process_request(conn, request):
    if request.path.startswith("/auth"):
        want = "Basic " + base64.b64encode(b"CP_1:secret").decode()
        if request.headers.get("Authorization") != want:
            say(path=request.path, ev="refused", auth=request.headers.get("Authorization"))
            return conn.respond(http.HTTPStatus.UNAUTHORIZED, "wrong password\n")
    return None


def select_subprotocol(conn, offered):
    if conn.request.path.startswith("/noproto"):
        return None
    return "ocpp1.6" if "ocpp1.6" in offered else None


async def handler(ws):
    path = ws.request.path
    base, _, query = path.partition("?")
    h = ws.request.headers
    say(path=path, ev="open", subprotocol=ws.subprotocol, protocols=h.get("Sec-WebSocket-Protocol"),
        auth=h.get("Authorization"), extra=h.get("X-Test"), host=h.get("Host"))
    try:
        if base in ("/echo", "/auth", "/noproto"):
            async for m in ws:
                if m == "quit":
                    break
                await ws.send(m)
        elif base == "/frag":
            pong = []

            async def parts():
                yield "fragment one, "
                waiter = await ws.ping(b"between")
                pong.append(waiter)
                yield "fragment two, "
                yield "and \u00e9 three"

            await ws.send(parts())
            await asyncio.wait_for(pong[0], 5)
            got = await ws.recv()
            await ws.send([b"\x00\x01", b"\x02" * 300, b"\xff"])
            got2 = await ws.recv()
            say(path=path, ev="frag", text_ok=got == "fragment one, fragment two, and \u00e9 three",
                binary_ok=got2 == b"\x00\x01" + b"\x02" * 300 + b"\xff", pong=True)
            await ws.wait_closed()
        elif base == "/ping":
            n = 0
            for data in (b"", b"p1", b"x" * 125):
                waiter = await ws.ping(data)
                await asyncio.wait_for(waiter, 5)
                n += 1
            say(path=path, ev="pongs", n=n)
            await ws.send("done")
            await ws.wait_closed()
        elif base == "/close":
            await ws.close(int(query), "bye")
        elif base == "/big":
            q = dict(p.partition("=")[::2] for p in query.split("&"))
            n = int(q["n"])
            if "frag" in q:
                k = n // 3
                await ws.send(["a" * k, "b" * k, "c" * (n - 2 * k)])
            else:
                await ws.send("z" * n)
            async for m in ws:
                say(path=path, ev="got", n=len(m))
        elif base == "/quiet":
            await asyncio.sleep(int(query or "0") / 1000)
            await ws.send("still here")
            await ws.wait_closed()
    except Exception as e:  # the client went away: the close report says how
        say(path=path, ev="error", error=type(e).__name__)
    finally:
        await ws.wait_closed()
        r = ws.protocol.close_rcvd
        say(path=path, ev="closed", code=r.code if r else None, reason=r.reason if r else None)


async def main():
    port = int(sys.argv[1])
    ctx = None
    if len(sys.argv) > 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    async with serve(handler, "127.0.0.1", port, ssl=ctx, process_request=process_request,
                     select_subprotocol=select_subprotocol, ping_interval=None, max_size=1 << 20,
                     close_timeout=2):
        say(ev="READY")
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
