"""The microdot counterpart of hello_httpd.py for tools/bench/http_bench.py (MicroPython).

Usage: micropython -X heapsize=96k tools/bench/hello_microdot.py PORT
(MICROPYPATH must contain the directory holding the microdot package).
Prints "READY <port>" once listening. Same replies as hello_httpd.py for
/cnf?cmd=echo (method, path, query) and /cnf?cmd=mem (gc.mem_free() after
gc.collect()).
"""
import asyncio
import gc
import sys

from microdot import Microdot

app = Microdot()


@app.route("/cnf", methods=["GET", "POST"])
async def cnf(request):
    q = {}
    for k in request.args:
        q[k] = request.args[k]  # the first value, as hello_httpd
    if q.get("cmd") == "mem":
        gc.collect()
        return str(gc.mem_free())  # text "12345", read as JSON by the bench
    return {"method": request.method, "path": request.path, "query": q}


async def main(port):
    t = asyncio.create_task(app.start_server(host="127.0.0.1", port=port))
    await asyncio.sleep_ms(100)  # start_server does not return while serving
    print("READY", port)
    await t


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
