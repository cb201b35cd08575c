"""Functional: the client against the emulator with faults on, every fault by every call.

Each cell of the matrix injects one fault (seeded) into every route and runs one kind
of call: reads must complete (or fail typed), paginated walks must give every site
exactly once, and creates must never be duplicated: after a failure there is exactly
one object, or the error says the outcome is unknown and how to check. Retries sleep
through an injected no-op, so no test waits on the wall clock beyond a few client
timeouts of 50 ms. Then the scheduler's window guarantee under faults (in loop time)
and a soak of thousands of calls from hundreds of tasks.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import random
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fathom_async import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    Deleted,
    FathomClient,
    FathomError,
    NotFoundError,
    RateLimitError,
    RateLimits,
    ServerError,
)
from fathom_async.testing import FakeFathom
from tests.hostile_support import (
    assert_scheduler_idle,
    json_answer,
    loopback,
    no_sleep,
)

EXTRA_SITES = 9  # 12 sites in all: three pages of four
PAGE = 4

# fault name -> FakeFathom.inject keyword arguments (all routes, seeded by the fake)
FAULTS: dict[str, dict[str, Any]] = {
    "error_500": {"fault": "error_500", "probability": 0.3},
    "error_503": {"fault": "error_503", "probability": 0.2},
    "reset_before_commit": {"fault": "reset_before_commit", "probability": 0.3},
    "reset_after_commit": {"fault": "reset_after_commit", "probability": 0.3},
    "truncated_body": {"fault": "truncated_body", "probability": 0.3},
    "html_body_as_json": {"fault": "non_json_body", "probability": 0.3},
    "rate_limit_retry_after": {"fault": "rate_limit", "probability": 0.3, "retry_after": 1},
    "rate_limit_storm": {"fault": "rate_limit", "times": 12, "retry_after": 2},
    "timeout": {"fault": "latency", "times": 2, "seconds": 0.2},
    "slow": {"fault": "latency", "probability": 0.5, "seconds": 0.01},
}
CLIENT_TIMEOUT = 0.05  # only the "timeout" cell waits for it


@pytest.fixture
async def fake() -> AsyncIterator[FakeFathom]:
    async with FakeFathom(seed=11, pageviews=2_000, enforce_rate_limits=False) as server:
        for index in range(EXTRA_SITES):
            server.store.add_site(f"Extra {index}")
        yield server


def client_for(fake: FakeFathom, fault: str, **kwargs: Any) -> FathomClient:
    kwargs.setdefault("rate_limits", None)
    kwargs.setdefault("max_retries", 20)  # seeded faults at 30% cannot exhaust it
    fathom = FathomClient(
        fake.token,
        base_url=fake.url,
        timeout=CLIENT_TIMEOUT if fault == "timeout" else 10.0,
        strict=True,
        **kwargs,
    )
    fathom._shared.sleep = no_sleep
    return fathom


# -- the operations ------------------------------------------------------------------

Operation = Callable[[FathomClient, FakeFathom], Awaitable[Any]]


async def list_walk(fathom: FathomClient, fake: FakeFathom) -> list[str]:
    return [site.id async for site in fathom.sites.list(limit=PAGE)]


async def get_site(fathom: FathomClient, fake: FakeFathom) -> tuple[str, str]:
    site = await fathom.sites.get(fake.site_id)
    return site.id, site.name


async def aggregation(fathom: FathomClient, fake: FakeFathom) -> list[dict[str, Any]]:
    rows = await fathom.aggregations.query(
        entity="pageview", site_id=fake.site_id, aggregates=["pageviews", "visits"],
        field_grouping="pathname", sort_by="pageviews:desc", limit=20, cache=False,
    )
    return [row.to_dict() for row in rows]


async def current_visitors(fathom: FathomClient, fake: FakeFathom) -> int:
    now = await fathom.current_visitors.get(fake.site_id, detailed=True)
    assert all(page.total >= 0 for page in now.content)
    return now.total


READS: dict[str, Operation] = {
    "list_walk": list_walk,
    "get": get_site,
    "aggregation": aggregation,
    "current_visitors": current_visitors,
}


@pytest.mark.parametrize("operation", sorted(READS))
@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_reads_complete_through_every_fault(
    fake: FakeFathom, fault: str, operation: str
) -> None:
    run = READS[operation]
    async with client_for(fake, "none") as clean:
        expected = await run(clean, fake)
    before = len(fake.store.requests)
    fake.inject("*", **FAULTS[fault])
    kind = FAULTS[fault]["fault"]
    async with client_for(fake, fault) as fathom:
        for runs in itertools.count(1):  # until the fault struck twice (seeded: bounded)
            got = await run(fathom, fake)
            if operation != "current_visitors":  # live numbers may move
                assert got == expected
            if (runs >= 3 and fake.faults.counts[kind] >= 2) or runs == 30:
                break
    if operation == "list_walk":
        walked = expected
        assert len(walked) == len(set(walked)), "an item was repeated"
        assert sorted(walked) == sorted(fake.store.sites), "an item was skipped"
    assert fake.faults.counts[kind] >= 2, "the fault never struck"
    assert len(fake.store.requests) > before


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_creates_are_never_duplicated_whatever_the_fault(
    fake: FakeFathom, fault: str
) -> None:
    fake.inject("POST *", **FAULTS[fault])
    outcomes: list[str] = []
    async with client_for(fake, fault) as fathom:
        for index in range(8):
            name = f"{fault} #{index}"
            try:
                site = await fathom.sites.create(name)
            except FathomError as error:
                failed: FathomError | None = error
            else:
                failed = None
                assert [s.name for s in fake.store.sites.values()].count(name) == 1
                assert site.name == name
            outcomes.append(check_create_outcome(fake, name, failed))
    posts = [r for r in fake.store.requests if r.method == "POST"]
    if fault.startswith("rate_limit") or fault == "slow":
        assert outcomes == ["created"] * 8  # a 429 or a slow answer is safe to wait out
    else:
        # Never replayed once it may have landed: one POST per create, at most.
        assert len(posts) == 8


def check_create_outcome(fake: FakeFathom, name: str, error: FathomError | None) -> str:
    """Exactly one object, or nothing and an error that says whether it may exist."""
    existing = [s for s in fake.store.sites.values() if s.name == name]
    assert len(existing) <= 1, f"{name} was created twice"
    if error is None:
        return "created"
    assert isinstance(error, (APIConnectionError, APIResponseError, ServerError,
                              RateLimitError)), repr(error)
    if isinstance(error, APIStatusError) and error.status_code < 500:
        assert existing == []  # refused (429): surely not created
    elif len(existing) != 1:
        # Ambiguous: the error must say so, and how to check.
        assert getattr(error, "outcome_unknown", True)
        assert "may or may not exist" in str(error)
        assert "List the objects" in str(error)
    return type(error).__name__


async def test_html_error_pages_become_typed_status_errors(fake: FakeFathom) -> None:
    async with client_for(fake, "none", max_retries=0) as fathom:
        fathom._shared.headers = _without_accept(fathom._shared.headers)  # type: ignore[method-assign,assignment]
        with pytest.raises(FathomError) as info:
            await fathom.sites.get("NOSUCH")
    assert getattr(info.value, "status_code", None) == 404
    assert "<html" not in str(info.value).lower()


def _without_accept(
    headers: Callable[[Any], dict[str, str]]
) -> Callable[[Any], dict[str, str]]:
    def build(request: Any) -> dict[str, str]:
        sent = headers(request)
        sent.pop("Accept", None)
        return sent

    return build


@pytest.mark.looptime  # each 429 pauses the bucket for one slot interval: fake time
async def test_a_429_without_retry_after_backs_off_and_succeeds() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with loopback() as server:
        limits = RateLimits()
        server.script = [json_answer({"error": "slow down"}, status=429)] * 3
        async with FathomClient("t0ken", base_url=server.url, rate_limits=limits) as fathom:
            fathom._shared.sleep = record
            assert (await fathom.account.get()).name == "Loopback"
            assert_scheduler_idle(limits)
    assert len(server.seen) == 4
    assert len(waits) == 3
    assert all(0 <= wait <= 8 for wait in waits)


async def test_a_429_storm_longer_than_max_retry_wait_is_raised_at_once(
    fake: FakeFathom,
) -> None:
    fake.inject("*", "rate_limit", retry_after=3600)
    async with client_for(fake, "none") as fathom:
        with pytest.raises(RateLimitError) as info:
            await fathom.account.get()
    assert info.value.retry_after == 3600
    assert len(fake.store.requests) == 1


# -- the scheduler's guarantee under faults -------------------------------------------


def max_in_window(times: list[float], period: float) -> int:
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= period - 1e-6:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.looptime
async def test_the_window_guarantee_holds_with_faults_on() -> None:
    async with FakeFathom(seed=4, pageviews=1_000, enforce_rate_limits=False) as fake:
        fake.inject("*", "error_503", probability=0.2)
        fake.inject("*", "reset_before_commit", probability=0.1)
        fake.inject("*", "rate_limit", probability=0.05, retry_after=2)
        limits = RateLimits(entity=(20, 10.0), reports=(5, 10.0))
        async with FathomClient(fake.token, base_url=fake.url, rate_limits=limits,
                                max_retries=20) as fathom:
            fathom._shared.sleep = no_sleep
            sites = [fathom.sites.get(fake.site_id) for _ in range(60)]
            reports = [
                fathom.aggregations.query(entity="pageview", site_id=fake.site_id,
                                          aggregates="pageviews", limit=n, cache=False)
                for n in range(1, 16)
            ]
            results = await asyncio.gather(*sites, *reports, return_exceptions=True)
            assert all(not isinstance(r, BaseException) for r in results), results
            assert_scheduler_idle(limits)
        entity = [r.time for r in fake.store.requests if r.route != "/aggregations"]
        report = [r.time for r in fake.store.requests if r.route == "/aggregations"]
    assert len(entity) > 60
    assert len(report) > 15
    assert max_in_window(entity, 10.0) <= 20
    assert max_in_window(report, 10.0) <= 5


# -- the soak ---------------------------------------------------------------------------

TASKS = 200
CALLS_PER_TASK = 10  # two halves of 5: 2000 calls in all


async def _one_call(fathom: FathomClient, fake: FakeFathom, rng: random.Random,
                    counter: itertools.count[int]) -> str:
    kind = rng.choice(["get", "page", "account", "report", "current", "events", "create"])
    try:
        if kind == "get":
            await fathom.sites.get(rng.choice(list(fake.store.sites)))
        elif kind == "page":
            await fathom.sites.list(limit=PAGE)
        elif kind == "account":
            await fathom.account.get()
        elif kind == "report":
            await fathom.aggregations.query(entity="pageview", site_id=fake.site_id,
                                            aggregates="visits", limit=rng.randint(1, 50))
        elif kind == "current":
            await fathom.current_visitors.get(fake.site_id)
        elif kind == "events":
            await fathom.events.list(fake.site_id, limit=5)
        else:
            await fathom.events.create(fake.site_id, f"Soak {next(counter)}")
    except FathomError as error:
        return type(error).__name__
    return "ok"


@pytest.mark.timeout(60)
async def test_soak_thousands_of_calls_from_hundreds_of_tasks() -> None:
    started = time.perf_counter()
    before_tasks = asyncio.all_tasks()
    counter = itertools.count()
    outcomes: list[str] = []
    tracemalloc.start()
    try:
        async with FakeFathom(seed=21, pageviews=1_000, enforce_rate_limits=False) as fake:
            for fault, probability in (("error_503", 0.05), ("reset_before_commit", 0.03),
                                       ("reset_after_commit", 0.02), ("truncated_body", 0.02),
                                       ("non_json_body", 0.02), ("rate_limit", 0.03)):
                fake.inject("*", fault, probability=probability)  # type: ignore[arg-type]
            fathom = FathomClient(fake.token, base_url=fake.url, rate_limits=None,
                                  max_retries=6, timeout=10.0)
            fathom._shared.sleep = no_sleep
            session = fathom._shared.get_session()

            async def worker(seed: int) -> None:
                rng = random.Random(seed)
                for _ in range(CALLS_PER_TASK // 2):
                    outcomes.append(await _one_call(fathom, fake, rng, counter))

            async def half(offset: int) -> None:
                await asyncio.wait_for(
                    asyncio.gather(*(worker(offset + n) for n in range(TASKS))), 30
                )
                fake.store.requests.clear()  # the emulator's own log, not the client's
                fake.faults.log.clear()

            await half(0)  # warms caches: converters, connections, code paths
            gc.collect()
            first = tracemalloc.get_traced_memory()[0]
            await half(TASKS)
            gc.collect()
            second = tracemalloc.get_traced_memory()[0]
            await fathom.close()
            assert session.closed
            assert fathom._shared.session is None
    finally:
        tracemalloc.stop()
    assert fake.faults.total > 100  # the faults did strike
    leaked = asyncio.all_tasks() - before_tasks
    assert not leaked, leaked
    assert len(outcomes) == TASKS * CALLS_PER_TASK
    allowed = {"ok", "APIConnectionError", "APITimeoutError", "APIResponseError",
               "ServerError", "RateLimitError"}
    assert set(outcomes) <= allowed, set(outcomes) - allowed
    assert outcomes.count("ok") > 0.9 * len(outcomes)
    print(f"memory growth over the second half: {second - first} bytes")
    assert second - first < 1_500_000, f"memory grew by {second - first} bytes"
    assert time.perf_counter() - started < 45


# -- deletes whose answer was lost ------------------------------------------------------


async def _delete_site(fathom: FathomClient, fake: FakeFathom) -> tuple[Deleted, bool]:
    site = fake.store.add_site("Doomed")
    deleted = await fathom.sites.delete(site.id)
    assert deleted.id == site.id
    return deleted, site.id not in fake.store.sites


async def _delete_event(fathom: FathomClient, fake: FakeFathom) -> tuple[Deleted, bool]:
    event = fake.store.add_event(fake.site_id, "Doomed")
    deleted = await fathom.events.delete(fake.site_id, event.id)
    assert deleted.id == event.id
    return deleted, event.id not in fake.store.events


async def _delete_milestone(fathom: FathomClient, fake: FakeFathom) -> tuple[Deleted, bool]:
    milestone = fake.store.add_milestone(fake.site_id, "Doomed", "2024-03-01")
    deleted = await fathom.milestones.delete(fake.site_id, milestone.id)
    assert deleted.id == milestone.id
    return deleted, milestone.id not in fake.store.milestones


async def _delete_by_name(fathom: FathomClient, fake: FakeFathom) -> tuple[Deleted, bool]:
    for _ in range(2):
        fake.store.add_event(fake.site_id, "Doomed")
    deleted = await fathom.events.delete_by_name(fake.site_id, "Doomed")
    assert deleted.name == "Doomed"
    return deleted, all(e.name != "Doomed" for e in fake.store.events.values())


DELETES: dict[str, Callable[[FathomClient, FakeFathom], Awaitable[tuple[Deleted, bool]]]] = {
    "site": _delete_site,
    "event": _delete_event,
    "milestone": _delete_milestone,
    "events by name": _delete_by_name,
}


@pytest.mark.parametrize("kind", sorted(DELETES))
async def test_a_delete_whose_answer_was_lost_succeeds_when_the_retry_finds_it_gone(
    fake: FakeFathom, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject("DELETE *", "reset_after_commit", times=1)
    async with client_for(fake, "none") as fathom:
        with caplog.at_level(logging.DEBUG, logger="fathom_async"):
            deleted, gone = await DELETES[kind](fathom, fake)
    assert deleted.deleted is True
    assert gone
    # The first DELETE took effect and lost its answer; the retry found nothing left.
    deletes = [r.status for r in fake.store.requests if r.method == "DELETE"]
    assert deletes == [None, 404]
    assert any("found it gone" in record.getMessage() for record in caplog.records
               if record.levelno == logging.DEBUG)


@pytest.mark.parametrize("kind", sorted(DELETES))
async def test_a_delete_answered_in_full_is_unchanged(fake: FakeFathom, kind: str) -> None:
    async with client_for(fake, "none") as fathom:
        deleted, gone = await DELETES[kind](fathom, fake)
    assert deleted.deleted is True
    assert deleted.object in ("site", "event", "milestone")  # the server's own answer
    assert gone


async def test_a_first_attempt_404_on_a_delete_still_raises(fake: FakeFathom) -> None:
    async with client_for(fake, "none") as fathom:
        with pytest.raises(NotFoundError):
            await fathom.sites.delete("NOSUCH")
        with pytest.raises(NotFoundError):
            await fathom.events.delete_by_name(fake.site_id, "No such event")
    assert [r.status for r in fake.store.requests] == [404, 404]


async def test_a_404_after_an_attempt_that_surely_did_nothing_still_raises(
    fake: FakeFathom,
) -> None:
    # A 429 says the first attempt was refused, so the retry's 404 means the site was
    # never there: that is the caller's to know. (A reset is no such proof: the client
    # cannot tell whether the server acted before the connection dropped.)
    fake.inject("DELETE *", "rate_limit", times=1)
    async with client_for(fake, "none") as fathom:
        with pytest.raises(NotFoundError):
            await fathom.sites.delete("NOSUCH")
    assert [r.status for r in fake.store.requests] == [429, 404]
