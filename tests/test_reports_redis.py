"""The Redis report cache, against a real redis-server on a loopback port.

The server is started for this module; when `redis-server` is not installed the
tests fail (install it: `apt-get install redis-server`), they are never skipped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from aioresponses import aioresponses

from fathom_async import CacheStats, FathomClient, RedisReportCache, ValidationError
from tests.conftest import TOKEN, calls, url

REPORT: dict[str, Any] = {"entity": "pageview", "site_id": "CDBUGS", "aggregates": ["pageviews"],
          "date_from": date(2020, 1, 1), "date_to": date(2020, 1, 31)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server")
    port = _free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.PIPE, text=True,
    )
    assert server.stdout is not None
    for line in server.stdout:  # blocks until the server says it is ready
        if "Ready to accept connections" in line:
            break
    else:  # pragma: no cover - only when the server dies at start
        pytest.fail("redis-server did not start")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait()
        server.stdout.close()


@pytest.fixture
async def cache(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[RedisReportCache]:
    store = RedisReportCache(redis_url, prefix=f"test:{request.node.name}:", ttl=600)
    yield store
    await store.aclose()


async def test_values_round_trip_and_are_counted(cache: RedisReportCache) -> None:
    assert await cache.get("k") is None
    await cache.set("k", [{"pageviews": "5"}], ttl=60)
    assert await cache.get("k") == [{"pageviews": "5"}]
    assert cache.stats == CacheStats(hits=1, misses=1, stores=1)
    client = redis.asyncio.Redis.from_url(cache._url or "")
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
    api: aioresponses, cache: RedisReportCache
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    async with FathomClient(TOKEN, rate_limits=None, strict=True, report_cache=cache) as one:
        first = await one.aggregations.query(**REPORT)
    async with FathomClient(TOKEN, rate_limits=None, strict=True, report_cache=cache) as two:
        second = await two.aggregations.query(**REPORT)  # another process, in effect
    assert first == second
    assert second[0].raw == {"pageviews": "5"}
    assert len(calls(api)) == 1
    keys = [key async for key in cache._redis().scan_iter(cache.prefix + "*")]
    assert len(keys) == 1
    assert b"CDBUGS" not in keys[0]
    assert TOKEN.encode() not in keys[0]


async def test_an_outage_costs_nothing_but_a_request(api: aioresponses) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "5"}], repeat=True)
    down = RedisReportCache(f"redis://127.0.0.1:{_free_port()}/0")
    async with FathomClient(TOKEN, rate_limits=None, report_cache=down) as client:
        rows = await client.aggregations.query(**REPORT)
    assert rows[0].pageviews == 5
    assert down.stats == CacheStats(misses=1, errors=2)
    await down.aclose()


async def test_your_own_client_is_never_closed(redis_url: str) -> None:
    own = redis.asyncio.Redis.from_url(redis_url)
    store = RedisReportCache(client=own, prefix="test:own:")
    await store.set("k", [1], ttl=5)
    await store.aclose()
    assert await own.get("test:own:k") is not None  # still usable
    assert await store.get("k") == [1]
    await own.aclose()
    assert "test:own:" in repr(store)


def test_url_or_client_exactly_one() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        RedisReportCache()
    with pytest.raises(ValidationError, match="exactly one"):
        RedisReportCache("redis://x", client=object())
    with pytest.raises(ValidationError, match="redis://"):
        RedisReportCache(5)  # type: ignore[arg-type]


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"fathom-async\[redis\]"):
        RedisReportCache("redis://127.0.0.1:1/0")
