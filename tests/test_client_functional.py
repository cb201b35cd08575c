"""Functional tests against a real loopback aiohttp server: what aioresponses cannot show.

Timeouts, resets, truncated bodies, the raw path on the wire, body size limits and
closing with calls in flight all need a real socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fathom_async import (
    AcquireTimeoutError,
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    ClientClosedError,
    FathomClient,
    RateLimitError,
    RateLimits,
)
from tests.conftest import TOKEN

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ACCOUNT = {"id": 1, "object": "account", "name": "Loopback"}
SITE = {"id": "ABCDEF", "object": "site", "name": "Acme", "sharing": "none",
        "created_at": "2024-01-01 00:00:00"}


class Server:
    """A loopback server whose answers the test scripts, one handler per request."""

    def __init__(self) -> None:
        self.script: list[Handler] = []
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.hold = asyncio.Event()
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.raw_path, dict(request.headers),
                          await request.read()))
        self.arrived.set()
        handler = self.script.pop(0) if self.script else ok(ACCOUNT)
        return await handler(request)


def ok(payload: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(payload, status=status)
    return handler


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": f"status {code}"}, status=code, headers=headers)
    return handler


def reset(commit: Callable[[], None] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if commit is not None:
            commit()
        assert request.transport is not None
        request.transport.abort()
        return web.Response()
    return handler


def stall(server: Server) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await server.hold.wait()
        return web.json_response(ACCOUNT)
    return handler


def truncated() -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Content-Length": "100"})
        await response.prepare(request)
        await response.write(b'{"id": 1, "obj')
        assert request.transport is not None
        request.transport.abort()
        return response
    return handler


def big(size: int) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"pad": "' + b"x" * size + b'"}')
        await response.write_eof()
        return response
    return handler


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/v1"
    yield state
    state.hold.set()
    await runner.cleanup()


async def no_sleep(seconds: float) -> None:
    return None


def client(server: Server, **kwargs: Any) -> FathomClient:
    kwargs.setdefault("rate_limits", None)
    fathom = FathomClient(TOKEN, base_url=server.url, **kwargs)
    fathom._shared.sleep = no_sleep
    return fathom


async def test_the_id_arrives_as_one_encoded_segment(server: Server) -> None:
    server.script = [ok(SITE)]
    async with client(server) as fathom:
        await fathom.sites.get("../account")
    method, raw_path, headers, _ = server.seen[0]
    assert (method, raw_path) == ("GET", "/v1/sites/%2E%2E%2Faccount")
    assert headers["Authorization"] == f"Bearer {TOKEN}"


async def test_json_bodies_reach_the_server(server: Server) -> None:
    server.script = [ok(SITE)]
    async with client(server) as fathom:
        await fathom.sites.create("Acme", sharing="public")
    _, _, headers, body = server.seen[0]
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"name": "Acme", "sharing": "public"}


async def test_a_read_timeout_is_retried_then_raised(server: Server) -> None:
    server.script = [stall(server)] * 3
    async with client(server, timeout=0.05, max_retries=2) as fathom:
        with pytest.raises(APITimeoutError) as info:
            await fathom.account.get()
    assert info.value.outcome_unknown is True
    assert len(server.seen) == 3


async def test_a_timed_out_create_is_not_sent_again(server: Server) -> None:
    server.script = [stall(server)]
    async with client(server, timeout=0.05) as fathom:
        with pytest.raises(APITimeoutError) as info:
            await fathom.sites.create("Acme")
    assert info.value.outcome_unknown is True
    assert "may or may not exist" in str(info.value)
    assert len(server.seen) == 1


async def test_a_reset_read_is_retried(server: Server) -> None:
    server.script = [reset(), ok(ACCOUNT)]
    async with client(server) as fathom:
        assert (await fathom.account.get()).name == "Loopback"
    assert len(server.seen) == 2


async def test_a_create_reset_after_commit_is_never_duplicated(server: Server) -> None:
    created: list[str] = []
    server.script = [reset(commit=lambda: created.append("Acme")), ok(SITE)]
    async with client(server) as fathom:
        with pytest.raises(APIConnectionError) as info:
            await fathom.sites.create("Acme")
    assert info.value.outcome_unknown is True
    assert created == ["Acme"]
    assert len(server.seen) == 1


async def test_a_refused_connection_is_retried_even_for_creates() -> None:
    fathom = FathomClient(TOKEN, base_url="http://127.0.0.1:9/v1", rate_limits=None,
                          max_retries=2)
    fathom._shared.sleep = no_sleep
    async with fathom:
        with pytest.raises(APIConnectionError) as info:
            await fathom.sites.create("Acme")
    assert info.value.outcome_unknown is False
    assert "could not connect" in str(info.value)


async def test_a_truncated_body_is_a_connection_error_and_retried(server: Server) -> None:
    server.script = [truncated(), ok(ACCOUNT)]
    async with client(server) as fathom:
        assert (await fathom.account.get()).id == 1
    assert len(server.seen) == 2


async def test_bodies_over_the_limit_are_refused(server: Server) -> None:
    server.script = [big(4096)]
    async with client(server, max_response_bytes=1024, max_retries=0) as fathom:
        with pytest.raises(APIResponseError, match="max_response_bytes"):
            await fathom.account.get()


async def test_declared_lengths_over_the_limit_are_refused_before_reading(
    server: Server,
) -> None:
    server.script = [ok({"pad": "x" * 4096})]
    async with client(server, max_response_bytes=1024, max_retries=0) as fathom:
        with pytest.raises(APIResponseError, match="bytes is over"):
            await fathom.account.get()


async def test_closing_with_a_call_in_flight_ends_it_clearly(server: Server) -> None:
    server.script = [stall(server)]
    fathom = client(server)
    call = asyncio.create_task(fathom.account.get())
    await server.arrived.wait()
    await fathom.close()
    with pytest.raises(ClientClosedError):
        await call
    with pytest.raises(ClientClosedError):
        await fathom.account.get()


async def test_cancelling_a_call_leaves_the_client_usable(server: Server) -> None:
    server.script = [stall(server), ok(ACCOUNT)]
    async with client(server) as fathom:
        call = asyncio.create_task(fathom.account.get())
        await server.arrived.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (await fathom.account.get()).id == 1


async def test_retries_pass_through_the_bucket(server: Server) -> None:
    server.script = [status(503), status(500), ok(ACCOUNT)]
    limits = RateLimits()
    async with client(server, rate_limits=limits) as fathom:
        await fathom.account.get()
        assert limits.snapshot()["entity"].sent_in_window == 3
        assert limits.snapshot()["reports"].sent_in_window == 0


async def test_a_server_429_pauses_the_whole_bucket(server: Server) -> None:
    server.script = [status(429, {"Retry-After": "30"})]
    limits = RateLimits()
    async with client(server, rate_limits=limits, max_retry_wait=5) as fathom:
        with pytest.raises(RateLimitError):
            await fathom.account.get()
        assert limits.snapshot()["entity"].paused_for > 25
        bounded = fathom.with_options(acquire_timeout=0.01)
        with pytest.raises(AcquireTimeoutError):
            await bounded.sites.get("ABCDEF")
    assert len(server.seen) == 1


async def test_a_shared_limiter_counts_every_client(server: Server) -> None:
    limits = RateLimits()
    async with client(server, rate_limits=limits) as one, client(
        server, rate_limits=limits
    ) as two:
        await one.account.get()
        await two.account.get()
    assert limits.snapshot()["entity"].sent_in_window == 2


async def test_a_borrowed_session_works_and_stays_open(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        async with client(server, session=session) as fathom:
            assert (await fathom.account.get()).id == 1
        assert not session.closed
