"""The Redis report cache, against a real redis-server on a loopback port.

The server is started for this module (`tests.redis_server`); when `redis-server` is
not installed the tests fail (install it: `apt-get install redis-server`), they are
never skipped. A black hole (a port that takes connections and never answers) stands
for a Redis that stopped answering. Sockets left open are counted in /proc (the
connector's own tests also check that nothing is left for the garbage collector).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import pytest
import redis.asyncio
from aioresponses import aioresponses

from fathom_async import CacheStats, FathomClient, RedisReportCache, ValidationError
from tests.conftest import TOKEN, calls, url
from tests.redis_server import BlackHole, RedisServer, free_port, open_connections, redis_server

__all__ = ["redis_server"]  # the fixture, for pytest

REPORT: dict[str, Any] = {"entity": "pageview", "site_id": "CDBUGS", "aggregates": ["pageviews"],
          "date_from": date(2020, 1, 1), "date_to": date(2020, 1, 31)}
#: What a timeout may overrun on a loaded machine before we call it a hang.
SLACK = 2.0
#: How long a thread waits for the other before the test fails (never when it works).
PATIENCE = 30.0


@pytest.fixture
async def cache(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> AsyncIterator[RedisReportCache]:
    store = RedisReportCache(redis_server.url, prefix=f"test:{request.node.name}:", ttl=600)
    yield store
    await store.aclose()


async def _query(cache: RedisReportCache) -> Any:
    async with FathomClient(TOKEN, rate_limits=None, strict=True, report_cache=cache) as client:
        return await client.aggregations.query(**REPORT)


async def test_values_round_trip_and_are_counted(
    cache: RedisReportCache, redis_server: RedisServer
) -> None:
    assert await cache.get("k") is None
    await cache.set("k", [{"pageviews": "5"}], ttl=60)
    assert await cache.get("k") == [{"pageviews": "5"}]
    assert cache.stats == CacheStats(hits=1, misses=1, stores=1)
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        ttl_ms = await client.pttl(cache.prefix + "k")
    finally:
        await client.aclose()
    assert 59_000 < ttl_ms <= 60_000  # expiry is the server's job


async def test_max_age_reads_the_stamp(cache: RedisReportCache) -> None:
    now = [1_000.0]
    cache.clock = lambda: now[0]
    await cache.set("k", {"total": 3}, ttl=600)
    now[0] += 30
    assert await cache.get("k", max_age=60) == {"total": 3}
    assert await cache.get("k", max_age=10) is None


async def test_a_client_with_redis_sends_a_closed_report_once(
    api: aioresponses, cache: RedisReportCache, redis_server: RedisServer
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    first = await _query(cache)
    second = await _query(cache)  # another client (or process), in effect
    assert first == second
    assert second[0].raw == {"pageviews": "5"}
    assert len(calls(api)) == 1
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        keys = [key async for key in client.scan_iter(cache.prefix + "*")]
    finally:
        await client.aclose()
    assert len(keys) == 1
    assert b"CDBUGS" not in keys[0]
    assert TOKEN.encode() not in keys[0]


async def test_an_outage_costs_nothing_but_a_request(api: aioresponses) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    down = RedisReportCache(f"redis://127.0.0.1:{free_port()}/0")
    rows = await _query(down)
    assert rows[0].pageviews == 5
    assert down.stats == CacheStats(misses=1, errors=2)
    await down.aclose()


async def test_your_own_client_is_never_closed(redis_server: RedisServer) -> None:
    own = redis.asyncio.Redis.from_url(redis_server.url)
    store = RedisReportCache(client=own, prefix="test:own:")
    await store.set("k", [1], ttl=5)
    await store.aclose()
    assert await own.get("test:own:k") is not None  # still usable
    assert await store.get("k") == [1]
    await own.aclose()
    assert "test:own:" in repr(store)


# -- any event loop ----------------------------------------------------------------------------


def test_a_cache_made_outside_a_loop_serves_successive_asyncio_runs(
    api: aioresponses, redis_server: RedisServer
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    cache = RedisReportCache(redis_server.url, prefix="test:runs:", ttl=600)  # no loop yet
    first = asyncio.run(_query(cache))
    second = asyncio.run(_query(cache))  # a new loop reads what the first one stored
    assert first == second
    assert len(calls(api)) == 1
    assert cache.stats == CacheStats(hits=1, misses=1, stores=1, errors=0)
    asyncio.run(cache.aclose())  # from yet another loop
    assert open_connections(redis_server.port) == 0


def test_threads_each_running_a_loop_share_the_cache_at_once(redis_server: RedisServer) -> None:
    cache = RedisReportCache(redis_server.url, prefix="test:threads:", ttl=600)
    both_stored = threading.Barrier(2, timeout=PATIENCE)

    def run(me: int) -> Any:
        async def main() -> Any:
            await cache.set(f"k{me}", {"by": me}, ttl=60)
            await asyncio.to_thread(both_stored.wait)  # both loops live, each on its client
            return await cache.get(f"k{1 - me}")

        return asyncio.run(main())

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(run, (0, 1))) == [{"by": 1}, {"by": 0}]
    assert cache.stats.errors == 0  # (the counts themselves are not kept across threads)
    asyncio.run(cache.aclose())
    assert open_connections(redis_server.port) == 0


# -- a Redis that stops answering --------------------------------------------------------------


async def test_a_silent_redis_costs_a_cache_error_within_the_socket_timeout(
    api: aioresponses,
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    with BlackHole() as hole:
        silent = RedisReportCache(hole.url, connect_timeout=PATIENCE, socket_timeout=0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        rows = await _query(silent)  # a read and a write, each given up after 0.1 s
        assert loop.time() - started < 2 * 0.1 + SLACK
        assert rows[0].pageviews == 5
        assert len(calls(api)) == 1
        assert silent.stats == CacheStats(misses=1, errors=2)
        await silent.aclose()
        assert open_connections(hole.port) == 0


# -- the interface -----------------------------------------------------------------------------


def test_url_or_client_exactly_one() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        RedisReportCache()
    with pytest.raises(ValidationError, match="exactly one"):
        RedisReportCache("redis://x", client=object())  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="redis://"):
        RedisReportCache(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("http://127.0.0.1/0",), {}, "url"),
        ((), {"client": 42}, "client"),
        (("redis://127.0.0.1/0",), {"connect_timeout": 0}, "connect_timeout"),
        (("redis://127.0.0.1/0",), {"socket_timeout": -1.0}, "socket_timeout"),
    ],
)
def test_bad_arguments_are_rejected_with_their_name(
    args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        RedisReportCache(*args, **kwargs)
    assert caught.value.field == field


def test_a_password_in_the_url_never_shows(redis_server: RedisServer) -> None:
    secret = f"redis://user:s3cret@127.0.0.1:{redis_server.port}/0"
    assert "s3cret" not in repr(RedisReportCache(secret))
    with pytest.raises(ValidationError) as caught:
        RedisReportCache(secret.replace("redis:", "http:"))
    assert "s3cret" not in f"{caught.value} {caught.value.value!r}"


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"fathom-async\[redis\]"):
        RedisReportCache("redis://127.0.0.1:1/0")
