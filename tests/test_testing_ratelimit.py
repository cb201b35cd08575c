"""Rate limits: exact sliding windows per account, the report concurrency cap, and
`time_scale`. Functional tests run under looptime, so an hour passes in no time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from fathom_async.testing import FakeFathom, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def report(
    session: aiohttp.ClientSession, fake: FakeFathom, token: str | None = None
) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {token or fake.token}", "Accept": "application/json"}
    params = {"entity": "pageview", "entity_id": fake.site_id, "aggregates": "pageviews"}
    async with session.get(f"{fake.url}/aggregations", params=params, headers=headers) as r:
        await r.read()
        return r


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# ------------------------------------------------------------------- unit


async def test_window_slides_exactly() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    for _ in range(10):
        assert limiter.hit(1, "reports").allowed
        clock.now += 1
    refused = limiter.hit(1, "reports")  # at 1010; the first hit (1000) expires at 1060
    assert not refused.allowed
    assert refused.retry_after == 50
    assert refused.headers() == {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "0",
        "Retry-After": "50",
        "X-RateLimit-Reset": "50",
    }
    assert limiter.used(1, "reports") == 10
    clock.now = 1059.5
    assert not limiter.hit(1, "reports").allowed
    assert limiter.hit(1, "reports").retry_after == 1  # never 0
    clock.now = 1060.0
    allowed = limiter.hit(1, "reports")
    assert allowed.allowed
    assert allowed.remaining == 0
    assert limiter.hit(2, "reports").remaining == 9  # another account
    limiter.reset()
    assert limiter.used(1, "reports") == 0


async def test_time_scale_shortens_the_periods() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, time_scale=60, entity_limit=2)
    assert limiter.limits == {"entity": (2, 60.0), "reports": (10, 1.0)}
    limiter.hit(1, "entity")
    limiter.hit(1, "entity")
    assert limiter.hit(1, "entity").retry_after == 60
    clock.now += 60
    assert limiter.hit(1, "entity").allowed
    with pytest.raises(ValueError, match="time_scale"):
        RateLimiter(clock, time_scale=0)


async def test_report_slots() -> None:
    limiter = RateLimiter(Clock(), report_concurrency=2)
    assert limiter.try_start_report(1)
    assert limiter.try_start_report(1)
    assert not limiter.try_start_report(1)
    assert limiter.try_start_report(2)
    limiter.end_report(1)
    assert limiter.in_flight(1) == 1
    assert limiter.try_start_report(1)


# ------------------------------------------------------------- functional


@pytest.mark.looptime
async def test_eleventh_report_in_a_minute_is_429_until_the_window_slides(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeFathom(seed=1, pageviews=200) as fake:
        for n in range(10):
            r = await report(session, fake)
            assert r.status == 200
            assert r.headers["X-RateLimit-Remaining"] == str(9 - n)
            await asyncio.sleep(1)
        refused = await report(session, fake)
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "50"
        assert refused.headers["X-RateLimit-Limit"] == "10"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert refused.headers["X-RateLimit-Reset"] == "50"
        await asyncio.sleep(50)
        assert (await report(session, fake)).status == 200
        assert fake.store.requests[-2].status == 429


@pytest.mark.looptime
async def test_tokens_of_one_account_share_the_limits(session: aiohttp.ClientSession) -> None:
    async with FakeFathom(seed=1, pageviews=200) as fake:
        reader = fake.make_token("all-sites-readonly")
        for n in range(10):
            assert (await report(session, fake, reader if n % 2 else None)).status == 200
        assert (await report(session, fake, reader)).status == 429
        assert fake.limiter.used(fake.account.id, "reports") == 10


@pytest.mark.looptime
async def test_entity_budget_is_per_hour_and_separate_from_reports(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeFathom(seed=1, pageviews=200, entity_limit=3) as fake:
        headers = {"Authorization": f"Bearer {fake.token}", "Accept": "application/json"}
        statuses = []
        for _ in range(4):
            async with session.get(f"{fake.url}/sites", headers=headers) as r:
                statuses.append(r.status)
                retry_after = r.headers.get("Retry-After")
        assert statuses == [200, 200, 200, 429]
        assert retry_after == "3600"
        assert (await report(session, fake)).status == 200
        await asyncio.sleep(3600)
        async with session.get(f"{fake.url}/sites", headers=headers) as r:
            assert r.status == 200


@pytest.mark.looptime
async def test_time_scale_runs_a_minute_in_a_second(session: aiohttp.ClientSession) -> None:
    async with FakeFathom(seed=1, pageviews=200, time_scale=60) as fake:
        for _ in range(10):
            assert (await report(session, fake)).status == 200
        refused = await report(session, fake)
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "1"
        await asyncio.sleep(1)
        assert (await report(session, fake)).status == 200


async def test_limits_can_be_switched_off(session: aiohttp.ClientSession) -> None:
    async with FakeFathom(seed=1, pageviews=200, enforce_rate_limits=False) as fake:
        for _ in range(15):
            r = await report(session, fake)
            assert r.status == 200
            assert "X-RateLimit-Limit" not in r.headers


@pytest.mark.looptime
async def test_concurrent_aggregations_over_the_cap_are_429(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeFathom(seed=1, pageviews=200, report_concurrency=2) as fake:
        fake.inject("GET /aggregations", "latency", seconds=5)
        replies = await asyncio.gather(*(report(session, fake) for _ in range(3)))
        assert sorted(r.status for r in replies) == [200, 200, 429]
        refused = next(r for r in replies if r.status == 429)
        assert refused.headers["Retry-After"] == "1"
        assert fake.limiter.in_flight(fake.account.id) == 0
        # The refused one did not spend the per-minute budget.
        assert fake.limiter.used(fake.account.id, "reports") == 2


@pytest.mark.looptime
async def test_a_refused_report_releases_its_slot(session: aiohttp.ClientSession) -> None:
    async with FakeFathom(seed=1, pageviews=200, report_limit=1) as fake:
        assert (await report(session, fake)).status == 200
        assert (await report(session, fake)).status == 429
        assert fake.limiter.in_flight(fake.account.id) == 0


async def test_injected_clock_drives_the_limits(session: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with FakeFathom(seed=1, pageviews=200, clock=clock, report_limit=1) as fake:
        assert (await report(session, fake)).status == 200
        assert (await report(session, fake)).status == 429
        clock.now += 60
        assert (await report(session, fake)).status == 200
        assert fake.store.requests[-1].time == clock.now
