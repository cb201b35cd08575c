"""The Redis backend, against a real redis-server: the script's decisions, the local
queues, server feedback, failure and fallback, in one process.

Each test uses its own key. Waits are real but short (periods of 0.1-0.4 s), since
Redis's clock is what decides; the multi-process and restart tests are in
`test_redis_functional.py`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio

import fathom_async
from fathom_async import AcquireTimeoutError, FathomError, ValidationError
from fathom_async import _redis as redis_module
from fathom_async._redis import RateLimiterUnavailableError, RedisRateLimits
from fathom_async._scheduler import Permit
from fathom_async.limits import ServerFeedback
from tests.redis_server import RedisServer, free_port, redis_server

__all__ = ["redis_server"]  # the fixture, for pytest

Make = Callable[..., RedisRateLimits]


@pytest.fixture
async def make(redis_server: RedisServer) -> AsyncIterator[Make]:
    """Build RedisRateLimits on a fresh key (shared by every instance of one test)."""
    key = uuid.uuid4().hex
    made: list[RedisRateLimits] = []

    def build(**kwargs: Any) -> RedisRateLimits:
        kwargs.setdefault("key", key)
        kwargs.setdefault("max_in_flight", {"entity": None, "reports": None})
        limits = RedisRateLimits(kwargs.pop("url", redis_server.url), **kwargs)
        made.append(limits)
        return limits

    yield build
    for limits in made:
        await limits.aclose()


async def take(limits: RedisRateLimits, count: int, **kwargs: Any) -> list[float]:
    """Acquire `count` permits at once; their Redis grant times, in arrival order."""
    permits = await asyncio.gather(*(limits.acquire("entity", **kwargs) for _ in range(count)))
    for permit in permits:
        permit.release()
    return [p.granted_at for p in permits]


async def raw_client(server: RedisServer) -> redis.asyncio.Redis:
    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(server.url)
    return client


# -- the script's decisions ------------------------------------------------------------


async def test_a_burst_of_limit_goes_at_once_in_one_round_trip(make: Make) -> None:
    limits = make(entity=(5, 0.3))
    times = await take(limits, 5)
    assert len(set(times)) == 1
    # NOSCRIPT on first use: evalsha, load, evalsha; then nothing more.
    assert limits.stats() == {"round_trips": 3, "grants": 5, "local_grants": 0, "reseeds": 0}


async def test_the_next_grant_goes_exactly_when_the_oldest_is_a_period_old(make: Make) -> None:
    limits = make(entity=(3, 0.2))
    first = await take(limits, 3)
    more = await take(limits, 4)
    assert all(t >= first[0] + 0.2 - 1e-6 for t in more[:3])
    assert more[3] >= more[0] + 0.2 - 1e-6
    lane = limits._lanes["entity"]
    assert lane.reply is not None
    # The turn was exact: granted within a few ms of the slot, in Redis time.
    assert more[0] - (first[0] + 0.2) < 0.05
    # Every wait cost at most: one call that got a turn, one that confirmed it.
    stats = limits.stats()
    assert stats["grants"] == 7
    assert stats["round_trips"] <= 3 + 1 + 2 * 2


async def test_a_newcomer_queues_behind_a_promised_turn(make: Make) -> None:
    a, b = make(entity=(1, 0.2)), make(entity=(1, 0.2))
    (first,) = await take(a, 1)
    task_a = asyncio.create_task(a.acquire("entity"))
    await asyncio.sleep(0.02)  # a holds the turn at first + 0.2
    assert a._queue("entity").ticket is not None
    permit_b = await b.acquire("entity")
    permit_a = await task_a
    assert first + 0.2 - 1e-6 <= permit_a.granted_at < permit_b.granted_at
    assert permit_b.granted_at >= permit_a.granted_at + 0.2 - 1e-6
    permit_a.release()
    permit_b.release()


async def test_a_turn_nobody_confirms_expires(
    make: Make, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "_TURN_GRACE", 0.05)
    a, b = make(entity=(1, 0.1)), make(entity=(1, 0.1))
    queue = a._queue("entity")
    reply = await a._take(queue, "II")
    assert reply.granted == 1
    assert queue.ticket is not None
    # a vanishes without confirming; b's turn is behind a's promise...
    reply_b = await b._take(b._queue("entity"), "I")
    assert reply_b.turn >= reply.turn + 100_000
    await asyncio.sleep(0.2)
    # ... until a's turn expired: then b goes at once.
    reply_b2 = await b._take(b._queue("entity"), "I")
    assert reply_b2.granted == 1


async def test_a_waiter_that_left_gives_its_slot_back(make: Make) -> None:
    limits = make(entity=(1, 5.0))
    queue = limits._queue("entity")
    reply = await limits._take(queue, "I")
    limits._serve(queue, reply, [], queue.seq)  # nobody waits: a refund
    assert queue.refunds == [reply.now]
    permit = await limits.acquire("entity", timeout=1)  # the refund went first
    assert queue.refunds == []
    permit.release()


async def test_a_refunded_grant_recorded_ahead_leaves_the_older_grants_counted(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "_EARLY", 7200.0)  # every turn is confirmed early
    limits = make(entity=(2, 3600.0))
    queue = limits._queue("entity")
    first = await limits._take(queue, "II")
    assert first.granted == 2
    ahead = await limits._take(queue, "I")  # recorded at its slot, an hour from now
    assert ahead.granted_at == [first.now + 3600 * 10**6]
    queue.refunds.append(ahead.granted_at[0])  # its waiter left before the slot came
    monkeypatch.setattr(redis_module, "_EARLY", 0.0)
    after = await limits._take(queue, "I")
    assert after.granted == 0  # both first grants still fill the window
    assert after.turn == first.now + 3600 * 10**6


async def test_a_task_cancelled_while_its_early_grant_was_handed_over_breaks_no_window(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "_EARLY", 7200.0)
    limits = make(entity=(2, 3600.0))
    await take(limits, 2)
    real_serve = limits._serve
    served = asyncio.Event()

    def serve(*args: Any) -> None:
        real_serve(*args)
        served.set()

    limits._serve = serve  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(limits.acquire("entity"))  # granted the slot in an hour
    await asyncio.wait_for(served.wait(), 10)
    limits._serve = real_serve  # type: ignore[method-assign]
    await cancelled(task)  # before its hour: the grant is given back
    monkeypatch.setattr(redis_module, "_EARLY", 0.0)
    with pytest.raises(AcquireTimeoutError):  # still two grants in this window
        await limits.acquire("entity", timeout=0)


async def test_a_cancelled_task_that_was_granted_gives_the_slot_back(make: Make) -> None:
    limits = make(entity=(1, 5.0))
    real_serve = limits._serve

    def serve(*args: Any) -> None:
        real_serve(*args)
        task.cancel()  # granted, but cancelled before it ran again

    limits._serve = serve  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(limits.acquire("entity"))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limits.snapshot()["entity"].in_flight == 0
    limits._serve = real_serve  # type: ignore[method-assign]
    permit = await limits.acquire("entity", timeout=1)
    assert permit.granted_at > 0
    permit.release()


async def test_a_lost_state_is_reseeded_from_each_process_history(
    make: Make, redis_server: RedisServer
) -> None:
    a = make(entity=(3, 0.4))
    first = await take(a, 3)
    client = await raw_client(redis_server)
    try:
        await client.flushall()  # as a restart without persistence
    finally:
        await client.aclose()
    later = await take(a, 1)
    # a re-seeded its three grants, so the fourth still waits for the window.
    assert later[0] >= first[0] + 0.4 - 1e-6
    assert a.stats()["reseeds"] == 1


async def test_a_flushed_script_cache_is_loaded_again(
    make: Make, redis_server: RedisServer
) -> None:
    limits = make(entity=(10, 1.0))
    await take(limits, 1)
    before = limits.stats()["round_trips"]
    client = await raw_client(redis_server)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    await take(limits, 1)
    assert limits.stats()["round_trips"] == before + 3  # NOSCRIPT, load, run


# -- turns: interactive calls first, no stale turns ---------------------------------------


def turns_key(limits: RedisRateLimits, bucket: str = "entity") -> str:
    return limits._lanes[bucket].keys[1]  # type: ignore[index]


async def turns_in_redis(server: RedisServer, limits: RedisRateLimits) -> int:
    client = await raw_client(server)
    try:
        return int(await client.zcard(turns_key(limits)))
    finally:
        await client.aclose()


async def waiting_with_a_turn(limits: RedisRateLimits, **kwargs: Any) -> asyncio.Task[Permit]:
    """An `acquire` of the entity bucket, once Redis has promised its process a turn."""
    promised = asyncio.Event()
    real_take = limits._take

    async def take(queue: Any, classes: str, most: int | None = None) -> Any:
        reply = await real_take(queue, classes, most)
        if queue.ticket is not None:
            promised.set()
        return reply

    limits._take = take  # type: ignore[method-assign]
    try:
        task = asyncio.create_task(limits.acquire("entity", **kwargs))
        await asyncio.wait_for(promised.wait(), 10)
    finally:
        limits._take = real_take  # type: ignore[method-assign]
    return task


async def driver_done(limits: RedisRateLimits) -> None:
    """Until this process's driver has nothing left to tell Redis (10 s at most)."""
    driver = limits._queue("entity").driver
    if driver is not None:
        await asyncio.wait_for(asyncio.shield(driver), 10)


async def cancelled(*tasks: asyncio.Task[Permit]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_bulk_turns_of_other_processes_leave_the_reserve_to_an_interactive_call(
    make: Make,
) -> None:
    a, b, c = (make(entity=(10, 3600.0), reserve={"entity": 2}) for _ in range(3))
    await take(a, 8, priority="bulk")  # bulk's share of the window is spent
    bulk_a = await waiting_with_a_turn(a, priority="bulk")
    bulk_b = await waiting_with_a_turn(b, priority="bulk")
    # Two processes wait with bulk turns; the reserve is still free for interactive work.
    first = await c.acquire("entity", timeout=0)
    second = await c.acquire("entity", timeout=0)
    with pytest.raises(AcquireTimeoutError):  # the window is full now
        await c.acquire("entity", timeout=0)
    assert not bulk_a.done()
    assert not bulk_b.done()
    first.release()
    second.release()
    await cancelled(bulk_a, bulk_b)


async def test_an_interactive_call_that_came_while_its_process_asked_for_bulk_uses_the_reserve(
    make: Make,
) -> None:
    limits = make(entity=(10, 3600.0), reserve={"entity": 2})
    await take(limits, 8, priority="bulk")
    real_take = limits._take
    came: asyncio.Future[asyncio.Task[Permit]] = asyncio.get_running_loop().create_future()

    async def take_while_one_comes(queue: Any, classes: str, most: int | None = None) -> Any:
        reply = await real_take(queue, classes, most)
        if not came.done():  # it queues while the answer is on its way
            came.set_result(asyncio.create_task(limits.acquire("entity")))
            await asyncio.sleep(0)
        return reply

    limits._take = take_while_one_comes  # type: ignore[method-assign]
    bulk = asyncio.create_task(limits.acquire("entity", priority="bulk"))
    permit = await asyncio.wait_for(await came, 10)  # from the reserve, not in an hour
    permit.release()
    assert not bulk.done()
    await cancelled(bulk)


async def test_an_interactive_turn_goes_before_a_bulk_turn_promised_earlier(make: Make) -> None:
    a, c = make(entity=(1, 3600.0)), make(entity=(1, 3600.0))
    (first,) = await take(a, 1)
    hour = round((first + 3600.0) * 1e6)
    queue_a = a._queue("entity")
    bulk = await a._take(queue_a, "B")
    assert (bulk.turn, bulk.turn_class) == (hour, "B")
    interactive = await c._take(c._queue("entity"), "I")  # later, yet first in line
    assert (interactive.turn, interactive.turn_class) == (hour, "I")
    confirmed = await a._take(queue_a, "B")  # the bulk turn's holder goes after it
    assert confirmed.granted == 0
    assert confirmed.turn == hour + 3600 * 10**6


async def test_bulk_work_that_waited_bulk_max_wait_keeps_its_place_across_processes(
    make: Make,
) -> None:
    a = make(entity=(1, 3600.0), bulk_max_wait=0)
    c = make(entity=(1, 3600.0))
    (first,) = await take(c, 1)
    bulk = await waiting_with_a_turn(a, priority="bulk")
    assert a._queue("entity").turn_for == "A"  # aged: in the interactive line
    reply = await c._take(c._queue("entity"), "I")  # later: behind the aged bulk turn
    assert reply.turn == round((first + 7200.0) * 1e6)
    await cancelled(bulk)


async def test_aged_bulk_work_stays_within_the_bulk_share(make: Make) -> None:
    limits = make(entity=(2, 3600.0), reserve={"entity": 1})
    queue = limits._queue("entity")
    assert (await limits._take(queue, "B")).granted == 1
    assert (await limits._take(queue, "A")).granted == 0  # the reserve is not bulk's
    assert (await limits._take(queue, "I")).granted == 1


async def test_a_turn_of_an_older_script_counts_as_interactive(
    make: Make, redis_server: RedisServer
) -> None:
    a = make(entity=(1, 3600.0))
    (first,) = await take(a, 1)
    hour = round((first + 3600.0) * 1e6)
    client = await raw_client(redis_server)
    try:
        await client.zadd(turns_key(a), {"0123abcd:1": hour})  # no class: an older version's
    finally:
        await client.aclose()
    reply = await a._take(a._queue("entity"), "I")
    assert reply.turn == hour + 3600 * 10**6


async def test_a_cancelled_waiter_gives_its_turn_up_at_once(
    make: Make, redis_server: RedisServer
) -> None:
    a, c = make(entity=(1, 3600.0)), make(entity=(1, 3600.0))
    (first,) = await take(a, 1)
    waiting = await waiting_with_a_turn(a)
    await cancelled(waiting)
    await driver_done(a)  # not at the turn, an hour from now
    assert await turns_in_redis(redis_server, a) == 0
    reply = await c._take(c._queue("entity"), "I")  # next in line: the slot in an hour
    assert reply.turn == round((first + 3600.0) * 1e6)


async def test_a_waiter_that_timed_out_gives_its_turn_up_at_once(
    make: Make, redis_server: RedisServer
) -> None:
    a = make(entity=(1, 3600.0))
    await take(a, 1)
    waiting = await waiting_with_a_turn(a, timeout=7200)  # in time for the slot: it waits
    queue = a._queue("entity")
    queue._time_out(next(iter(queue.queues["interactive"])))  # as its timer would, at 7200 s
    with pytest.raises(AcquireTimeoutError):
        await waiting
    await driver_done(a)
    assert await turns_in_redis(redis_server, a) == 0


async def test_an_interactive_turn_left_to_bulk_work_becomes_a_bulk_turn(
    make: Make, redis_server: RedisServer
) -> None:
    a, c = make(entity=(1, 3600.0)), make(entity=(1, 3600.0))
    (first,) = await take(a, 1)
    bulk = await waiting_with_a_turn(a, priority="bulk")
    interactive = await waiting_with_a_turn(a)
    queue = a._queue("entity")
    assert queue.turn_for == "I"
    traded = asyncio.Event()
    real_take = a._take

    async def take_and_tell(queue: Any, classes: str, most: int | None = None) -> Any:
        reply = await real_take(queue, classes, most)
        traded.set()
        return reply

    a._take = take_and_tell  # type: ignore[method-assign]
    await cancelled(interactive)
    await asyncio.wait_for(traded.wait(), 10)  # at once, not at the turn an hour away
    assert queue.turn_for == "B"
    assert await turns_in_redis(redis_server, a) == 1
    reply = await c._take(c._queue("entity"), "I")  # not behind a's bulk turn
    assert reply.turn == round((first + 3600.0) * 1e6)
    assert not bulk.done()
    await cancelled(bulk)


async def test_a_closed_limiter_leaves_no_turn_behind(
    make: Make, redis_server: RedisServer
) -> None:
    a, b = make(entity=(1, 3600.0)), make(entity=(1, 3600.0))
    await take(a, 1)
    waiting = [await waiting_with_a_turn(a), await waiting_with_a_turn(b, priority="bulk")]
    assert await turns_in_redis(redis_server, a) == 2
    await a.aclose()
    assert await turns_in_redis(redis_server, a) == 1  # b's turn is b's
    await b.aclose()
    assert await turns_in_redis(redis_server, a) == 0
    for task in waiting:
        with pytest.raises(RateLimiterUnavailableError):
            await task


async def test_a_limiter_closed_while_its_call_made_a_turn_leaves_no_turn_behind(
    make: Make, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make(entity=(1, 3600.0))
    await take(a, 1)
    real_evalsha = redis_module._evalsha
    ran = asyncio.Event()

    async def run_and_lose_the_reply(client: Any, sha: str, keys: Any, argv: Any) -> Any:
        raw = await real_evalsha(client, sha, keys, argv)
        if argv[0] == "take":
            ran.set()
            await asyncio.Event().wait()  # the reply is still on its way when we close
        return raw

    monkeypatch.setattr(redis_module, "_evalsha", run_and_lose_the_reply)
    waiting = asyncio.create_task(a.acquire("entity"))
    await asyncio.wait_for(ran.wait(), 10)
    assert await turns_in_redis(redis_server, a) == 1
    await a.aclose()
    assert await turns_in_redis(redis_server, a) == 0
    with pytest.raises(RateLimiterUnavailableError):
        await waiting


def test_a_forked_process_names_its_turns_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = RedisRateLimits("redis://127.0.0.1:1/0", key="k")
    parent = limits._ident()
    assert limits._ident() == parent
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a child after fork()
    child = limits._ident()
    assert child != parent
    assert limits._ident() == child


# -- deadlines --------------------------------------------------------------------------------


async def test_a_first_wait_that_cannot_make_its_deadline_fails_at_once(
    make: Make, redis_server: RedisServer
) -> None:
    a, fresh = make(entity=(2, 3600.0)), make(entity=(2, 3600.0))
    await take(a, 2)
    with pytest.raises(AcquireTimeoutError) as caught:  # not after the 60 s
        await asyncio.wait_for(fresh.acquire("entity", timeout=60), 10)
    assert caught.value.next_slot_in is not None
    assert 3590 < caught.value.next_slot_in <= 3600
    assert 3590 < fresh.snapshot()["entity"].next_slot_in <= 3600
    await driver_done(fresh)
    assert await turns_in_redis(redis_server, fresh) == 0
    assert fresh.snapshot()["entity"].waiting == {"interactive": 0, "bulk": 0}


async def test_a_bulk_deadline_is_checked_against_the_bulk_share(make: Make) -> None:
    a = make(entity=(10, 3600.0), reserve={"entity": 2})
    fresh = make(entity=(10, 3600.0), reserve={"entity": 2})
    await take(a, 8, priority="bulk")
    with pytest.raises(AcquireTimeoutError) as caught:
        await asyncio.wait_for(fresh.acquire("entity", priority="bulk", timeout=60), 10)
    assert caught.value.next_slot_in is not None
    assert 3590 < caught.value.next_slot_in <= 3600  # bulk's next slot, not the reserve's
    (await fresh.acquire("entity", timeout=0)).release()  # the reserve was left alone


async def test_waiters_queued_before_the_first_answer_get_their_deadlines_checked(
    make: Make,
) -> None:
    a, fresh = make(entity=(1, 3600.0)), make(entity=(1, 3600.0))
    await take(a, 1)
    hopeless = [asyncio.create_task(fresh.acquire("entity", timeout=t)) for t in (30, 60)]
    patient = asyncio.create_task(fresh.acquire("entity", timeout=7200))
    for task in hopeless:
        with pytest.raises(AcquireTimeoutError) as caught:
            await asyncio.wait_for(task, 10)
        assert caught.value.next_slot_in is not None
        assert caught.value.next_slot_in > 3590
    assert not patient.done()
    await cancelled(patient)


# -- server feedback ---------------------------------------------------------------------


async def test_a_429_seen_by_one_instance_pauses_the_other(make: Make) -> None:
    a, b = make(entity=(100, 1.0)), make(entity=(100, 1.0))
    await take(a, 1)
    await a.observe("entity", ServerFeedback(429, retry_after=0.25))
    lane = a._lanes["entity"]
    assert lane.reply is not None
    pause_end = lane.reply.pause / 1e6
    assert a.snapshot()["entity"].paused
    (granted,) = await take(b, 1)
    assert granted >= pause_end


async def test_a_429_without_headers_pauses_for_one_slot_interval(make: Make) -> None:
    limits = make(entity=(10, 1.0))
    await limits.observe("entity", ServerFeedback(429))
    snapshot = limits.snapshot()["entity"]
    assert 0.05 < snapshot.paused_for <= 0.1
    await limits.observe("entity", ServerFeedback(429, reset_after=0.2))
    assert 0.1 < limits.snapshot()["entity"].paused_for <= 0.2


async def test_a_turn_promised_before_a_429_waits_for_the_pause(make: Make) -> None:
    a, b = make(entity=(1, 0.1)), make(entity=(1, 0.1))
    await take(a, 1)
    task = await waiting_with_a_turn(a)
    await b.observe("entity", ServerFeedback(429, retry_after=0.3))
    reply = b._lanes["entity"].reply
    assert reply is not None
    permit = await task
    assert permit.granted_at >= reply.pause / 1e6
    permit.release()


async def test_remaining_zero_holds_every_process_until_the_reset(make: Make) -> None:
    a, b = make(entity=(100, 5.0)), make(entity=(100, 5.0))
    await a.observe("entity", ServerFeedback(200, remaining=0, reset_after=0.2))
    snapshot = a.snapshot()["entity"]
    assert snapshot.server_remaining == 0
    assert snapshot.paused
    reply = a._lanes["entity"].reply
    assert reply is not None
    (granted,) = await take(b, 1)
    assert granted >= reply.budget_until / 1e6


async def test_remaining_allows_that_many_more_and_the_stricter_report_wins(
    make: Make,
) -> None:
    limits = make(entity=(100, 5.0))
    lane = limits._lanes["entity"]
    await limits.observe("entity", ServerFeedback(200, remaining=3, reset_after=0.4))
    await limits.observe("entity", ServerFeedback(200, remaining=5, reset_after=0.1))
    assert lane.reply is not None
    assert lane.reply.budget == 3
    await limits.observe("entity", ServerFeedback(200, remaining=2))  # later reset: newer
    assert lane.reply.budget == 2
    times = await take(limits, 3)
    assert times[0] == times[1]
    assert times[2] >= lane.reply.budget_until / 1e6 - 1e-6
    await limits.observe("entity", ServerFeedback(200))  # nothing to learn: no call
    assert limits.stats()["round_trips"] <= 10


async def test_a_looser_report_without_a_reset_does_not_loosen_the_shared_budget(
    make: Make,
) -> None:
    limits = make(entity=(100, 5.0))
    lane = limits._lanes["entity"]
    await limits.observe("entity", ServerFeedback(200, remaining=0))
    await limits.observe("entity", ServerFeedback(200, remaining=1))  # older, late
    assert lane.reply is not None
    assert lane.reply.budget == 0
    assert limits.snapshot()["entity"].paused


# -- the local queues ------------------------------------------------------------------------


async def test_priorities_hold_across_real_grants(make: Make) -> None:
    limits = make(entity=(1, 0.1))
    first = await limits.acquire("entity")
    order: list[str] = []

    async def one(name: str, priority: Any) -> None:
        permit = await limits.acquire("entity", priority=priority)
        order.append(name)
        permit.release()

    tasks = [asyncio.create_task(one("bulk", "bulk"))]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(one("interactive", "interactive")))
    await asyncio.gather(*tasks)
    first.release()
    assert order == ["interactive", "bulk"]


async def test_a_reserve_keeps_slots_for_interactive_calls_across_processes(
    make: Make,
) -> None:
    a = make(entity=(5, 3600.0), reserve={"entity": 2})
    b = make(entity=(5, 3600.0), reserve={"entity": 2})
    bulk = [asyncio.create_task(a.acquire("entity", priority="bulk")) for _ in range(4)]
    pending: set[asyncio.Task[Permit]] = set(bulk)
    while len(pending) > 1:  # Redis answers in its own time: wait for three grants
        done, pending = await asyncio.wait(pending, timeout=10,
                                           return_when=asyncio.FIRST_COMPLETED)
        if not done:
            break  # no grant in 10 s: the count below says how many came
    assert sum(task.done() for task in bulk) == 3  # bulk holds at most 5 - 2
    with pytest.raises(AcquireTimeoutError):
        await b.acquire("entity", priority="bulk", timeout=0)
    first = await b.acquire("entity", timeout=0)  # interactive: the reserve is there
    second = await a.acquire("entity", timeout=0)
    with pytest.raises(AcquireTimeoutError):
        await b.acquire("entity", timeout=0)
    assert not bulk[3].done()
    bulk[3].cancel()
    for task in bulk[:3]:
        (await task).release()
    first.release()
    second.release()
    assert a.snapshot()["entity"].reserve == 2


async def test_the_in_flight_cap_is_per_process(make: Make) -> None:
    limits = make(entity=(100, 1.0), max_in_flight={"entity": 1})
    first = await limits.acquire("entity")
    second = asyncio.create_task(limits.acquire("entity"))
    await asyncio.sleep(0.02)
    assert not second.done()
    assert limits.snapshot()["entity"].in_flight == 1
    first.release()
    (await second).release()
    first.release()  # twice is harmless


async def test_a_wait_times_out_and_consumes_nothing(make: Make) -> None:
    limits = make(entity=(1, 5.0))
    held = await limits.acquire("entity")
    with pytest.raises(AcquireTimeoutError):
        await limits.acquire("entity", timeout=0.05)
    with pytest.raises(AcquireTimeoutError):  # a turn is held: no need to ask
        await asyncio.gather(
            limits.acquire("entity", timeout=0.05), limits.acquire("entity", timeout=0)
        )
    held.release()


async def test_timeout_zero_asks_redis_once(make: Make) -> None:
    limits = make(entity=(1, 5.0))
    (await limits.acquire("entity", timeout=0)).release()
    with pytest.raises(AcquireTimeoutError):
        await limits.acquire("entity", timeout=0)


async def test_timeout_zero_fails_at_once_when_the_in_flight_cap_is_full(make: Make) -> None:
    limits = make(entity=(100, 1.0), max_in_flight={"entity": 1})
    held = await limits.acquire("entity")
    with pytest.raises(AcquireTimeoutError):  # not when the permit is released
        await asyncio.wait_for(limits.acquire("entity", timeout=0), 10)
    held.release()
    (await limits.acquire("entity", timeout=0)).release()


async def test_timeout_zero_that_came_while_the_in_flight_cap_filled_fails_at_once(
    make: Make,
) -> None:
    limits = make(entity=(100, 3600.0), max_in_flight={"entity": 1})
    real_take = limits._take
    came: asyncio.Future[asyncio.Task[Permit]] = asyncio.get_running_loop().create_future()

    async def take_while_one_comes(queue: Any, classes: str, most: int | None = None) -> Any:
        if not came.done():  # it queues while the call for the bulk waiter is on its way
            came.set_result(asyncio.create_task(limits.acquire("entity", timeout=0)))
            await asyncio.sleep(0)
        return await real_take(queue, classes, most)

    limits._take = take_while_one_comes  # type: ignore[method-assign]
    held = await limits.acquire("entity", priority="bulk")  # the one place
    with pytest.raises(AcquireTimeoutError):  # not when the bulk permit is released
        await asyncio.wait_for(await came, 10)
    held.release()


async def test_aged_bulk_work_that_fills_a_call_leaves_the_reserve_to_interactive_calls(
    make: Make,
) -> None:
    limits = make(entity=(4, 3600.0), reserve={"entity": 2}, bulk_max_wait=0)
    await take(limits, 2, priority="bulk")  # bulk's share is spent; the reserve is free
    first = await waiting_with_a_turn(limits, priority="bulk")
    more = [asyncio.create_task(limits.acquire("entity", priority="bulk")) for _ in range(3)]
    await asyncio.sleep(0)
    queue = limits._queue("entity")
    assert queue.waiting() == 4  # aged: a call's `limit` places all go to them
    # As in process: the reserve serves the interactive calls, not in an hour.
    (await asyncio.wait_for(limits.acquire("entity"), 10)).release()
    (await asyncio.wait_for(limits.acquire("entity", timeout=0), 10)).release()
    with pytest.raises(AcquireTimeoutError):  # the first answer decides: the window is full
        await asyncio.wait_for(limits.acquire("entity", timeout=0), 10)
    await cancelled(first, *more)


async def test_a_call_grants_no_more_than_the_in_flight_cap_lets_go(make: Make) -> None:
    limits = make(entity=(4, 3600.0))
    reply = await limits._take(limits._queue("entity"), "BBI", 1)
    assert [bool(t) for t in reply.granted_at] == [True, False, False]
    assert reply.turn == 0  # nobody was short of a slot


async def test_a_cancelled_wait_leaves_the_queue(make: Make) -> None:
    limits = make(entity=(1, 0.2))
    held = await limits.acquire("entity")
    task = asyncio.create_task(limits.acquire("entity"))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limits.snapshot()["entity"].waiting == {"interactive": 0, "bulk": 0}
    held.release()


# -- failure and fallback ------------------------------------------------------------------


async def test_unreachable_redis_fails_closed_with_a_typed_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with RedisRateLimits(url, key="k", entity=(10, 1.0)) as limits:
        with pytest.raises(RateLimiterUnavailableError) as caught:
            await limits.acquire("entity")
    assert isinstance(caught.value, FathomError)
    assert caught.value.bucket == "entity"
    assert "request was not sent" in str(caught.value)


async def test_local_fallback_warns_once_and_switches_back_when_redis_returns() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    key = uuid.uuid4().hex
    async with RedisRateLimits(
        url, key=key, entity=(10, 1.0), on_unavailable="local", retry_interval=0.05
    ) as limits:
        with pytest.warns(RuntimeWarning, match="fall back to this process"):
            (await limits.acquire("entity")).release()
        (await limits.acquire("entity")).release()  # no second warning
        await limits.observe("entity", ServerFeedback(429, retry_after=0.01))
        assert limits.snapshot()["entity"].sent_in_window == 2  # the fallback's state
        await asyncio.sleep(0.06)
        await limits.observe("entity", ServerFeedback(429, retry_after=0.01))  # still down
        assert limits.stats()["local_grants"] == 2
        server = RedisServer(port)
        server.start()
        try:
            await asyncio.sleep(0.06)
            (await limits.acquire("entity")).release()
            assert limits.stats()["grants"] == 1
            client = redis.asyncio.Redis.from_url(url)
            try:  # the two local grants were sent along: the window counts three
                assert await client.zcard(f"fathom_async:{{{key}}}:entity:grants") == 3
            finally:
                await client.aclose()
        finally:
            await limits.aclose()
            server.stop()


async def fallen_back_waiter(limits: RedisRateLimits) -> asyncio.Task[Permit]:
    """An acquire that found Redis gone and now waits in the local fallback."""
    waiting = asyncio.create_task(limits.acquire("entity"))
    for _ in range(500):
        if limits._back is not None and limits.snapshot()["entity"].waiting["interactive"]:
            break
        await asyncio.sleep(0.01)
    return waiting


async def three_grants_then_redis_dies(
    make: Make, feedback: ServerFeedback | None = None
) -> tuple[RedisRateLimits, list[Permit]]:
    """Limits of 5 an hour on a Redis of their own: 3 grants (and `feedback`), then
    the server is killed; the limits fall back locally and never probe again."""
    port = free_port()
    server = RedisServer(port)
    server.start()
    limits = make(
        url=f"redis://127.0.0.1:{port}/0", entity=(5, 3600.0), on_unavailable="local",
        retry_interval=3600,
    )
    try:
        held = [await limits.acquire("entity", timeout=5) for _ in range(3)]
        if feedback is not None:
            await limits.observe("entity", feedback)
    finally:
        server.kill()
    return limits, held


async def test_the_fallback_starts_from_this_process_own_grants(make: Make) -> None:
    limits, held = await three_grants_then_redis_dies(
        make, ServerFeedback(429, retry_after=1800)
    )
    # Redis is gone. The local window already holds our 3 grants and the pause: no
    # slot for half an hour, where an empty fallback would have granted 5 at once.
    with pytest.warns(RuntimeWarning, match="fall back to this process"):
        waiting = await fallen_back_waiter(limits)
    snapshot = limits.snapshot()["entity"]
    assert snapshot.sent_in_window == 3
    assert 1790 < snapshot.paused_for <= 1800
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(AcquireTimeoutError) as caught:
        await limits.acquire("entity", timeout=1)
    assert caught.value.next_slot_in is not None
    assert 1790 < caught.value.next_slot_in <= 1800
    assert limits.stats()["local_grants"] == 0
    for permit in held:
        permit.release()


async def test_the_fallback_never_grants_more_than_the_limit_with_its_history(
    make: Make,
) -> None:
    limits, held = await three_grants_then_redis_dies(make)
    for permit in held:
        permit.release()
    with pytest.warns(RuntimeWarning):
        (await limits.acquire("entity", timeout=0)).release()
    (await limits.acquire("entity", timeout=0)).release()
    with pytest.raises(AcquireTimeoutError):  # 3 through Redis + 2 local = the limit
        await limits.acquire("entity", timeout=0)
    assert limits.stats()["local_grants"] == 2


async def test_feedback_that_cannot_reach_redis_is_sent_later(make: Make) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    limits = make(url=url, entity=(10, 1.0))
    await limits.observe("entity", ServerFeedback(429, retry_after=0.3))  # no raise
    lane = limits._lanes["entity"]
    assert lane.pending_pause > 0
    server = RedisServer(port)
    server.start()
    try:
        (granted,) = await take(limits, 1)
        assert granted >= lane.pending_pause / 1e6 or lane.pending_pause == 0
        assert lane.reply is not None
        assert lane.reply.pause > 0
    finally:
        await limits.aclose()
        server.stop()


async def test_a_client_passed_in_is_used_and_not_closed(
    make: Make, redis_server: RedisServer
) -> None:
    client = await raw_client(redis_server)
    try:
        limits = RedisRateLimits(client, key=uuid.uuid4().hex)
        async with limits:
            (await limits.acquire("reports")).release()
        assert await client.ping()
        assert "<client>" in repr(limits)
    finally:
        await client.aclose()


# -- the interface -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("",), {"key": "k"}, "url_or_client"),
        ((42,), {"key": "k"}, "url_or_client"),
        (("redis://x",), {"key": ""}, "key"),
        (("redis://x",), {"key": "k", "on_unavailable": "maybe"}, "on_unavailable"),
        (("redis://x",), {"key": "k", "retry_interval": 0}, "retry_interval"),
        (("redis://x",), {"key": "k", "bulk_max_wait": -1}, "bulk_max_wait"),
        (("redis://x",), {"key": "k", "entity": (0, 1)}, "entity.limit"),
    ],
)
def test_invalid_arguments_are_rejected_before_any_call(
    args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        RedisRateLimits(*args, **kwargs)
    assert caught.value.field == field


async def test_invalid_bucket_priority_and_timeout_are_rejected(make: Make) -> None:
    limits = make()
    with pytest.raises(ValidationError):
        await limits.acquire("sites")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await limits.acquire("entity", priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await limits.acquire("entity", timeout=-1)
    assert "<url>" in repr(limits)
    assert "redis://" not in repr(limits)


def test_snapshot_before_first_use_is_empty_and_works_outside_a_loop() -> None:
    limits = RedisRateLimits("redis://127.0.0.1:1/0", key="k")
    snapshot = limits.snapshot()
    assert snapshot["entity"].limit == 2000
    assert snapshot["reports"].period == 60.0
    assert snapshot["reports"].max_in_flight == 4
    assert snapshot["entity"].sent_in_window == 0
    assert not snapshot["entity"].paused


async def test_snapshot_reports_the_window_as_of_the_last_round_trip(make: Make) -> None:
    limits = make(entity=(3, 5.0))
    await take(limits, 3)
    snapshot = limits.snapshot()["entity"]
    assert snapshot.sent_in_window == 3
    assert 4.5 < snapshot.next_slot_in <= 5.0
    assert snapshot.server_remaining is None


def test_one_instance_serves_two_loops_and_closes_from_a_later_one(
    redis_server: RedisServer,
) -> None:
    limits = RedisRateLimits(redis_server.url, key=uuid.uuid4().hex, entity=(3, 3600.0))
    held: list[Permit] = []

    async def take_one() -> None:
        held.append(await limits.acquire("entity", timeout=5))

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(take_one())
        asyncio.run(take_one())  # another loop while the first one lives: its own connection
        other = asyncio.new_event_loop()
        try:
            other.run_until_complete(take_one())
            with pytest.raises(AcquireTimeoutError):  # one window for all three loops
                other.run_until_complete(limits.acquire("entity", timeout=0))
            other.run_until_complete(limits.aclose())  # closes every loop's connection
        finally:
            other.close()
    finally:
        loop.close()
    assert limits.snapshot()["entity"].sent_in_window == 3
    for permit in held:
        permit.release()  # permits of closed loops release nothing, harmlessly


async def test_aclose_ends_waiters_with_a_typed_error_and_can_be_used_again(
    make: Make,
) -> None:
    limits = make(entity=(1, 1.0))
    held = await limits.acquire("entity")
    task = asyncio.create_task(limits.acquire("entity"))
    await asyncio.sleep(0.02)
    await limits.close()
    with pytest.raises(RateLimiterUnavailableError, match="closed"):
        await task
    held.release()
    assert limits.snapshot()["entity"].waiting == {"interactive": 0, "bulk": 0}
    again = await limits.acquire("entity", timeout=10)  # usable again after close
    again.release()
    await limits.close()


def test_redis_rate_limits_is_public_and_import_does_not_load_redis() -> None:
    assert fathom_async.RedisRateLimits is RedisRateLimits
    assert fathom_async.RateLimiterUnavailableError is RateLimiterUnavailableError
    code = "import sys, fathom_async; assert 'redis' not in sys.modules, 'redis imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
