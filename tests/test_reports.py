"""Reports on a budget: single flight, the report cache, and splitting long ranges."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from aioresponses import CallbackResult, aioresponses
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom_async import (
    AcquireTimeoutError,
    AggregationRows,
    BadRequestError,
    CacheStats,
    FathomClient,
    RateLimits,
    ReportCache,
    ValidationError,
)
from fathom_async._dates import hour_range_fits
from fathom_async._protocol import ApiRequest
from fathom_async._reports import (
    SingleFlight,
    _Flight,
    gather_all,
    halve_range,
    is_closed_range,
    request_key,
    split_range,
)
from fathom_async._resources.aggregations import aggregation_plan, aggregation_request
from tests.conftest import TOKEN, calls, url

PAST: dict[str, Any] = {"date_from": date(2020, 1, 1), "date_to": date(2020, 1, 31)}
FUTURE: dict[str, Any] = {"date_from": date(2020, 1, 1), "date_to": date(2999, 1, 31)}
REPORT: dict[str, Any] = {"entity": "pageview", "site_id": "CDBUGS", "aggregates": ["pageviews"]}


@pytest.fixture
async def cached(api: aioresponses) -> AsyncIterator[FathomClient]:
    """A strict client with an in-memory report cache."""
    async with FathomClient(
        TOKEN, rate_limits=None, strict=True, report_cache=ReportCache(ttl=600, open_ttl=0)
    ) as client:
        yield client


def cache_of(client: FathomClient) -> ReportCache:
    cache = client._shared.report_cache
    assert isinstance(cache, ReportCache)
    return cache


def gate() -> tuple[asyncio.Event, asyncio.Event, list[str], Any]:
    """An aioresponses callback that answers only once `release` is set."""
    release, sent = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    async def answer(request_url: Any, **kwargs: Any) -> CallbackResult:
        seen.append("sent")
        sent.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return CallbackResult(payload=[{"pageviews": "7"}])  # type: ignore[arg-type]

    return release, sent, seen, answer


# -- single flight -------------------------------------------------------------------


async def test_a_hundred_identical_calls_send_one_request(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "1382"}], repeat=True)
    results = await asyncio.gather(
        *(fathom.aggregations.query(**REPORT) for _ in range(100))
    )
    assert len(calls(api)) == 1
    assert all(rows[0].pageviews == 1382 for rows in results)
    assert len({id(rows) for rows in results}) == 100  # each caller owns its list
    assert fathom._shared.in_flight.started == 1
    assert fathom._shared.in_flight.joined == 99
    assert len(fathom._shared.in_flight) == 0  # nothing left once answered


async def test_calls_after_the_answer_send_again(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "1"}], repeat=True)
    await fathom.aggregations.query(**REPORT)
    await fathom.aggregations.query(**REPORT)
    assert len(calls(api)) == 2


async def test_different_queries_are_not_merged(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "1"}], repeat=True)
    await asyncio.gather(
        fathom.aggregations.query(**REPORT),
        fathom.aggregations.query(**{**REPORT, "site_id": "OTHER"}),
        fathom.aggregations.query(**{**REPORT, "aggregates": ["visits"]}),
    )
    assert len(calls(api)) == 3


async def test_views_share_the_flight_and_current_visitors_coalesce(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/current_visitors"), payload={"total": 3}, repeat=True)
    bulk = fathom.with_options(priority="bulk")
    first, second = await asyncio.gather(
        fathom.current_visitors.get("CDBUGS"), bulk.current_visitors.get("CDBUGS")
    )
    assert first.total == second.total == 3
    assert len(calls(api)) == 1


async def test_token_and_strictness_keep_flights_apart() -> None:
    request = ApiRequest("GET", "/aggregations", "reports", query=(("b", "2"), ("a", "1")))
    same = ApiRequest("GET", "/aggregations", "reports", query=(("a", "1"), ("b", "2")))
    assert request_key("t1", request) == request_key("t1", same)  # order does not matter
    assert request_key("t1", request) != request_key("t2", request)
    assert "t1" not in request_key("t1", request)
    with aioresponses() as api:
        api.get(url("/current_visitors"), payload={"total": 3}, repeat=True)
        async with FathomClient(TOKEN, rate_limits=None, strict=True) as strict, FathomClient(
            TOKEN, rate_limits=None
        ) as lenient:
            await asyncio.gather(
                strict.current_visitors.get("S"), lenient.current_visitors.get("S")
            )
        assert len(calls(api)) == 2  # separate clients, separate flights


async def test_a_cancelled_caller_leaves_the_others_their_answer(
    api: aioresponses, fathom: FathomClient
) -> None:
    release, sent, seen, answer = gate()
    api.get(url("/aggregations"), callback=answer)
    callers = [asyncio.ensure_future(fathom.aggregations.query(**REPORT)) for _ in range(3)]
    await sent.wait()
    callers[0].cancel()
    await asyncio.sleep(0)
    release.set()
    first, *others = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(first, asyncio.CancelledError)
    assert [rows[0].pageviews for rows in others if isinstance(rows, AggregationRows)] == [7, 7]
    assert seen == ["sent"]


async def test_the_request_is_cancelled_when_every_caller_is(
    api: aioresponses, fathom: FathomClient
) -> None:
    _, sent, seen, answer = gate()
    api.get(url("/aggregations"), callback=answer)
    callers = [asyncio.ensure_future(fathom.aggregations.query(**REPORT)) for _ in range(2)]
    await sent.wait()
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    for _ in range(5):
        await asyncio.sleep(0)
    assert seen == ["sent", "cancelled"]
    assert len(fathom._shared.in_flight) == 0


async def test_an_error_reaches_every_waiter(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/aggregations"), status=400, payload={"error": "bad grouping"})
    results = await asyncio.gather(
        *(fathom.aggregations.query(**REPORT) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, BadRequestError) for r in results)
    assert len(calls(api)) == 1


async def test_single_flight_starts_again_on_another_loop() -> None:
    flight = SingleFlight()
    other = asyncio.new_event_loop()
    flight._flights["k"] = _Flight(other)  # left over from another loop

    async def answer(terms: object) -> int:
        return 5

    assert await flight.run("k", answer) == 5
    assert flight.started == 1
    other.close()


# -- single flight: every caller keeps its own terms ----------------------------------------
#
# A reports window of one slot per 10 s, its slot spent at t=0 by another query, makes
# the shared request wait for a slot until t=10 (looptime: fake seconds, at once).

OTHER: dict[str, Any] = {**REPORT, "site_id": "OTHER"}


def soon(call: Any) -> asyncio.Future[tuple[float, Any]]:
    """Run a call; its outcome is (loop time when it ended, its result or error)."""
    loop = asyncio.get_running_loop()

    async def timed() -> tuple[float, Any]:
        try:
            result = await call
        except Exception as exc:
            result = exc
        return round(loop.time(), 3), result

    return asyncio.ensure_future(timed())


@contextlib.asynccontextmanager
async def full_window(api: aioresponses) -> AsyncIterator[FathomClient]:
    """A client whose reports window is full until t=10 (call it at t=0)."""
    api.get(url("/aggregations"), payload=[{"pageviews": "7"}], repeat=True)
    async with FathomClient(TOKEN, rate_limits=RateLimits(reports=(1, 10)), strict=True) as client:
        assert asyncio.get_running_loop().time() == 0
        await client.aggregations.query(**OTHER)  # the window's one slot, at t=0
        yield client


@pytest.mark.looptime
async def test_a_joiner_without_a_deadline_is_not_failed_by_the_starters(
    api: aioresponses,
) -> None:
    async with full_window(api) as fathom:
        hasty = fathom.with_options(acquire_timeout=1)
        starter = soon(hasty.aggregations.query(**REPORT))
        joiner = soon(fathom.aggregations.query(**REPORT))
        (ended, error), (answered, rows) = await asyncio.gather(starter, joiner)
        assert fathom._shared.in_flight.joined == 1
    assert isinstance(error, AcquireTimeoutError)
    assert (ended, error.timeout) == (1.0, 1.0)
    assert (answered, rows[0].pageviews) == (10.0, 7)
    assert len(calls(api)) == 2  # OTHER, then the shared one


@pytest.mark.looptime
async def test_a_joiner_keeps_its_own_short_acquire_timeout(api: aioresponses) -> None:
    async with full_window(api) as fathom:
        starter = soon(fathom.aggregations.query(**REPORT))
        joiner = soon(fathom.with_options(acquire_timeout=1).aggregations.query(**REPORT))
        (answered, rows), (ended, error) = await asyncio.gather(starter, joiner)
    assert isinstance(error, AcquireTimeoutError)
    assert ended == 1.0  # not 10: the starter's patience is not the joiner's
    assert (answered, rows[0].pageviews) == (10.0, 7)


@pytest.mark.looptime
async def test_a_joiners_budget_counts_the_slot_wait_from_when_it_joined(
    api: aioresponses,
) -> None:
    async with full_window(api) as fathom:
        starter = soon(fathom.aggregations.query(**REPORT))
        await asyncio.sleep(6)
        enough = soon(fathom.with_options(acquire_timeout=5).aggregations.query(**REPORT))
        short = soon(fathom.with_options(acquire_timeout=3).aggregations.query(**REPORT))
        results = await asyncio.gather(starter, enough, short)
    assert [ended for ended, _ in results] == [10.0, 10.0, 9.0]
    assert isinstance(results[2][1], AcquireTimeoutError)
    assert results[1][1][0].pageviews == 7
    assert len(calls(api)) == 2


@pytest.mark.looptime
async def test_a_lone_caller_fails_at_once_when_the_slot_lies_past_its_deadline(
    api: aioresponses,
) -> None:
    # Holds with a limiter that fails at once when the next slot is past the deadline.
    async with full_window(api) as fathom:
        hasty = fathom.with_options(acquire_timeout=3)
        ended, error = await soon(hasty.aggregations.query(**REPORT))
    assert isinstance(error, AcquireTimeoutError)
    assert (ended, error.timeout) == (0.0, 3.0)
    assert error.next_slot_in == pytest.approx(10.0, abs=0.01)
    assert len(calls(api)) == 1


@pytest.mark.looptime
async def test_time_spent_sending_is_not_slot_waiting(api: aioresponses) -> None:
    async def slow(request_url: Any, **kwargs: Any) -> CallbackResult:
        await asyncio.sleep(10)
        return CallbackResult(payload=[{"pageviews": "7"}])  # type: ignore[arg-type]

    api.get(url("/aggregations"), callback=slow)
    async with FathomClient(TOKEN, rate_limits=RateLimits(), strict=True) as fathom:
        starter = soon(fathom.aggregations.query(**REPORT))
        await asyncio.sleep(1)
        joiner = soon(fathom.with_options(acquire_timeout=0.5).aggregations.query(**REPORT))
        results = await asyncio.gather(starter, joiner)
    assert [(ended, rows[0].pageviews) for ended, rows in results] == [(10.0, 7), (10.0, 7)]


@pytest.mark.looptime
async def test_an_interactive_joiner_lifts_a_bulk_request_out_of_the_backlog(
    api: aioresponses,
) -> None:
    async with full_window(api) as fathom:
        bulk = fathom.with_options(priority="bulk")
        backlog = [soon(bulk.aggregations.query(**{**REPORT, "site_id": f"B{n}"}))
                   for n in range(3)]
        await asyncio.sleep(0.5)
        shared = soon(bulk.aggregations.query(**REPORT))
        await asyncio.sleep(0.5)
        dashboard = soon(fathom.aggregations.query(**REPORT))
        (shared_at, _), (dashboard_at, rows) = await asyncio.gather(shared, dashboard)
        assert (shared_at, dashboard_at, rows[0].pageviews) == (10.0, 10.0, 7)  # not 40
        assert [ended for ended, _ in await asyncio.gather(*backlog)] == [20.0, 30.0, 40.0]
        assert fathom.rate_limits is not None
        snapshot = fathom.rate_limits.snapshot()["reports"]
    assert len(calls(api)) == 5
    assert (snapshot.waiting, snapshot.in_flight) == ({"interactive": 0, "bulk": 0}, 0)


@pytest.mark.looptime
async def test_the_request_goes_back_to_bulk_when_its_interactive_caller_leaves(
    api: aioresponses,
) -> None:
    async with full_window(api) as fathom:
        bulk = fathom.with_options(priority="bulk")
        backlog = [soon(bulk.aggregations.query(**{**REPORT, "site_id": f"B{n}"}))
                   for n in range(2)]
        await asyncio.sleep(0.5)
        shared = soon(bulk.aggregations.query(**REPORT))
        dashboard = asyncio.ensure_future(fathom.aggregations.query(**REPORT))
        await asyncio.sleep(1)
        dashboard.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dashboard
        shared_at, rows = await shared
        assert [ended for ended, _ in await asyncio.gather(*backlog)] == [10.0, 20.0]
    assert (shared_at, rows[0].pageviews) == (30.0, 7)  # behind the bulk work queued first


@pytest.mark.looptime
async def test_a_slot_granted_as_the_priority_rises_is_given_back_and_taken_again(
    api: aioresponses,
) -> None:
    async with full_window(api) as fathom:
        shared = soon(fathom.with_options(priority="bulk").aggregations.query(**REPORT))
        await asyncio.sleep(1)
        flight = next(iter(fathom._shared.in_flight._flights.values()))
        joined: list[Any] = []
        # At the moment the slot opens: the bulk wait may be granted in that very step.
        asyncio.get_running_loop().call_at(
            10.0, lambda: joined.append(flight.join("interactive", None))
        )
        shared_at, rows = await shared
        flight.leave(joined[0])
        assert fathom.rate_limits is not None
        snapshot = fathom.rate_limits.snapshot()["reports"]
    assert (shared_at, rows[0].pageviews) == (10.0, 7)
    assert snapshot.sent_in_window == 1  # in this window: the shared request, once
    assert (snapshot.waiting, snapshot.in_flight) == ({"interactive": 0, "bulk": 0}, 0)
    assert len(calls(api)) == 2


@pytest.mark.looptime
async def test_a_caller_never_joins_a_request_being_cancelled(
    api: aioresponses, fathom: FathomClient
) -> None:
    release, sent = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    async def answer(request_url: Any, **kwargs: Any) -> CallbackResult:
        seen.append("sent")
        sent.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            await asyncio.sleep(0.05)  # letting go of a connection takes a moment
            raise
        return CallbackResult(payload=[{"pageviews": "7"}])  # type: ignore[arg-type]

    api.get(url("/aggregations"), callback=answer, repeat=True)
    first = asyncio.ensure_future(fathom.aggregations.query(**REPORT))
    await sent.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert seen == ["sent", "cancelled"]  # the request is still winding down
    release.set()
    rows = await fathom.aggregations.query(**REPORT)  # its own request, not a CancelledError
    assert rows[0].pageviews == 7
    assert seen == ["sent", "cancelled", "sent"]
    assert fathom._shared.in_flight.started == 2


@pytest.mark.looptime
async def test_a_run_being_cancelled_is_forgotten_at_once() -> None:
    flight = SingleFlight()
    started, cleaning = asyncio.Event(), asyncio.Event()

    async def slow(terms: object) -> int:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            cleaning.set()
            await asyncio.sleep(0.05)
        return 1

    async def quick(terms: object) -> int:
        return 2

    first = asyncio.ensure_future(flight.run("k", slow))
    await started.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(flight) == 0
    assert cleaning.is_set()
    assert await flight.run("k", quick) == 2
    assert flight.started == 2


# -- single flight: the run's terms, without a client -------------------------------------------


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_a_run_asks_again_when_the_highest_priority_among_its_callers_changes() -> None:
    loop = asyncio.get_running_loop()
    flight: _Flight[int] = _Flight(loop)
    starter = flight.join("bulk", 30.0)
    asked: list[tuple[str, float | None]] = []
    grant: asyncio.Future[Any] = loop.create_future()

    async def acquire(priority: Any, timeout: float | None) -> Any:
        asked.append((priority, timeout))
        calls = sum(1 for what, _ in asked if what != "gave up")
        try:
            return await (grant if calls == 3 else loop.create_future())
        except asyncio.CancelledError:
            asked.append(("gave up", None))
            raise

    waiting = asyncio.ensure_future(flight.wait("reports", acquire))
    await until(lambda: len(asked) == 1)
    hurry = flight.join("interactive", None)
    await until(lambda: len(asked) == 3)
    flight.leave(hurry)
    await until(lambda: len(asked) == 5)
    grant.set_result("permit")
    assert await waiting == cast(Any, "permit")
    patience = pytest.approx(30.0, abs=1.0)  # the starter's, less the time waited
    assert asked == [("bulk", patience), ("gave up", None), ("interactive", None),
                     ("gave up", None), ("bulk", patience)]
    assert flight.leave(starter) is True


async def test_a_caller_leaving_without_changing_the_priority_leaves_the_wait_alone() -> None:
    loop = asyncio.get_running_loop()
    flight: _Flight[int] = _Flight(loop)
    flight.join("interactive", None)
    other = flight.join("bulk", None)
    asked: list[str] = []
    grant = loop.create_future()

    async def acquire(priority: Any, timeout: float | None) -> Any:
        asked.append(priority)
        return await grant

    waiting = asyncio.ensure_future(flight.wait("reports", acquire))
    await asyncio.sleep(0)
    assert flight.leave(other) is False
    await asyncio.sleep(0)
    grant.set_result("permit")
    assert await waiting == cast(Any, "permit")
    assert asked == ["interactive"]


async def test_gather_all_cancels_the_rest_on_the_first_error() -> None:
    slow_cancelled = asyncio.Event()

    async def slow() -> int:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            slow_cancelled.set()
            raise
        return 1  # pragma: no cover

    async def fail() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await gather_all([slow(), fail()])
    await asyncio.sleep(0)
    assert slow_cancelled.is_set()


# -- the cache -----------------------------------------------------------------------


async def test_closed_ranges_are_cached_and_counted(
    api: aioresponses, cached: FathomClient
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    first = await cached.aggregations.query(**REPORT, **PAST)
    second = await cached.aggregations.query(**REPORT, **PAST)
    assert first == second
    assert len(calls(api)) == 1
    assert cache_of(cached).stats == CacheStats(hits=1, misses=1, stores=1)
    assert second[0].raw == {"pageviews": "5"}


async def test_open_ranges_are_not_cached_by_default(
    api: aioresponses, cached: FathomClient
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    await cached.aggregations.query(**REPORT, **FUTURE)
    await cached.aggregations.query(**REPORT)  # no date_to: open too
    await cached.aggregations.query(**REPORT, **FUTURE)
    assert len(calls(api)) == 3
    assert cache_of(cached).stats == CacheStats()


async def test_open_ttl_caches_open_ranges(api: aioresponses) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    async with FathomClient(
        TOKEN, rate_limits=None, report_cache=ReportCache(open_ttl=30)
    ) as client:
        await client.aggregations.query(**REPORT, **FUTURE)
        await client.aggregations.query(**REPORT, **FUTURE)
    assert len(calls(api)) == 1


@pytest.mark.looptime
async def test_entries_expire_in_loop_time(api: aioresponses, cached: FathomClient) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    await cached.aggregations.query(**REPORT, **PAST)
    await asyncio.sleep(599)
    await cached.aggregations.query(**REPORT, **PAST)
    assert len(calls(api)) == 1
    await asyncio.sleep(1)
    await cached.aggregations.query(**REPORT, **PAST)
    assert len(calls(api)) == 2
    assert cache_of(cached).stats == CacheStats(hits=1, misses=2, stores=2)


@pytest.mark.looptime
async def test_max_age_refuses_older_answers(api: aioresponses, cached: FathomClient) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    await cached.aggregations.query(**REPORT, **PAST)
    await asyncio.sleep(60)
    await cached.aggregations.query(**REPORT, **PAST, max_age=120)
    assert len(calls(api)) == 1
    await cached.aggregations.query(**REPORT, **PAST, max_age=30)
    assert len(calls(api)) == 2
    await cached.aggregations.query(**REPORT, **PAST, max_age=30)  # the fresh one is kept
    assert len(calls(api)) == 2


@pytest.mark.looptime
async def test_max_age_caches_an_open_range_for_that_long(
    api: aioresponses, cached: FathomClient
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    await cached.aggregations.query(**REPORT, **FUTURE, max_age=10)
    await cached.aggregations.query(**REPORT, **FUTURE, max_age=10)
    assert len(calls(api)) == 1
    await asyncio.sleep(11)
    await cached.aggregations.query(**REPORT, **FUTURE, max_age=10)
    assert len(calls(api)) == 2


async def test_cache_false_bypasses_the_cache(api: aioresponses, cached: FathomClient) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    await cached.aggregations.query(**REPORT, **PAST)
    await cached.aggregations.query(**REPORT, **PAST, cache=False)
    assert len(calls(api)) == 2
    assert cache_of(cached).stats == CacheStats(misses=1, stores=1)


@pytest.mark.looptime
async def test_current_visitors_are_cached_only_when_asked(
    api: aioresponses, cached: FathomClient
) -> None:
    api.get(url("/current_visitors"), payload={"total": 3}, repeat=True)
    await cached.current_visitors.get("CDBUGS")
    await cached.current_visitors.get("CDBUGS")
    assert len(calls(api)) == 2
    assert cache_of(cached).stats == CacheStats()
    await cached.current_visitors.get("CDBUGS", max_age=5)
    now = await cached.current_visitors.get("CDBUGS", max_age=5)
    assert now.total == 3
    assert len(calls(api)) == 3
    await cached.current_visitors.get("CDBUGS")  # the default still wants it live
    assert len(calls(api)) == 4
    await asyncio.sleep(6)
    await cached.current_visitors.get("CDBUGS", max_age=5)
    assert len(calls(api)) == 5


async def test_an_unreadable_answer_is_never_cached(
    api: aioresponses, cached: FathomClient
) -> None:
    api.get(url("/aggregations"), payload={"rows": []})
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}])
    with pytest.raises(Exception, match="aggregation rows"):
        await cached.aggregations.query(**REPORT, **PAST)
    assert (await cached.aggregations.query(**REPORT, **PAST))[0].pageviews == 5
    assert cache_of(cached).stats.stores == 1


@pytest.mark.looptime
async def test_least_recently_used_entries_are_evicted() -> None:
    cache = ReportCache(max_entries=2)
    await cache.set("a", [1], ttl=60)
    await cache.set("b", [2], ttl=60)
    assert await cache.get("a") == [1]  # a is now the most recent
    await cache.set("c", [3], ttl=60)
    assert await cache.get("b") is None
    assert await cache.get("a") == [1]
    assert len(cache) == 2
    assert cache.stats.evictions == 1
    assert "2/2" in repr(cache)
    cache.clear()
    assert len(cache) == 0


class _Broken(ReportCache):
    async def _load(self, key: str) -> tuple[float, Any] | None:
        raise ConnectionError("down")

    async def _store(self, key: str, value: Any, ttl: float) -> None:
        raise ConnectionError("down")


async def test_a_failing_cache_never_fails_the_report(
    api: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    broken = _Broken()
    async with FathomClient(TOKEN, rate_limits=None, report_cache=broken) as client:
        with caplog.at_level(logging.WARNING, logger="fathom_async"):
            rows = await client.aggregations.query(**REPORT, **PAST)
    assert rows[0].pageviews == 5
    assert broken.stats == CacheStats(misses=1, errors=2)
    assert "report cache read failed: ConnectionError: down" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl": -1}, "ttl"),
        ({"ttl": True}, "ttl"),
        ({"open_ttl": "5"}, "open_ttl"),
        ({"open_ttl": float("inf")}, "open_ttl"),
        ({"max_entries": 0}, "max_entries"),
        ({"max_entries": 1.5}, "max_entries"),
    ],
)
def test_cache_settings_are_checked(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ReportCache(**kwargs)
    assert info.value.field == field


async def test_per_call_cache_arguments_are_checked(
    api: aioresponses, cached: FathomClient
) -> None:
    with pytest.raises(ValidationError, match="max_age"):
        await cached.aggregations.query(**REPORT, max_age=-1)
    with pytest.raises(ValidationError, match="cache"):
        await cached.aggregations.query(**REPORT, cache="no")  # type: ignore[call-overload]
    with pytest.raises(ValidationError, match="max_age"):
        await cached.current_visitors.get("S", max_age="1")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="report_cache"):
        FathomClient(TOKEN, report_cache={})  # type: ignore[arg-type]
    assert calls(api) == []


def test_closed_means_over_an_hour_ago_on_the_report_clock() -> None:
    now = datetime(2024, 6, 15, 12, 0, tzinfo=timezone.utc).timestamp()

    def request(date_to: str, zone: str | None = None) -> ApiRequest:
        query = [("date_to", date_to)] + ([("timezone", zone)] if zone else [])
        return ApiRequest("GET", "/aggregations", "reports", query=tuple(query))

    # Berlin is UTC+2 in June: 14:00 local; closed up to 12:59:59
    assert is_closed_range(request("2024-06-15 12:59:59", "Europe/Berlin"), now)
    assert not is_closed_range(request("2024-06-15 13:00:01", "Europe/Berlin"), now)
    assert is_closed_range(request("2024-06-14 22:59:59", "UTC"), now)
    # without a zone: only what is past on the westmost clock (UTC-12) counts
    assert is_closed_range(request("2024-06-14 22:59:59"), now)
    assert not is_closed_range(request("2024-06-14 23:00:01"), now)
    assert not is_closed_range(ApiRequest("GET", "/aggregations", "reports"), now)


# -- splitting: the arithmetic ------------------------------------------------------------

H = timedelta(hours=1)
S = timedelta(seconds=1)


def test_exactly_seven_days_of_hours_is_one_call() -> None:
    start = datetime(2024, 6, 1)
    assert split_range(start, start + timedelta(days=7), "hour", 1000) == [
        (start, start + timedelta(days=7))
    ]


def test_seven_days_and_a_second_is_two_calls() -> None:
    start = datetime(2024, 6, 1)
    end = start + timedelta(days=7, seconds=1)
    assert split_range(start, end, "hour", 1000) == [
        (start, start + timedelta(days=7) - S),
        (start + timedelta(days=7), end),
    ]


def test_a_start_off_the_hour_cuts_on_hour_boundaries() -> None:
    start = datetime(2024, 6, 1, 10, 30)
    end = datetime(2024, 6, 20)
    ranges = split_range(start, end, "hour", 1000)
    assert ranges[0] == (start, datetime(2024, 6, 8, 9, 59, 59))
    assert ranges[1][0] == datetime(2024, 6, 8, 10)
    assert all(b - a <= timedelta(days=7) for a, b in ranges)
    assert all(nxt[0] - prev[1] == S for prev, nxt in itertools.pairwise(ranges))
    assert ranges[-1][1] == end


def test_seven_days_across_the_spring_change_is_one_call() -> None:
    # Europe/Berlin skips 02:00-03:00 on 2024-03-31: 7 wall-clock days are 167 h
    start = datetime(2024, 3, 28)
    assert len(split_range(start, start + timedelta(days=7), "hour", 1000, "Europe/Berlin")) == 1


def test_seven_days_across_the_autumn_change_is_two_calls() -> None:
    # Berlin repeats 02:00-03:00 on 2024-10-27: 7 wall-clock days are 169 h elapsed
    start = datetime(2024, 10, 24)
    end = start + timedelta(days=7)
    assert split_range(start, end, "hour", 1000) == [(start, end)]  # no zone: wall clock
    ranges = split_range(start, end, "hour", 1000, "Europe/Berlin")
    assert ranges == [
        (start, datetime(2024, 10, 30, 22, 59, 59)),
        (datetime(2024, 10, 30, 23), end),
    ]


@pytest.mark.parametrize(
    ("start", "skipped_or_repeated"),
    [
        (datetime(2024, 3, 24, 2), datetime(2024, 3, 31, 2)),  # spring: 02:00 never happens
        (datetime(2024, 10, 20, 2), datetime(2024, 10, 27, 2)),  # autumn: 02:00 happens twice
    ],
)
def test_no_range_is_cut_inside_a_dst_change(
    start: datetime, skipped_or_repeated: datetime
) -> None:
    end = start + timedelta(days=10)
    naive = split_range(start, end, "hour", 1000)
    assert naive[1][0] == skipped_or_repeated  # what a zone-blind cut would do
    ranges = split_range(start, end, "hour", 1000, "Europe/Berlin")
    cut = ranges[1][0]
    assert cut <= skipped_or_repeated - H
    assert ranges[0][1] == cut - S
    assert all(b - a <= timedelta(days=7) for a, b in ranges)
    assert ranges[-1][1] == end


def test_day_grouping_splits_past_the_limit_across_month_ends() -> None:
    start, end = datetime(2024, 1, 1), datetime(2024, 3, 31, 23, 59, 59)
    ranges = split_range(start, end, "day", 31)
    assert ranges == [
        (datetime(2024, 1, 1), datetime(2024, 1, 31, 23, 59, 59)),
        (datetime(2024, 2, 1), datetime(2024, 3, 2, 23, 59, 59)),  # 29 days of a leap Feb
        (datetime(2024, 3, 3), end),
    ]
    assert split_range(datetime(2023, 2, 1), datetime(2023, 3, 31), "day", 31)[0][1] == (
        datetime(2023, 3, 3, 23, 59, 59)  # 28 days in 2023
    )


def test_month_grouping_splits_on_month_starts() -> None:
    start, end = datetime(2024, 1, 31), datetime(2024, 4, 15)
    assert split_range(start, end, "month", 1) == [
        (datetime(2024, 1, 31), datetime(2024, 1, 31, 23, 59, 59)),
        (datetime(2024, 2, 1), datetime(2024, 2, 29, 23, 59, 59)),
        (datetime(2024, 3, 1), datetime(2024, 3, 31, 23, 59, 59)),
        (datetime(2024, 4, 1), end),
    ]
    assert split_range(datetime(2023, 12, 5), datetime(2024, 1, 2), "month", 1)[1][0] == (
        datetime(2024, 1, 1)
    )


def test_year_grouping_and_a_small_hour_limit() -> None:
    assert split_range(datetime(2000, 6, 1), datetime(2003, 1, 1), "year", 2) == [
        (datetime(2000, 6, 1), datetime(2001, 12, 31, 23, 59, 59)),
        (datetime(2002, 1, 1), datetime(2003, 1, 1)),
    ]
    assert len(split_range(datetime(2024, 6, 1), datetime(2024, 6, 2), "hour", 10)) == 3


def test_halving_cuts_on_a_period_boundary() -> None:
    halves = halve_range(datetime(2024, 1, 1), datetime(2024, 1, 4, 23, 59, 59), "day")
    assert halves == (
        (datetime(2024, 1, 1), datetime(2024, 1, 2, 23, 59, 59)),
        (datetime(2024, 1, 3), datetime(2024, 1, 4, 23, 59, 59)),
    )
    assert halve_range(datetime(2024, 1, 1), datetime(2024, 1, 1, 23), "day") is None
    # the middle hour is the repeated one: moved back out of it
    berlin = halve_range(
        datetime(2024, 10, 27), datetime(2024, 10, 27, 3, 59, 59), "hour", "Europe/Berlin"
    )
    assert berlin is not None
    assert berlin[1][0] == datetime(2024, 10, 27, 1)


def test_a_week_across_a_fall_back_is_split_where_the_request_check_refuses_it() -> None:
    # New York repeats 01:00-02:00 on 2026-11-01: 7 wall-clock days, 169 h elapsed
    start, end = datetime(2026, 10, 29), datetime(2026, 11, 5)
    assert split_range(start, end, "hour", 1000) == [(start, end)]
    assert split_range(start, end, "hour", 1000, "America/New_York") == [
        (start, datetime(2026, 11, 4, 22, 59, 59)),
        (datetime(2026, 11, 4, 23), end),
    ]
    plan = aggregation_plan(**REPORT, date_grouping="hour", date_from="2026-10-29 00:00:00",
                            date_to="2026-11-05 00:00:00", timezone="America/New_York")
    assert plan.calls == 2
    with pytest.raises(ValidationError):
        aggregation_plan(**REPORT, date_grouping="hour", date_from=start, date_to=end,
                         timezone="America/New_York", split=False)


ZONES = [None, "UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]


@settings(max_examples=300, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31)),
    span=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
    zone_name=st.sampled_from(ZONES),
    limit=st.sampled_from([5, 24, 168, 1000]),
)
def test_every_split_hour_range_passes_the_request_check(
    start: datetime, span: timedelta, zone_name: str | None, limit: int
) -> None:
    start = start.replace(microsecond=0, fold=0)
    end = (start + span).replace(microsecond=0)
    ranges = split_range(start, end, "hour", limit, zone_name)
    assert (ranges[0][0], ranges[-1][1]) == (start, end)
    assert all(nxt[0] - prev[1] == S for prev, nxt in itertools.pairwise(ranges))
    pieces = list(ranges)
    for first, last in ranges:
        halves = halve_range(first, last, "hour", zone_name)
        pieces += list(halves or ())
    for first, last in pieces:
        assert first <= last
        assert hour_range_fits(first, last, zone_name)
        aggregation_request(  # raises ValidationError if the check disagreed
            **REPORT, date_grouping="hour", date_from=first, date_to=last,
            timezone=zone_name, limit=limit,
        )


# -- splitting: plans and runs -------------------------------------------------------------


def test_a_plan_counts_calls_without_sending(api: aioresponses) -> None:
    plan = aggregation_plan(
        **REPORT, date_grouping="hour", date_from=datetime(2024, 1, 1),
        date_to=datetime(2024, 1, 29), timezone="Europe/Berlin",
    )
    assert plan.calls == 4  # the last range, Jan 22 to Jan 29 00:00, is exactly 7 days
    assert plan.limit == 1000
    assert "4 calls" in plan.reason
    assert [dict(r.query)["date_from"] for r in plan.requests][:2] == [
        "2024-01-01 00:00:00", "2024-01-08 00:00:00"]
    assert all(dict(r.query)["limit"] == "1000" for r in plan.requests)
    assert plan.ranges[-1] == (datetime(2024, 1, 22), datetime(2024, 1, 29))
    assert calls(api) == []


def test_plans_that_stay_one_call() -> None:
    one = aggregation_plan(**REPORT, date_grouping="day", date_from=date(2024, 1, 1),
                           date_to=date(2024, 1, 31))
    assert (one.calls, one.reason) == (1, "one call")
    open_end = aggregation_plan(**REPORT, date_grouping="day", date_from=date(2024, 1, 1))
    assert open_end.calls == 1
    assert "needs date_grouping" in open_end.reason
    assert open_end.ranges == ((datetime(2024, 1, 1), None),)
    unsplit = aggregation_plan(**REPORT, field_grouping="pathname", split=False)
    assert (unsplit.calls, unsplit.limit) == (1, 500)  # the API's default with a grouping
    assert "limit" not in dict(unsplit.requests[0].query)
    with pytest.raises(ValidationError, match="date_grouping"):
        aggregation_plan(**REPORT, date_grouping="hour", date_from=date(2024, 1, 1),
                         now=datetime(2024, 6, 1))  # open and too long: one call can't
    with pytest.raises(ValidationError, match="split"):
        aggregation_plan(**REPORT, split="yes")  # type: ignore[arg-type]


async def test_plan_method_matches_the_split_query(api: aioresponses, fathom: FathomClient) -> None:
    kwargs: dict[str, Any] = dict(
        REPORT, date_grouping="hour", date_from=datetime(2024, 1, 1),
        date_to=datetime(2024, 1, 15, 1),
    )
    plan = fathom.aggregations.plan(**kwargs)
    assert plan.calls == 3
    api.get(url("/aggregations"), payload=[{"pageviews": "1", "date": "x"}], repeat=True)
    await fathom.aggregations.query(**kwargs, split=True)
    assert [dict(kw["params"]) for _, _, kw in calls(api)] == [
        dict(r.query) for r in plan.requests]


def _answer_by_range(rows_for: Any) -> Any:
    def answer(request_url: Any, **kwargs: Any) -> CallbackResult:
        params = dict(kwargs["params"])
        return CallbackResult(payload=rows_for(params["date_from"], params["date_to"], params))

    return answer


async def test_split_rows_merge_oldest_first(api: aioresponses, fathom: FathomClient) -> None:
    def rows(start: str, end: str, params: dict[str, str]) -> list[dict[str, str]]:
        day = start[:10]
        return [{"pageviews": "1", "date": f"{day} 00:00:00"}, {"pageviews": "2",
                                                                 "date": f"{day} 01:00:00"}]

    api.get(url("/aggregations"), callback=_answer_by_range(rows), repeat=True)
    result = await fathom.aggregations.query(
        **REPORT, date_grouping="hour", date_from=datetime(2024, 1, 1),
        date_to=datetime(2024, 1, 20), split=True, timezone="UTC", sort_by="timestamp:asc",
    )
    assert isinstance(result, AggregationRows)
    assert [r.date for r in result] == [
        "2024-01-01 00:00:00", "2024-01-01 01:00:00", "2024-01-08 00:00:00",
        "2024-01-08 01:00:00", "2024-01-15 00:00:00", "2024-01-15 01:00:00"]
    assert result.columns == ("pageviews", "date")
    assert result.timezone == "UTC"
    assert not result.truncated


async def test_split_rows_merge_newest_first_when_sorted_so(
    api: aioresponses, fathom: FathomClient
) -> None:
    def rows(start: str, end: str, params: dict[str, str]) -> list[dict[str, str]]:
        first, last = date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        return [{"pageviews": "1", "date": str(day)} for day in reversed(days)]

    api.get(url("/aggregations"), callback=_answer_by_range(rows), repeat=True)
    result = await fathom.aggregations.query(
        **REPORT, date_grouping="day", date_from=date(2024, 1, 1), date_to=date(2024, 1, 5),
        limit=3, sort_by="timestamp:desc", split=True,
    )
    # [1-3] comes back full and is halved into [1] and [2-3]; then [4-5]
    assert [r.date for r in result] == [
        "2024-01-05", "2024-01-04", "2024-01-03", "2024-01-02", "2024-01-01"]
    assert len(calls(api)) == 4


async def test_a_full_chunk_is_halved_and_run_again(
    api: aioresponses, fathom: FathomClient
) -> None:
    def rows(start: str, end: str, params: dict[str, str]) -> list[dict[str, str]]:
        # two pathnames a day: a 3-day range has 6 rows, over limit=4
        first, last = date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        return [{"pageviews": "1", "date": str(d), "pathname": p} for d in days
                for p in ("/a", "/b")][: int(params["limit"])]

    api.get(url("/aggregations"), callback=_answer_by_range(rows), repeat=True)
    result = await fathom.aggregations.query(
        **REPORT, date_grouping="day", field_grouping="pathname", date_from=date(2024, 1, 1),
        date_to=date(2024, 1, 3), limit=4, split=True, sort_by="timestamp:asc",
    )
    assert [(r.date, r.pathname) for r in result] == [
        ("2024-01-01", "/a"), ("2024-01-01", "/b"), ("2024-01-02", "/a"), ("2024-01-02", "/b"),
        ("2024-01-03", "/a"), ("2024-01-03", "/b")]
    assert not result.truncated
    ranges = [(dict(kw["params"])["date_from"][:10], dict(kw["params"])["date_to"][:10])
              for _, _, kw in calls(api)]
    assert sorted(ranges) == [
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01", "2024-01-03"),  # full: 4 of 6 rows
        ("2024-01-02", "2024-01-02"),
        ("2024-01-02", "2024-01-03"),  # 4 rows of 4: full again, it cannot know better
        ("2024-01-03", "2024-01-03"),
    ]


async def test_a_full_single_period_is_reported_truncated(
    api: aioresponses, fathom: FathomClient, caplog: pytest.LogCaptureFixture
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "1", "date": "2024-01-01",
                                            "pathname": f"/{n}"} for n in range(3)], repeat=True)
    with caplog.at_level(logging.WARNING, logger="fathom_async"):
        result = await fathom.aggregations.query(
            **REPORT, date_grouping="day", field_grouping="pathname",
            date_from=date(2024, 1, 1), date_to=date(2024, 1, 1), limit=3, split=True,
        )
    assert result.truncated
    assert "truncated" in repr(result)
    assert "rows may be missing" in caplog.text
    assert len(calls(api)) == 1


async def test_an_unsplit_full_answer_is_marked_truncated(
    api: aioresponses, fathom: FathomClient
) -> None:
    # Without a limit, field grouping gets the API's 500 rows: 500 may be cut short.
    api.get(url("/aggregations"), payload=[{"pageviews": "1", "pathname": "/"}] * 500)
    api.get(url("/aggregations"), payload=[{"pageviews": "1", "pathname": "/"}] * 499)
    assert (await fathom.aggregations.query(**REPORT, field_grouping="pathname")).truncated
    assert not (await fathom.aggregations.query(**REPORT, field_grouping="pathname")).truncated


async def test_a_top_n_query_that_gets_n_rows_is_not_truncated(
    api: aioresponses, fathom: FathomClient, caplog: pytest.LogCaptureFixture
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "1", "pathname": "/"}] * 2)
    with caplog.at_level(logging.DEBUG, logger="fathom_async"):
        rows = await fathom.aggregations.query(**REPORT, field_grouping="pathname", limit=2)
    assert not rows.truncated
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_unsorted_split_rows_come_newest_first_like_one_call(
    api: aioresponses, fathom: FathomClient
) -> None:
    def rows(start: str, end: str, params: dict[str, str]) -> list[dict[str, str]]:
        first, last = date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        return [{"pageviews": "1", "date": f"{day} 00:00:00"} for day in reversed(days)]

    api.get(url("/aggregations"), callback=_answer_by_range(rows), repeat=True)
    result = await fathom.aggregations.query(
        **REPORT, date_grouping="hour", date_from=datetime(2024, 1, 1),
        date_to=datetime(2024, 1, 20), split=True, timezone="UTC",
    )
    dates = [r.date or "" for r in result]
    assert len(calls(api)) == 3
    assert dates == sorted(dates, reverse=True)
    assert dates[0].startswith("2024-01-20")


async def test_split_rows_sorted_by_an_aggregate_are_sorted_across_calls(
    api: aioresponses, fathom: FathomClient
) -> None:
    def rows(start: str, end: str, params: dict[str, str]) -> list[dict[str, str]]:
        day = int(start[8:10])
        return [{"pageviews": str(day * 10 % 7 + n), "date": f"{start[:10]} 0{n}:00:00"}
                for n in (2, 1, 0)]

    api.get(url("/aggregations"), callback=_answer_by_range(rows), repeat=True)
    result = await fathom.aggregations.query(
        **REPORT, date_grouping="hour", date_from=datetime(2024, 1, 1),
        date_to=datetime(2024, 1, 20), split=True, timezone="UTC", sort_by="pageviews:desc",
    )
    views = [r.pageviews or 0 for r in result]
    assert len(calls(api)) == 3
    assert views == sorted(views, reverse=True)


@pytest.mark.parametrize("odd_shape", [False, True])
async def test_split_rows_merge_as_columns_and_sort_ties_in_range_order(
    api: aioresponses, fathom: FathomClient, odd_shape: bool
) -> None:
    def rows(start: str, end: str, params: dict[str, str]) -> list[dict[str, str]]:
        day = start[:10]
        answer = [{"pageviews": "1", "date": f"{day} 00:00:00"},
                  {"pageviews": "2", "date": f"{day} 01:00:00"}]
        if odd_shape and day == "2024-01-08":  # the same keys in another order
            return [dict(reversed(row.items())) for row in answer]
        return answer

    api.get(url("/aggregations"), callback=_answer_by_range(rows), repeat=True)
    result = await fathom.aggregations.query(
        **REPORT, date_grouping="hour", date_from=datetime(2024, 1, 1),
        date_to=datetime(2024, 1, 20), split=True, timezone="UTC", sort_by="pageviews:desc",
    )
    # one shape: merged and sorted column by column, not a row made
    assert (result._table is None) == odd_shape
    assert any(result._flags) == odd_shape
    assert [(d["pageviews"], d["date"]) for d in result.to_dicts()] == [
        (2, "2024-01-01 01:00:00"), (2, "2024-01-08 01:00:00"), (2, "2024-01-15 01:00:00"),
        (1, "2024-01-01 00:00:00"), (1, "2024-01-08 00:00:00"), (1, "2024-01-15 00:00:00")]
    assert list(result[1].raw) == (["date", "pageviews"] if odd_shape else ["pageviews", "date"])
    assert (result.columns, result.timezone) == (("pageviews", "date"), "UTC")
