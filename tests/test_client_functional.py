"""Functional tests against a real loopback aiohttp server: what aioresponses cannot show.

Timeouts, resets, truncated bodies, the raw path on the wire, body size limits,
closing with calls in flight, kept-alive connections and the deadlines of calls that
wait for slots all need a real socket (aioresponses bypasses `ClientTimeout` and
keeps no connections).
"""

from __future__ import annotations

import asyncio
import contextlib
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
    NotFoundError,
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


async def test_a_delete_whose_503_may_have_acted_is_done_when_the_retry_gets_404(
    server: Server,
) -> None:
    server.script = [status(503), status(404)]
    async with client(server) as fathom:
        deleted = await fathom.sites.delete("ABCDEF")
    assert (deleted.deleted, deleted.id) == (True, "ABCDEF")
    assert [(method, path) for method, path, _, _ in server.seen] == [
        ("DELETE", "/v1/sites/ABCDEF")] * 2


async def test_a_delete_404_on_the_first_attempt_is_not_found(server: Server) -> None:
    server.script = [status(404)]
    async with client(server) as fathom:
        with pytest.raises(NotFoundError):
            await fathom.sites.delete("ABCDEF")
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


# -- a session you pass -------------------------------------------------------------------


async def test_a_borrowed_sessions_middlewares_run_on_our_requests(server: Server) -> None:
    passed: list[str] = []

    async def tag(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        passed.append(request.url.path)
        request.headers["X-Tag"] = "yours"
        return await handler(request)

    session = aiohttp.ClientSession(middlewares=(tag,))
    async with session, client(server, session=session) as fathom:
        await fathom.account.get()
    assert passed == ["/v1/account"]
    assert server.seen[0][2]["X-Tag"] == "yours"


async def test_a_borrowed_session_that_raises_for_status_still_gives_typed_errors(
    server: Server,
) -> None:
    server.script = [status(404)]
    session = aiohttp.ClientSession(raise_for_status=True)
    async with session, client(server, session=session) as fathom:
        with pytest.raises(NotFoundError):
            await fathom.sites.get("NOPE")
    assert len(server.seen) == 1


async def test_a_closed_borrowed_session_is_a_client_closed_error(server: Server) -> None:
    session = aiohttp.ClientSession()
    await session.close()
    fathom = client(server, session=session)
    with pytest.raises(ClientClosedError, match="session="):
        await fathom.account.get()
    assert server.seen == []


class KeepAliveServer:
    """A raw HTTP/1.1 server that drops a kept-alive connection when it is reused.

    It answers the first request on each connection (keeping it alive) and closes the
    connection, unanswered, when a second request arrives on it: what a server that
    closed an idle connection just as the client reused it looks like.
    """

    def __init__(self) -> None:
        self.received = 0
        self.url = ""
        self._handlers: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        answered = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.received += 1
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length" and int(value):
                        await reader.readexactly(int(value))
                if answered:
                    break  # dropped, unanswered
                body = json.dumps(ACCOUNT).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                answered = True
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def drain(self) -> None:
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)


@contextlib.asynccontextmanager
async def keep_alive_server() -> AsyncIterator[KeepAliveServer]:
    state = KeepAliveServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()
        await state.drain()


@pytest.mark.parametrize("borrowed", [False, True], ids=["our-session", "your-session"])
async def test_a_dropped_kept_alive_connection_is_sent_again_only_through_the_limiter(
    borrowed: bool,
) -> None:
    limits = RateLimits()
    async with keep_alive_server() as server:
        session = aiohttp.ClientSession() if borrowed else None
        try:
            fathom = FathomClient(TOKEN, base_url=server.url, rate_limits=limits,
                                  session=session)
            fathom._shared.sleep = no_sleep
            async with fathom:
                await fathom.account.get()  # a new connection, kept alive
                await fathom.account.get()  # reuses it: dropped; sent again on a new one
        finally:
            if session is not None:
                await session.close()
    assert server.received == 3
    # Every request that reached the server had a slot: none was resent by aiohttp.
    assert limits.snapshot()["entity"].sent_in_window == 3


async def test_a_borrowed_session_keeps_aiohttps_own_resend_for_its_owners_requests() -> None:
    async with keep_alive_server() as server, aiohttp.ClientSession() as session:
        async with FathomClient(TOKEN, base_url=server.url, rate_limits=None,
                                session=session) as fathom:
            await fathom.account.get()
        # Yours reuses the connection ours left: dropped, and aiohttp sends it again.
        async with session.get(server.url + "/account") as response:
            assert response.status == 200
    assert server.received == 3  # ours, yours dropped, yours again


# -- deadlines: acquire_timeout bounds all the waiting for slots in one call -------------------


@pytest.mark.looptime
async def test_acquire_timeout_bounds_the_wait_after_a_429(server: Server) -> None:
    server.script = [status(429, {"Retry-After": "60"}), ok(ACCOUNT)]
    loop = asyncio.get_running_loop()
    async with client(server, rate_limits=RateLimits(), acquire_timeout=3,
                      max_retry_wait=120) as fathom:
        fathom._shared.sleep = asyncio.sleep  # real (fake-clock) sleeps
        started = loop.time()
        with pytest.raises(AcquireTimeoutError) as info:
            await fathom.account.get()
        elapsed = loop.time() - started
    assert elapsed <= 3.001  # not 60: the bucket's pause is waited within the deadline
    assert info.value.timeout == 3
    assert len(server.seen) == 1


@pytest.mark.looptime
async def test_a_429_pause_beyond_acquire_timeout_fails_at_once_saying_when(
    server: Server,
) -> None:
    # Holds once the limiter fails at once when a pause outlasts the deadline.
    server.script = [status(429, {"Retry-After": "60"})]
    loop = asyncio.get_running_loop()
    async with client(server, rate_limits=RateLimits(), acquire_timeout=3,
                      max_retry_wait=120) as fathom:
        started = loop.time()
        with pytest.raises(AcquireTimeoutError) as info:
            await fathom.account.get()
        elapsed = loop.time() - started
    assert elapsed < 0.01
    assert info.value.timeout == 3
    assert info.value.next_slot_in == pytest.approx(60, abs=0.01)


@pytest.mark.looptime
async def test_with_a_limiter_a_429_is_waited_in_the_bucket_not_slept_on_top(
    server: Server,
) -> None:
    server.script = [status(429, {"Retry-After": "5"}), ok(ACCOUNT)]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    loop = asyncio.get_running_loop()
    async with client(server, rate_limits=RateLimits()) as fathom:
        fathom._shared.sleep = sleep
        started = loop.time()
        assert (await fathom.account.get()).id == 1
        elapsed = loop.time() - started
    assert slept == [0.0]
    assert 5 <= elapsed < 5.01
    assert len(server.seen) == 2


@pytest.mark.looptime
async def test_without_a_limiter_a_429_sleeps_its_retry_after(server: Server) -> None:
    server.script = [status(429, {"Retry-After": "60"}), ok(ACCOUNT)]
    loop = asyncio.get_running_loop()
    async with client(server, acquire_timeout=3, max_retry_wait=120) as fathom:
        fathom._shared.sleep = asyncio.sleep
        started = loop.time()
        assert (await fathom.account.get()).id == 1
        elapsed = loop.time() - started
    assert 60 <= elapsed < 60.01
    assert len(server.seen) == 2


@pytest.mark.looptime
async def test_every_attempts_slot_wait_spends_the_same_acquire_timeout(
    server: Server,
) -> None:
    limits = RateLimits(entity=(1, 10))
    server.script = [ok(ACCOUNT), status(503), status(503), ok(ACCOUNT)]
    loop = asyncio.get_running_loop()
    async with client(server, rate_limits=limits) as fathom:
        await fathom.account.get()  # the window's one slot
        bounded = fathom.with_options(acquire_timeout=15)
        started = loop.time()
        with pytest.raises(AcquireTimeoutError) as info:
            # 10 s for the first slot, then a 503; the retry's slot is 10 s further
            # on, and only 5 s of the budget are left.
            await bounded.account.get()
        elapsed = loop.time() - started
    assert 10 <= elapsed <= 15.001
    assert info.value.timeout == 15
    assert len(server.seen) == 2
