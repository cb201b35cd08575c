"""Functional: cancelling a call at every await point, and closing with calls in flight.

After each cancellation the scheduler is consistent (no waiter, nothing in flight, the
window slot of an unsent request given back) and the session serves the next call.
Closing the client ends every call in flight, wherever it waits, with
`ClientClosedError`; a closed client refuses every call the same way. No task is
left pending ("Task was destroyed") and no ResourceWarning escapes
(`filterwarnings = error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fathom_async import ClientClosedError, FathomClient, RateLimits
from fathom_async.export import ExportSpec, run_export
from fathom_async.testing import FakeFathom
from tests.hostile_support import (
    ACCOUNT,
    Loopback,
    assert_scheduler_idle,
    json_answer,
    loopback,
    no_sleep,
    slow_body,
    stall,
)

TOKEN = "cancel-test-token"


@pytest.fixture(autouse=True)
def _no_task_destroyed(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    gc.collect()
    destroyed = [r for r in caplog.records if "was destroyed" in r.getMessage()]
    assert not destroyed, destroyed


@pytest.fixture
async def server() -> AsyncIterator[Loopback]:
    async with loopback() as state:
        yield state


class BlockingSleep:
    """An injected retry sleep that waits for the test: `sleeping` is set while it waits."""

    def __init__(self) -> None:
        self.sleeping = asyncio.Event()
        self.wake = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.sleeping.set()
        await self.wake.wait()


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def client(url: str, limits: RateLimits | None, **kwargs: Any) -> FathomClient:
    fathom = FathomClient(TOKEN, base_url=url, rate_limits=limits, **kwargs)
    fathom._shared.sleep = no_sleep
    return fathom


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never came true")


# -- cancelling at each await point -------------------------------------------------------


@pytest.mark.looptime
async def test_cancelled_while_waiting_for_a_slot(server: Loopback) -> None:
    limits = RateLimits(entity=(1, 60))
    async with client(server.url, limits) as fathom:
        await fathom.account.get()
        waiting = asyncio.create_task(fathom.account.get())
        await wait_until(lambda: limits.snapshot()["entity"].waiting["interactive"] == 1)
        await cancel(waiting)
        assert_scheduler_idle(limits)
        assert limits.snapshot()["entity"].sent_in_window == 1
        assert (await fathom.account.get()).id == 1  # after the window, in fake time
    assert len(server.seen) == 2


async def test_cancelled_while_connecting_to_a_black_hole(server: Loopback) -> None:
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    filler = socket.create_connection(hole.getsockname(), timeout=1)  # fills the backlog
    connecting = asyncio.Event()
    connected = asyncio.Event()

    async def started(*_: Any) -> None:
        connecting.set()

    async def ended(*_: Any) -> None:
        connected.set()

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(started)
    trace.on_connection_create_end.append(ended)
    limits = RateLimits()
    try:
        async with aiohttp.ClientSession(trace_configs=[trace]) as session:
            port = hole.getsockname()[1]
            lost = client(f"http://127.0.0.1:{port}/v1", limits, session=session)
            working = client(server.url, limits, session=session)
            call = asyncio.create_task(lost.account.get())
            await connecting.wait()
            for _ in range(5):
                await asyncio.sleep(0)
            assert not connected.is_set()
            await cancel(call)
            assert_scheduler_idle(limits)
            assert (await working.account.get()).id == 1  # same session, same limiter
            assert_scheduler_idle(limits)
    finally:
        filler.close()
        hole.close()


@pytest.mark.parametrize("stage", ["awaiting_headers", "reading_the_body"])
async def test_cancelled_while_the_server_is_slow(server: Loopback, stage: str) -> None:
    server.script = [stall(server) if stage == "awaiting_headers" else slow_body(server)]
    limits = RateLimits()
    async with client(server.url, limits) as fathom:
        call = asyncio.create_task(fathom.account.get())
        await server.arrived.wait()
        for _ in range(5):
            await asyncio.sleep(0)
        assert limits.snapshot()["entity"].in_flight == 1
        await cancel(call)
        assert_scheduler_idle(limits)
        assert (await fathom.account.get()).id == 1


async def test_cancelled_while_sleeping_between_retries(server: Loopback) -> None:
    server.script = [json_answer({"error": "down"}, status=503)]
    limits = RateLimits()
    sleep = BlockingSleep()
    async with client(server.url, limits) as fathom:
        fathom._shared.sleep = sleep
        call = asyncio.create_task(fathom.account.get())
        await sleep.sleeping.wait()
        assert_scheduler_idle(limits)  # the permit went back before the sleep
        await cancel(call)
        assert_scheduler_idle(limits)
        assert not leftover_waits()
        fathom._shared.sleep = no_sleep
        assert (await fathom.account.get()).id == 1
    assert len(server.seen) == 2


@pytest.mark.looptime
async def test_cancelled_inside_an_export(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    async with FakeFathom(seed=5, pageviews=2_000) as fake, \
            FathomClient(fake.token, base_url=fake.url) as fathom:
        limits = fathom.rate_limits
        assert isinstance(limits, RateLimits)
        today = datetime.now(timezone.utc).date()
        spec = ExportSpec(date_from=today - timedelta(days=30), date_to=today,
                          granularity="hour", entities=("pageviews",))
        export = asyncio.create_task(run_export(fathom, spec, tmp_path))
        await wait_until(lambda: limits.snapshot()["reports"].waiting["bulk"] > 0)
        await asyncio.sleep(30)  # fake time: some chunks land, more wait for slots
        await cancel(export)
        for _ in range(5):
            await asyncio.sleep(0)
        assert_scheduler_idle(limits)
        assert (await fathom.account.get()).name == "Homer Simpson"
        rows = await fathom.aggregations.query(entity="pageview", site_id=fake.site_id,
                                               aggregates="pageviews")
        assert rows[0].pageviews is not None
    for _ in range(5):
        await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()


def leftover_waits() -> list[asyncio.Task[object]]:
    """Pending tasks still waiting for a slot or a retry's sleep on the client's behalf."""
    names = ("RateLimits.acquire", "BlockingSleep.__call__")
    return [
        task for task in asyncio.all_tasks()
        if not task.done() and getattr(task.get_coro(), "__qualname__", "") in names
    ]


# -- closing ------------------------------------------------------------------------------


async def test_closing_ends_calls_waiting_anywhere_with_client_closed_error(
    server: Loopback,
) -> None:
    limits = RateLimits(entity=(2, 3600))
    sleep = BlockingSleep()
    server.script = [stall(server), json_answer({"error": "down"}, status=503)]
    fathom = client(server.url, limits)
    fathom._shared.sleep = sleep
    reading = asyncio.create_task(fathom.account.get())
    await server.arrived.wait()
    retrying = asyncio.create_task(fathom.sites.get("ABCDEF"))
    await sleep.sleeping.wait()
    queued = asyncio.create_task(fathom.with_options(priority="bulk").account.get())
    await wait_until(lambda: limits.snapshot()["entity"].waiting["bulk"] == 1)
    await fathom.close()
    for call in (reading, retrying, queued):
        with pytest.raises(ClientClosedError):
            await call
    assert_scheduler_idle(limits)
    assert not leftover_waits()
    assert len(server.seen) == 2  # the queued call never went out


async def test_a_call_cancelled_by_its_owner_during_close_stays_cancelled(
    server: Loopback,
) -> None:
    limits = RateLimits(entity=(1, 3600))
    fathom = client(server.url, limits)
    await fathom.account.get()
    queued = asyncio.create_task(fathom.account.get())
    await wait_until(lambda: limits.snapshot()["entity"].waiting["interactive"] == 1)
    queued.cancel()  # the owner's cancellation, then close() in the same step
    await fathom.close()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert_scheduler_idle(limits)


CLOSED_CALLS: list[Callable[[FathomClient], Awaitable[Any]]] = [
    lambda f: f.account.get(),
    lambda f: f.token.get(),
    lambda f: f.sites.get("ABCDEF"),
    lambda f: f.sites.create("Acme"),
    lambda f: _first(f.sites.list()),
    lambda f: _walk(f.events.list("ABCDEF")),
    lambda f: f.milestones.create("ABCDEF", "Launch", date(2024, 1, 1)),
    lambda f: f.aggregations.query(entity="pageview", site_id="ABCDEF", aggregates="visits"),
    lambda f: f.current_visitors.get("ABCDEF"),
    lambda f: f.with_options(priority="bulk").sites.delete("ABCDEF"),
]


async def _first(pager: Any) -> Any:
    return await pager


async def _walk(pager: Any) -> list[Any]:
    return [item async for item in pager]


@pytest.mark.parametrize("call", CLOSED_CALLS)
async def test_a_closed_client_refuses_every_call(
    server: Loopback, call: Callable[[FathomClient], Awaitable[Any]]
) -> None:
    fathom = client(server.url, RateLimits())
    async with fathom:
        pass
    assert fathom.is_closed
    with pytest.raises(ClientClosedError):
        await call(fathom)
    assert server.seen == []


async def test_closing_twice_and_closing_a_view_are_harmless(server: Loopback) -> None:
    fathom = client(server.url, None)
    view = fathom.with_options(priority="bulk")
    await view.close()
    assert (await view.account.get()).id == 1
    await fathom.close()
    await fathom.close()
    with pytest.raises(ClientClosedError):
        await view.account.get()


async def test_a_borrowed_session_stays_open_and_usable_after_close(server: Loopback) -> None:
    async with aiohttp.ClientSession() as session:
        fathom = client(server.url, None, session=session)
        server.script = [stall(server)]
        call = asyncio.create_task(fathom.account.get())
        await server.arrived.wait()
        await fathom.close()
        server.hold.set()
        # The session is the caller's: the request on it may finish, or end closed.
        with contextlib.suppress(ClientClosedError):
            assert (await call).id == 1
        assert not session.closed
        async with session.get(server.url + "/account") as response:
            assert (await response.json()) == ACCOUNT
        with pytest.raises(ClientClosedError):
            await fathom.account.get()
