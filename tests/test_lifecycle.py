"""Functional: one client across event loops and threads, and nothing left open.

A client is made anywhere (outside any loop, as at import time) and used from whatever
loop runs: two `asyncio.run()` calls, a loop per thread at once, a session-scoped
fixture's loop and each test's own. Each loop gets its own aiohttp session and report
flights; `close()` works from any loop; a session is closed in its own loop, or let
go of without that loop once it is closed. `filterwarnings = error` turns any
ResourceWarning (an unclosed session, connector or socket) into a failure, and the
server, in a thread of its own that outlives every client loop, counts the
connections still open.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest

from fathom_async import ClientClosedError, FathomClient, RateLimits, ValidationError
from tests.conftest import TOKEN

ACCOUNT = {"id": 1, "object": "account", "name": "Threaded"}
REPORT: dict[str, Any] = {
    "entity": "pageview", "site_id": "CDBUGS", "aggregates": ["pageviews"], "cache": False,
}
T = TypeVar("T")
PATIENCE = 20.0  # real seconds a thread or a close may take on a loaded machine


class ThreadedServer:
    """A loopback HTTP/1.1 server in its own thread and loop.

    It keeps connections alive, counts requests and open connections, answers
    reports after `report_delay` seconds (so callers in several loops overlap), and
    holds every answer while `stalling` is set.
    """

    def __init__(self) -> None:
        self.url = ""
        self.received: list[str] = []
        self.open = 0
        self._changed = threading.Condition()  # notified whenever `received` or `open` moves
        self.stalling = False
        self.report_delay = 0.0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._release: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(PATIENCE)

    def stop(self) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(PATIENCE)
        assert not self._thread.is_alive()

    def release(self) -> None:
        """Let the answers held by `stalling` go (to connections the client may have closed)."""
        assert self._loop is not None
        assert self._release is not None
        self.stalling = False
        self._loop.call_soon_threadsafe(self._release.set)

    def wait_until_idle(self) -> None:
        """Every connection a client opened is closed (the client side closed it)."""
        with self._changed:
            self._changed.wait_for(lambda: not self.open, PATIENCE)
        assert self.open == 0, f"{self.open} connection(s) left open"

    def wait_for_requests(self, count: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, PATIENCE)
        assert len(self.received) >= count

    def _moved(self) -> None:
        with self._changed:
            self._changed.notify_all()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop, self._release = asyncio.Event(), asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        self._ready.set()
        await self._stop.wait()
        self._release.set()
        server.close()
        await server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        assert self._release is not None
        self._handlers.add(task)
        self.open += 1
        self._moved()
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                self.received.append(path)
                self._moved()
                if self.stalling:
                    await self._release.wait()
                if path.startswith("/v1/aggregations"):
                    await asyncio.sleep(self.report_delay)
                    payload: Any = [{"pageviews": "7"}]
                else:
                    payload = ACCOUNT
                body = json.dumps(payload).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            self._moved()
            writer.close()
            self._handlers.discard(task)


@pytest.fixture
def server() -> Iterator[ThreadedServer]:
    state = ThreadedServer()
    state.start()
    yield state
    state.stop()


class LoopRunner:
    """`asyncio.Runner` for Python 3.10 too: one loop, shut down as asyncio.run() does."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def __enter__(self) -> LoopRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()


def in_threads(*works: Callable[[], Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run each coroutine function in a thread of its own, under its own asyncio.run()."""
    barrier = threading.Barrier(len(works))
    outcomes: list[Any] = [None] * len(works)

    def run(index: int) -> None:
        async def started() -> Any:
            barrier.wait(PATIENCE)  # every loop is running before any call is made
            return await works[index]()

        try:
            outcomes[index] = asyncio.run(started())
        except BaseException as exc:  # handed to the test
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(works))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE * 2)
        assert not thread.is_alive()
    return outcomes


def settled() -> None:
    """Collect now, so any unclosed session or socket warns inside the test."""
    gc.collect()


# -- one client, many loops -----------------------------------------------------------


def test_a_client_made_outside_any_loop_serves_two_asyncio_runs(server: ThreadedServer) -> None:
    fathom = FathomClient(TOKEN, base_url=server.url)  # as at import time: no loop yet

    async def use() -> aiohttp.ClientSession | None:
        assert (await fathom.account.get()).id == 1
        return fathom._shared.session

    first = asyncio.run(use())
    second = asyncio.run(use())
    assert first is not None
    assert second is not None
    assert first is not second
    assert first.closed  # each closed as its loop shut down
    assert second.closed
    server.wait_until_idle()
    asyncio.run(fathom.close())
    assert fathom.rate_limits is not None
    assert fathom.rate_limits.snapshot()["entity"].sent_in_window == 2
    settled()


def test_two_threads_use_one_client_at_once(server: ThreadedServer) -> None:
    fathom = FathomClient(TOKEN, base_url=server.url, rate_limits=None)

    async def work() -> tuple[int, int]:
        accounts = await asyncio.gather(*(fathom.account.get() for _ in range(20)))
        return len(accounts), id(fathom._shared.session)

    outcomes = in_threads(work, work)
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert [count for count, _ in outcomes] == [20, 20]
    assert outcomes[0][1] != outcomes[1][1]  # a session per loop
    asyncio.run(fathom.close())
    server.wait_until_idle()
    assert len(server.received) == 40
    settled()


def test_two_threads_share_the_default_limiter_of_one_token(server: ThreadedServer) -> None:
    # Needs a RateLimits usable from several loops at once (the new limiter).
    fathom = FathomClient(TOKEN, base_url=server.url)

    async def work() -> int:
        return len(await asyncio.gather(*(fathom.account.get() for _ in range(20))))

    outcomes = in_threads(work, work)
    assert outcomes == [20, 20], outcomes
    assert fathom.rate_limits is not None
    assert fathom.rate_limits.snapshot()["entity"].sent_in_window == 40
    asyncio.run(fathom.close())
    server.wait_until_idle()
    settled()


def test_report_flights_are_per_event_loop(server: ThreadedServer) -> None:
    server.report_delay = 0.2  # the two loops' identical reports overlap
    fathom = FathomClient(TOKEN, base_url=server.url, rate_limits=None)

    async def work() -> list[int | None]:
        rows = await asyncio.gather(*(fathom.aggregations.query(**REPORT) for _ in range(5)))
        return [batch[0].pageviews for batch in rows]

    outcomes = in_threads(work, work)
    assert outcomes == [[7] * 5, [7] * 5], outcomes
    assert len([p for p in server.received if p.startswith("/v1/aggregations")]) == 2
    asyncio.run(fathom.close())
    settled()


def test_a_session_scoped_fixture_and_per_test_loops(server: ThreadedServer) -> None:
    async def make() -> FathomClient:
        return FathomClient(TOKEN, base_url=server.url)

    with LoopRunner() as fixture_loop:  # a session-scoped fixture's loop
        fathom = fixture_loop.run(make())
        fixture_loop.run(fathom.account.get())
        for _ in range(3):
            with LoopRunner() as test_loop:  # each test's own loop
                assert test_loop.run(fathom.account.get()).id == 1
        fixture_loop.run(fathom.close())  # the fixture's teardown
        assert fathom.is_closed
    server.wait_until_idle()
    assert len(server.received) == 4
    settled()


def test_a_client_nobody_closed_closes_its_session_as_its_loop_ends(
    server: ThreadedServer,
) -> None:
    fathom = FathomClient(TOKEN, base_url=server.url, rate_limits=None)

    async def forget_to_close() -> aiohttp.ClientSession | None:
        await fathom.account.get()
        return fathom._shared.session

    session = asyncio.run(forget_to_close())
    assert session is not None
    assert session.closed
    server.wait_until_idle()
    settled()
    assert not fathom.is_closed  # the client itself goes on in the next loop
    assert asyncio.run(fathom.account.get()).id == 1
    asyncio.run(fathom.close())


def test_close_from_a_later_loop_lets_go_of_a_closed_loops_sockets(
    server: ThreadedServer,
) -> None:
    fathom = FathomClient(TOKEN, base_url=server.url, rate_limits=None)

    async def use() -> aiohttp.ClientSession | None:
        await fathom.account.get()
        return fathom._shared.session

    loop = asyncio.new_event_loop()
    session = loop.run_until_complete(use())
    loop.close()  # without shutdown_asyncgens(): nothing closed the session in time
    assert session is not None
    assert not session.closed
    assert server.open == 1  # its kept-alive connection
    asyncio.run(fathom.close())  # from a later loop
    assert session.closed
    server.wait_until_idle()
    settled()


def test_a_new_loop_lets_go_of_a_closed_loops_sockets(server: ThreadedServer) -> None:
    fathom = FathomClient(TOKEN, base_url=server.url, rate_limits=None)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(fathom.account.get())
    loop.close()  # abandoned, with a kept-alive connection
    assert server.open == 1
    assert asyncio.run(fathom.account.get()).id == 1  # the next loop tidies up
    server.wait_until_idle()
    settled()
    asyncio.run(fathom.close())


def test_close_from_another_thread_ends_the_calls_waiting_there(
    server: ThreadedServer,
) -> None:
    fathom = FathomClient(TOKEN, base_url=server.url, rate_limits=None)
    server.stalling = True
    outcomes: list[BaseException | None] = []

    async def parked_for_ever(seconds: float) -> None:
        await asyncio.sleep(3600)

    async def calls() -> None:
        fathom._shared.sleep = parked_for_ever  # a retry's sleep, parked
        results = await asyncio.gather(
            fathom.account.get(),  # in flight: the server holds its answer
            fathom._shared.park(parked_for_ever(0), "a retry was waiting"),
            return_exceptions=True,
        )
        outcomes.extend(r if isinstance(r, BaseException) else None for r in results)

    thread = threading.Thread(target=asyncio.run, args=(calls(),))
    thread.start()
    server.wait_for_requests(1)
    asyncio.run(fathom.close())  # this thread's loop; the calls wait in the other's
    thread.join(PATIENCE)
    assert not thread.is_alive()
    assert [type(o) for o in outcomes] == [ClientClosedError, ClientClosedError]
    server.release()
    server.wait_until_idle()
    settled()


def test_a_closed_client_refuses_calls_in_every_loop_and_thread(server: ThreadedServer) -> None:
    fathom = FathomClient(TOKEN, base_url=server.url, rate_limits=None)
    asyncio.run(fathom.account.get())
    asyncio.run(fathom.close())

    async def refused() -> int:
        with pytest.raises(ClientClosedError):
            await fathom.account.get()
        with pytest.raises(ClientClosedError):
            await fathom.aggregations.query(**REPORT)
        with pytest.raises(ClientClosedError):
            async with fathom:
                pass
        return 3

    assert asyncio.run(refused()) == 3
    assert in_threads(refused, refused) == [3, 3]
    assert server.received == ["/v1/account"]
    settled()


# -- a session you pass belongs to its loop ---------------------------------------------------


def test_a_borrowed_session_is_refused_in_another_loop_before_any_request(
    server: ThreadedServer,
) -> None:
    async def make_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    limits = RateLimits()
    with LoopRunner() as owner:
        session = owner.run(make_session())
        fathom = FathomClient(TOKEN, base_url=server.url, rate_limits=limits, session=session)

        async def elsewhere() -> None:
            for call in (fathom.account.get, lambda: fathom.current_visitors.get("CDBUGS")):
                with pytest.raises(ValidationError, match="another event loop") as info:
                    await call()
                assert info.value.field == "session"
            with pytest.raises(ValidationError):
                async with fathom:
                    pass

        asyncio.run(elsewhere())
        assert in_threads(elsewhere) == [None]
        assert server.received == []
        assert limits.snapshot()["entity"].sent_in_window == 0  # no slot was taken
        assert owner.run(fathom.account.get()).id == 1  # its own loop is fine
        owner.run(fathom.close())
        assert not session.closed  # yours: never closed by us
        owner.run(session.close())
    server.wait_until_idle()
    settled()
