"""Shared helpers of the hostile-world tests: a scriptable loopback server, sleeps, checks.

Kept out of `conftest.py` on purpose: only the `test_hostile_*` modules use them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from fathom_async import FathomClient, RateLimits

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ACCOUNT = {"id": 1, "object": "account", "name": "Loopback"}
SITE = {"id": "ABCDEF", "object": "site", "name": "Acme", "sharing": "none",
        "created_at": "2024-01-01 00:00:00"}


class Loopback:
    """A loopback server answering each request with the next scripted handler."""

    def __init__(self) -> None:
        self.script: list[Handler] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.arrived = asyncio.Event()
        self.hold = asyncio.Event()
        self.bytes_sent = 0
        self.url = ""
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.raw_path, dict(request.headers)))
        self.arrived.set()
        handler = self.script.pop(0) if self.script else json_answer(ACCOUNT)
        return await handler(request)


@asynccontextmanager
async def loopback() -> AsyncIterator[Loopback]:
    state = Loopback()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{state.port}/v1"
    try:
        yield state
    finally:
        state.hold.set()
        await runner.cleanup()


def json_answer(payload: Any, status: int = 200, headers: dict[str, str] | None = None
                ) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(payload, status=status, headers=headers)
    return handler


def stall(server: Loopback) -> Handler:
    """Read the request, then answer nothing until the server shuts down."""
    async def handler(request: web.Request) -> web.StreamResponse:
        await server.hold.wait()
        return web.json_response(ACCOUNT)
    return handler


def slow_body(server: Loopback) -> Handler:
    """Send the headers and the first bytes of a body, then stall."""
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"id": 1, "name": "')
        await server.hold.wait()
        return response
    return handler


def endless(server: Loopback, chunk: int = 64 * 1024) -> Handler:
    """Stream a chunked body forever (no Content-Length), counting what got out."""
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        block = b"x" * chunk
        try:
            await response.write(b'{"pad": "')
            while True:
                await response.write(block)
                server.bytes_sent += len(block)
        except (ConnectionError, RuntimeError):
            return response
    return handler


async def no_sleep(seconds: float) -> None:
    return None


def make_client(url: str, token: str, **kwargs: Any) -> FathomClient:
    kwargs.setdefault("rate_limits", None)
    fathom = FathomClient(token, base_url=url, **kwargs)
    fathom._shared.sleep = no_sleep
    return fathom


def assert_scheduler_idle(limits: RateLimits) -> None:
    """No waiter, no request in flight, in any bucket."""
    for name, bucket in limits.snapshot().items():
        assert bucket.waiting == {"interactive": 0, "bulk": 0}, name
        assert bucket.in_flight == 0, name
