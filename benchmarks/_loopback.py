"""What the benchmarks that time the client share: a loopback server, and a load.

The server runs in its own process (`python -m benchmarks.<name> --serve ...`), so it
does not share the client's core; `serve()` is that process's whole job, and
`server()` starts it and hands back its base URL. `drive()` makes calls at a fixed
concurrency and measures throughput and the client's CPU per call. `decoder()` says
which JSON decoder the client reads answers with, by the rule the README states
(msgspec when the `speedups` extra is installed, else the standard library).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SITE = {"id": "CDBUGS", "object": "site", "name": "Bugs Bunny Portfolio", "sharing": "none",
        "created_at": "2020-07-27 12:01:01"}
SITE_BODY = json.dumps(SITE).encode()
CONCURRENCY = 64


async def site(request: web.Request) -> web.Response:
    """`GET /v1/sites/{site_id}`: the same site, at once."""
    return web.Response(body=SITE_BODY, content_type="application/json")


def serve(routes: dict[str, Handler]) -> None:
    """Answer GETs on loopback until killed; the first line printed is the base URL."""

    async def main() -> None:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(f"http://127.0.0.1:{runner.addresses[0][1]}/v1", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def server(module: str, *args: str) -> Iterator[str]:
    """Start `python -m <module> --serve <args>` and give its base URL; kill it after."""
    process = subprocess.Popen([sys.executable, "-m", module, "--serve", *args],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base = process.stdout.readline().strip()
        if not base:
            raise RuntimeError(f"the {module} server did not start")
        yield base
    finally:
        process.kill()
        process.wait()


async def drive(
    call: Callable[[], Awaitable[object]], requests: int, concurrency: int = CONCURRENCY
) -> tuple[float, float]:
    """(requests per second, client CPU microseconds per call) for `requests` calls."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, spent = time.perf_counter() - started, time.process_time() - cpu
    return requests / elapsed, spent / requests * 1e6


def decoder() -> str:
    """The decoder the client reads JSON with in this process: "msgspec" or "json"."""
    try:
        import msgspec  # noqa: F401
    except ImportError:
        return "json"
    return "msgspec"


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A fresh event loop of `kind` ("asyncio" or "uvloop"), set as the current one."""
    if kind == "uvloop":
        uvloop: Any = importlib.import_module("uvloop")
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop
