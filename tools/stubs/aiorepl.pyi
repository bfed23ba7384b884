# micropython-lib's aiorepl (the board gets it through the manifest's
# require("aiorepl") or package.json's deps), for `make check`: no stub
# package has it.
async def task(g: dict | None = None, prompt: str = "--> ") -> None: ...
