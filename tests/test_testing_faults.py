"""Fault injection: every kind as a client sees it, route matching, seeding, counts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from fathom_async.testing import FakeFathom, FaultRule, Faults

Statuses = list[int | str]


@pytest.fixture
async def fake() -> AsyncIterator[FakeFathom]:
    async with FakeFathom(seed=11, pageviews=100, enforce_rate_limits=False) as fake:
        yield fake


@pytest.fixture
async def session(fake: FakeFathom) -> AsyncIterator[aiohttp.ClientSession]:
    # A fresh connection per request: aiohttp retries an idempotent request once when a
    # reused connection drops, which would blur the counts.
    headers = {"Authorization": f"Bearer {fake.token}", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        yield session


async def outcome(session: aiohttp.ClientSession, method: str, url: str, **kw: object) -> int | str:
    """The status, or the name of the exception the client raised."""
    try:
        async with session.request(method, url, **kw) as r:
            await r.json()
            return r.status
    except (aiohttp.ClientError, json.JSONDecodeError) as error:
        return type(error).__name__


async def test_error_faults_answer_with_their_status(
    fake: FakeFathom, session: aiohttp.ClientSession
) -> None:
    fake.inject("GET /account", "error_500", times=1)
    fake.inject("GET /account", "error_503", times=1)
    fake.inject("GET /account", "rate_limit", times=1, retry_after=7)
    url = f"{fake.url}/account"
    async with session.get(url) as r:
        assert (r.status, await r.json()) == (500, {"error": "Server Error"})
    async with session.get(url) as r:
        assert r.status == 503
    async with session.get(url) as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "7"
    async with session.get(url) as r:
        assert r.status == 200
    assert fake.faults.counts == {"error_500": 1, "error_503": 1, "rate_limit": 1}
    assert fake.faults.total == 3
    assert [rec.faults for rec in fake.store.requests] == [
        ["error_500"],
        ["error_503"],
        ["rate_limit"],
        [],
    ]


async def test_reset_before_commit_creates_nothing(
    fake: FakeFathom, session: aiohttp.ClientSession
) -> None:
    fake.inject("POST /sites", "reset_before_commit")
    before = len(fake.store.sites)
    got = await outcome(session, "POST", f"{fake.url}/sites", json={"name": "Lost"})
    assert isinstance(got, str)
    assert len(fake.store.sites) == before
    assert fake.store.created == []
    assert fake.store.requests[-1].status is None
    assert fake.faults.counts["reset_before_commit"] == 1


async def test_reset_after_commit_creates_the_object_but_answers_nothing(
    fake: FakeFathom, session: aiohttp.ClientSession
) -> None:
    fake.inject("POST /sites", "reset_after_commit")
    got = await outcome(session, "POST", f"{fake.url}/sites", json={"name": "Committed"})
    assert got in ("ClientOSError", "ServerDisconnectedError")
    assert [s.name for s in fake.store.created] == ["Committed"]
    assert fake.store.requests[-1].status is None
    assert fake.store.requests[-1].faults == ["reset_after_commit"]


async def test_truncated_body(fake: FakeFathom, session: aiohttp.ClientSession) -> None:
    fake.inject("GET /sites", "truncated_body")
    assert await outcome(session, "GET", f"{fake.url}/sites") == "ClientPayloadError"
    assert fake.faults.counts == {"truncated_body": 1}


async def test_non_json_body(fake: FakeFathom, session: aiohttp.ClientSession) -> None:
    fake.inject("POST /sites", "non_json_body")
    async with session.post(f"{fake.url}/sites", json={"name": "Made anyway"}) as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        with pytest.raises(json.JSONDecodeError):
            json.loads(await r.text())
    assert fake.store.created[-1].name == "Made anyway"


async def test_faults_also_strike_error_answers(
    fake: FakeFathom, session: aiohttp.ClientSession
) -> None:
    fake.inject("GET /sites/{site_id}", "truncated_body")
    assert await outcome(session, "GET", f"{fake.url}/sites/NOSUCH") == "ClientPayloadError"


@pytest.mark.looptime
async def test_latency_delays_in_loop_time(
    fake: FakeFathom, session: aiohttp.ClientSession
) -> None:
    fake.inject("GET /sites", "latency", seconds=30)
    fake.inject("GET /sites", "latency", seconds=12)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await outcome(session, "GET", f"{fake.url}/sites") == 200
    assert loop.time() - start == pytest.approx(42, abs=0.5)
    assert fake.faults.counts["latency"] == 2


async def test_routes_match_by_method_template_and_glob(
    fake: FakeFathom, session: aiohttp.ClientSession
) -> None:
    site = fake.site_id
    fake.inject("DELETE /sites/{site_id}", "error_500")
    fake.inject("/v1/sites/*/events", "error_503")
    fake.inject("* /account", "rate_limit")
    assert await outcome(session, "GET", f"{fake.url}/sites/{site}") == 200
    assert await outcome(session, "DELETE", f"{fake.url}/sites/{site}") == 500
    assert await outcome(session, "GET", f"{fake.url}/sites/{site}/events") == 503
    assert await outcome(session, "POST", f"{fake.url}/sites/{site}/events", json={}) == 503
    assert await outcome(session, "GET", f"{fake.url}/account") == 429
    assert await outcome(session, "GET", f"{fake.url}/token") == 200


async def test_probability_is_seeded_and_reproducible() -> None:
    patterns = []
    for _ in range(2):
        async with FakeFathom(seed=5, pageviews=0, demo=False) as fake:
            rule = fake.inject("*", "error_503", probability=0.5)
            headers = {"Authorization": f"Bearer {fake.token}", "Accept": "application/json"}
            async with aiohttp.ClientSession(headers=headers) as session:
                statuses: Statuses = [
                    await outcome(session, "GET", f"{fake.url}/account") for _ in range(30)
                ]
            patterns.append(statuses)
            assert rule.injected == statuses.count(503)
    assert patterns[0] == patterns[1]
    assert 5 < patterns[0].count(503) < 25


async def test_a_storm_stops_after_times(fake: FakeFathom, session: aiohttp.ClientSession) -> None:
    storm = fake.inject("*", "rate_limit", times=3)
    got: Statuses = [await outcome(session, "GET", f"{fake.url}/account") for _ in range(5)]
    assert got == [429, 429, 429, 200, 200]
    assert storm.exhausted
    assert fake.faults.log[0].path == "/account"


async def test_rules_can_be_removed_and_cleared(
    fake: FakeFathom, session: aiohttp.ClientSession
) -> None:
    rule = fake.inject("*", "error_500")
    fake.faults.remove(rule)
    assert await outcome(session, "GET", f"{fake.url}/account") == 200
    fake.inject("*", "error_500")
    fake.faults.clear()
    assert fake.faults.rules == []
    assert await outcome(session, "GET", f"{fake.url}/account") == 200


async def test_one_terminal_fault_per_request() -> None:
    faults = Faults(seed=1)
    faults.inject("*", "error_500")
    faults.inject("*", "error_503")
    faults.inject("*", "latency")
    struck = faults.draw("GET", "/sites", "/sites")
    assert [r.fault for r in struck] == ["error_500", "latency"]


async def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        FaultRule(fault="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probability"):
        FaultRule(fault="latency", probability=1.5)
    rule = FaultRule(fault="latency", route="get /sites")
    assert (rule.method, rule.path) == ("GET", "/sites")
    assert not rule.matches("POST", "/sites", "/sites")
