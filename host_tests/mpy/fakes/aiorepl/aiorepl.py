"""A stand-in for micropython-lib's aiorepl: task() takes its lines from the
file FAKE_REPL instead of the console and runs them in __main__'s globals, as
a person at the REPL would type them ("sleep MS": wait; "until EXPR": wait,
10 s at most, until EXPR is true)."""
import os

import asyncio


async def task(g=None, prompt="--> "):
    print("aiorepl: started")
    if g is None:
        g = __import__("__main__").__dict__
    with open(os.getenv("FAKE_REPL")) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("sleep "):
            await asyncio.sleep_ms(int(line[6:]))
            continue
        if line.startswith("until "):  # wait (10 s at most) until the expression is true
            for _ in range(200):
                if eval(line[6:], g):
                    break
                await asyncio.sleep_ms(50)
            else:
                print("REPL timeout: " + line)
            continue
        print("REPL %d>" % i)
        try:
            exec(line, g)
        except Exception as e:
            print("REPL error: %r" % (e,))
    print("aiorepl: done")
    await asyncio.Event().wait()
