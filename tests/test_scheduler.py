"""The rate-limit scheduler: the per-window guarantee, checked on recorded grant times.

Every scenario runs on fake loop time (looptime), so hours of traffic take
milliseconds and no test sleeps on the wall clock. Grant times are read with
`loop.time()` when `acquire()` returns.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import threading
from collections.abc import Sequence
from typing import Any

import looptime
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom_async._exceptions import AcquireTimeoutError, ValidationError
from fathom_async._scheduler import (
    Bucket,
    BucketSnapshot,
    Permit,
    Priority,
    RateLimitBackend,
    RateLimits,
    ServerFeedback,
)

Grant = tuple[int, float]  # (waiter number, loop time of the grant)


def max_in_any_window(times: Sequence[float], period: float) -> int:
    """The most grants in any half-open window [t_i, t_i + period), sliding.

    Loop times are compared in whole microseconds (looptime's resolution), so that
    `60.007 + 60` and the loop's own `120.007` count as the same instant.
    """
    ticks = sorted(round(t * 1_000_000) for t in times)
    span = round(period * 1_000_000)
    best = 0
    end = 0
    for start_index, start in enumerate(ticks):
        while end < len(ticks) and ticks[end] < start + span:
            end += 1
        best = max(best, end - start_index)
    return best


def unlimited(**kwargs: Any) -> RateLimits:
    """RateLimits without in-flight caps, so that only the window decides."""
    kwargs.setdefault("max_in_flight", {"entity": None, "reports": None})
    return RateLimits(**kwargs)


async def acquire_at(
    limits: RateLimits,
    number: int,
    log: list[Grant],
    *,
    at: float = 0.0,
    bucket: Bucket = "reports",
    priority: Priority = "interactive",
) -> None:
    """Arrive at loop time `at`, acquire, record the grant time, release at once."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(at - loop.time(), 0.0))
    permit = await limits.acquire(bucket, priority=priority)
    log.append((number, loop.time()))
    permit.release()


def queue_of(limits: RateLimits, bucket: Bucket = "reports") -> Any:
    """The running loop's wait queue of a bucket (to look at its timer)."""
    ((_, queues),) = limits._loops.items()
    return queues[bucket]


def times_of(log: Sequence[Grant]) -> list[float]:
    return [t for _, t in log]


def test_max_in_any_window_counts_unaligned_windows() -> None:
    # Aligned windows [0, 60) and [60, 120) hold 3 and 2; [30, 90) holds 4.
    assert max_in_any_window([0, 30, 59.9, 60, 89], 60) == 4
    assert max_in_any_window([0, 60, 120], 60) == 1
    assert max_in_any_window([], 60) == 0


# -- bursts, exact window, utilisation -------------------------------------------------


@pytest.mark.looptime
async def test_burst_up_to_the_limit_goes_at_once_and_the_next_when_the_window_opens() -> None:
    limits = unlimited()
    log: list[Grant] = []
    await asyncio.gather(*(acquire_at(limits, i, log) for i in range(11)))
    assert times_of(log) == [0.0] * 10 + [60.0]
    assert [n for n, _ in log] == list(range(11))


@pytest.mark.looptime
async def test_a_waiter_goes_exactly_when_its_oldest_window_grant_is_a_period_old() -> None:
    limits = unlimited(reports=(3, 60))
    log: list[Grant] = []
    arrivals = [0, 5, 10, 12, 13, 70]
    await asyncio.gather(*(acquire_at(limits, i, log, at=a) for i, a in enumerate(arrivals)))
    # Not a fixed drip (20 s): the 4th goes at 0 + 60, the 5th at 5 + 60.
    assert times_of(log) == [0, 5, 10, 60, 65, 70]
    assert max_in_any_window(times_of(log), 60) == 3


@pytest.mark.looptime
async def test_30_queued_reports_calls_finish_at_120_seconds() -> None:
    limits = unlimited()
    log: list[Grant] = []
    await asyncio.gather(*(acquire_at(limits, i, log) for i in range(30)))
    assert times_of(log) == [0.0] * 10 + [60.0] * 10 + [120.0] * 10
    assert max_in_any_window(times_of(log), 60) == 10


@pytest.mark.looptime
async def test_2500_entity_calls_finish_at_3600_seconds() -> None:
    limits = unlimited()
    log: list[Grant] = []
    await asyncio.gather(*(acquire_at(limits, i, log, bucket="entity") for i in range(2500)))
    assert len(log) == 2500
    assert max(times_of(log)) == 3600.0
    assert max_in_any_window(times_of(log), 3600) == 2000


@pytest.mark.looptime
async def test_entity_traffic_over_simulated_hours_is_exact_and_work_conserving() -> None:
    rng = random.Random(20240603)
    # 9000 calls in 3 hours, in bursts and lulls: more than 2000/h at times.
    arrivals = sorted([round(rng.uniform(0, 3 * 3600), 3) for _ in range(6000)] + [7200.5] * 3000)
    limits = unlimited()
    log: list[Grant] = []
    await asyncio.gather(
        *(acquire_at(limits, i, log, at=a, bucket="entity") for i, a in enumerate(arrivals))
    )
    arrived = [arrivals[n] for n, _ in log]
    assert arrived == sorted(arrived)  # FIFO (ties at 7200.5 arrive in any order)
    grants = times_of(log)
    assert max_in_any_window(grants, 3600) <= 2000
    for k, granted in enumerate(grants):
        earliest = max(arrived[k], grants[k - 1] if k else 0.0)
        if k >= 2000:
            earliest = max(earliest, grants[k - 2000] + 3600)
        assert granted == pytest.approx(earliest, abs=1e-6), k
    assert grants[-1] > 3 * 3600  # the 7200.5 burst pushed work past the third hour


@pytest.mark.looptime
async def test_fractional_times_are_granted_on_time_despite_float_rounding() -> None:
    limits = unlimited(reports=(2, 0.3))
    loop = asyncio.get_running_loop()
    log: list[Grant] = []
    arrivals = [0.1, 0.2, 0.2, 0.2, 0.2]
    await asyncio.gather(*(acquire_at(limits, i, log, at=a) for i, a in enumerate(arrivals)))
    expected = [0.1, 0.2, 0.4, 0.5, 0.7]
    assert times_of(log) == pytest.approx(expected, abs=1e-9)
    assert max_in_any_window(times_of(log), 0.3) == 2
    assert loop.time() == pytest.approx(0.7, abs=1e-9)


# -- priorities ----------------------------------------------------------------------


async def _priority_scenario(limits: RateLimits) -> list[Grant]:
    """One grant at t=0; bulk 1, 2 queue at t=1; interactive 3, 4 at t=2."""
    log: list[Grant] = []
    first = await limits.acquire("reports")
    first.release()
    await asyncio.gather(
        acquire_at(limits, 1, log, at=1, priority="bulk"),
        acquire_at(limits, 2, log, at=1.5, priority="bulk"),
        acquire_at(limits, 3, log, at=2),
        acquire_at(limits, 4, log, at=2.5),
    )
    return log


@pytest.mark.looptime
async def test_interactive_goes_before_bulk_and_each_priority_is_fifo() -> None:
    limits = unlimited(reports=(1, 10), bulk_max_wait=1000)
    log = await _priority_scenario(limits)
    assert log == [(3, 10), (4, 20), (1, 30), (2, 40)]


@pytest.mark.looptime
async def test_a_bulk_waiter_older_than_bulk_max_wait_is_served_as_interactive() -> None:
    limits = unlimited(reports=(1, 10), bulk_max_wait=15)
    log = await _priority_scenario(limits)
    # At t=10 bulk 1 has waited 9 s: interactive 3 goes. At t=20 bulk 1 has waited
    # 19 s and arrived before interactive 4; so has bulk 2 at t=30.
    assert log == [(3, 10), (1, 20), (2, 30), (4, 40)]


@pytest.mark.looptime
async def test_mixed_priorities_keep_the_window_and_fifo_within_each_priority() -> None:
    rng = random.Random(7)
    limits = unlimited(reports=(10, 60), bulk_max_wait=120)
    log: list[Grant] = []
    # Whole microseconds: looptime on Python 3.10 never wakes a sleep finer than that.
    arrivals = sorted(round(rng.uniform(0, 600), 6) for _ in range(200))
    choices: tuple[Priority, ...] = ("interactive", "bulk")
    priorities = [rng.choice(choices) for _ in arrivals]
    await asyncio.gather(
        *(
            acquire_at(limits, i, log, at=a, priority=p)
            for i, (a, p) in enumerate(zip(arrivals, priorities, strict=True))
        )
    )
    assert max_in_any_window(times_of(log), 60) == 10
    for priority in ("interactive", "bulk"):
        served = [n for n, _ in log if priorities[n] == priority]
        assert served == sorted(served)
    granted_at = dict(log)
    # No bulk waiter that is not yet aged goes while an earlier interactive one waits.
    for n, t in log:
        if priorities[n] == "bulk" and t - arrivals[n] < 120 - 1e-6:
            assert not [
                m
                for m in granted_at
                if priorities[m] == "interactive" and arrivals[m] < t - 1e-6 < granted_at[m] - 2e-6
            ]
    assert any(granted_at[n] - arrivals[n] > 60 for n in granted_at)  # there was a backlog


# -- cancellation and timeouts ----------------------------------------------------------


@pytest.mark.looptime
async def test_a_cancelled_waiter_takes_no_slot_and_the_next_goes_on_time() -> None:
    limits = unlimited(reports=(2, 10))
    log: list[Grant] = []
    tasks = [asyncio.create_task(acquire_at(limits, i, log)) for i in range(5)]
    await asyncio.sleep(5)
    assert limits.snapshot()["reports"].waiting == {"interactive": 3, "bulk": 0}
    tasks[2].cancel()
    await asyncio.sleep(0)
    assert limits.snapshot()["reports"].waiting == {"interactive": 2, "bulk": 0}
    await asyncio.gather(*tasks, return_exceptions=True)
    assert tasks[2].cancelled()
    assert log == [(0, 0), (1, 0), (3, 10), (4, 10)]
    after = limits.snapshot()["reports"]
    assert after.waiting == {"interactive": 0, "bulk": 0}
    assert after.in_flight == 0
    assert queue_of(limits).timer is None


@pytest.mark.looptime
async def test_cancelling_the_only_waiter_leaves_no_timer_and_no_slot_used() -> None:
    limits = unlimited(reports=(1, 10))
    await limits.acquire("reports")
    task = asyncio.create_task(limits.acquire("reports"))
    await asyncio.sleep(1)
    assert queue_of(limits).timer is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert queue_of(limits).timer is None
    snap = limits.snapshot()["reports"]
    assert (snap.sent_in_window, snap.waiting["interactive"]) == (1, 0)
    await asyncio.sleep(9)
    permit = await limits.acquire("reports", timeout=0)
    assert permit.granted_at == 10


@pytest.mark.looptime
async def test_a_grant_racing_a_cancellation_gives_the_slot_to_the_next_waiter() -> None:
    limits = RateLimits(reports=(10, 60), max_in_flight={"reports": 1})
    loop = asyncio.get_running_loop()
    holder = await limits.acquire("reports")
    log: list[Grant] = []
    racer = asyncio.create_task(acquire_at(limits, 1, log))
    follower = asyncio.create_task(acquire_at(limits, 2, log))
    await asyncio.sleep(3)

    def release_then_cancel() -> None:
        holder.release()  # grants the racer at once (sets its future)...
        racer.cancel()  # ...but it is cancelled before it could run

    loop.call_soon(release_then_cancel)
    with pytest.raises(asyncio.CancelledError):
        await racer
    await follower
    assert log == [(2, 3.0)]  # no lost wakeup: the follower went at once
    snap = limits.snapshot()["reports"]
    assert snap.sent_in_window == 2  # the holder's and the follower's, not the racer's
    assert (snap.in_flight, snap.waiting["interactive"]) == (0, 0)


@pytest.mark.looptime
async def test_a_slot_opening_right_after_a_cancellation_skips_the_cancelled_waiter() -> None:
    limits = RateLimits(reports=(10, 60), max_in_flight={"reports": 1})
    loop = asyncio.get_running_loop()
    holder = await limits.acquire("reports")
    log: list[Grant] = []
    cancelled = asyncio.create_task(acquire_at(limits, 1, log))
    follower = asyncio.create_task(acquire_at(limits, 2, log))
    await asyncio.sleep(2)

    def cancel_then_release() -> None:
        cancelled.cancel()  # its task has not cleaned up when the place frees
        holder.release()

    loop.call_soon(cancel_then_release)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await follower
    assert log == [(2, 2.0)]
    snap = limits.snapshot()["reports"]
    assert (snap.sent_in_window, snap.in_flight, snap.waiting["interactive"]) == (2, 0, 0)


@pytest.mark.looptime
async def test_timeout_raises_acquire_timeout_error_and_leaves_nothing_behind() -> None:
    limits = unlimited(reports=(1, 60))
    loop = asyncio.get_running_loop()
    await limits.acquire("reports")
    ahead = asyncio.create_task(limits.acquire("reports"))  # takes the slot at t=60
    await asyncio.sleep(0)
    with pytest.raises(AcquireTimeoutError) as caught:
        await limits.acquire("reports", timeout=61)  # the window opens in time, the queue not
    assert (caught.value.bucket, caught.value.timeout) == ("reports", 61)
    assert loop.time() == 61
    assert caught.value.next_slot_in == 59  # the next window opening, at t=120
    assert "the next slot is in 59s" in str(caught.value)
    assert (await ahead).granted_at == 60
    snap = limits.snapshot()["reports"]
    assert (snap.sent_in_window, snap.waiting["interactive"]) == (1, 0)
    assert queue_of(limits).timer is None
    with pytest.raises(AcquireTimeoutError):
        await limits.acquire("reports", timeout=0)
    assert loop.time() == 61
    permit = await limits.acquire("reports", timeout=100)  # waits 59 s, in time
    assert permit.granted_at == 120


@pytest.mark.looptime
async def test_a_slot_beyond_the_deadline_raises_at_once_and_says_when_it_is() -> None:
    limits = unlimited(reports=(1, 60))
    loop = asyncio.get_running_loop()
    await limits.acquire("reports")
    await asyncio.sleep(5)
    with pytest.raises(AcquireTimeoutError) as caught:
        await limits.acquire("reports", timeout=3)
    assert loop.time() == 5  # no waiting for a slot that cannot come in time
    assert caught.value.next_slot_in == 55
    await limits.observe("reports", ServerFeedback(429, retry_after=100))
    with pytest.raises(AcquireTimeoutError) as paused:
        await limits.acquire("reports", priority="bulk", timeout=99)
    assert (loop.time(), paused.value.next_slot_in) == (5, 100)
    assert limits.snapshot()["reports"].waiting == {"interactive": 0, "bulk": 0}


@pytest.mark.looptime
async def test_a_timed_out_head_lets_the_next_waiter_go_on_time() -> None:
    limits = unlimited(reports=(1, 10))
    await limits.acquire("reports")
    log: list[Grant] = []
    short = asyncio.create_task(limits.acquire("reports", timeout=4))
    later = asyncio.create_task(acquire_at(limits, 2, log, at=1))
    with pytest.raises(AcquireTimeoutError):
        await short
    await later
    assert log == [(2, 10)]


@pytest.mark.looptime
async def test_a_timeout_racing_a_cancellation_leaves_nothing_behind() -> None:
    limits = unlimited(reports=(1, 10))
    loop = asyncio.get_running_loop()
    await limits.acquire("reports")
    task = asyncio.create_task(limits.acquire("reports", timeout=100))
    await asyncio.sleep(1)
    state = queue_of(limits)
    (waiter,) = state.queues["interactive"]

    def time_out_then_cancel() -> None:
        state._time_out(waiter)
        state._time_out(waiter)  # a second time does nothing
        task.cancel()

    loop.call_soon(time_out_then_cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    snap = limits.snapshot()["reports"]
    assert (snap.sent_in_window, snap.waiting["interactive"], snap.in_flight) == (1, 0, 1)
    assert state.timer is None


# -- what the server says ----------------------------------------------------------------


@pytest.mark.looptime
async def test_a_429_mid_stream_pauses_the_whole_bucket_until_retry_after() -> None:
    limits = unlimited(reports=(5, 10))
    loop = asyncio.get_running_loop()
    log: list[Grant] = []

    async def server_says_429() -> None:
        await asyncio.sleep(11.75)
        await limits.observe("reports", ServerFeedback(429, retry_after=20))
        snap = limits.snapshot()["reports"]
        assert snap.paused
        assert (snap.paused_for, snap.next_slot_in) == (20, 20)

    await asyncio.gather(
        server_says_429(), *(acquire_at(limits, i, log, at=i * 0.5) for i in range(30))
    )
    grants = times_of(log)
    assert grants[:9] == [0, 0.5, 1, 1.5, 2, 10, 10.5, 11, 11.5]
    # Without the 429 the 10th would go at 12: nothing goes until 31.75, then a burst.
    assert grants[9:19] == [31.75] * 5 + [41.75] * 5
    assert max_in_any_window(grants, 10) == 5
    assert [n for n, _ in log] == list(range(30))
    assert loop.time() == grants[-1]


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("feedback", "pause"),
    [
        (ServerFeedback(429, retry_after=7), 7),
        (ServerFeedback(429, reset_after=9), 9),
        (ServerFeedback(429), 6),  # one slot interval, 60 / 10
        (ServerFeedback(429, retry_after=-3), 0),
    ],
)
async def test_a_429_pauses_for_retry_after_else_reset_else_one_interval(
    feedback: ServerFeedback, pause: float
) -> None:
    limits = unlimited()
    await limits.observe("reports", feedback)
    permit = await limits.acquire("reports")
    assert permit.granted_at == pause
    assert limits.snapshot()["reports"].paused_for == 0


@pytest.mark.looptime
async def test_remaining_zero_with_reset_pauses_the_bucket_on_any_status() -> None:
    limits = unlimited()
    await limits.observe("reports", ServerFeedback(200, remaining=0, reset_after=25))
    snap = limits.snapshot()["reports"]
    assert (snap.paused_for, snap.server_remaining, snap.next_slot_in) == (25, 0, 25)
    permit = await limits.acquire("reports")
    assert permit.granted_at == 25
    assert limits.snapshot()["reports"].server_remaining is None


@pytest.mark.looptime
async def test_a_lower_remaining_from_the_server_is_trusted_until_it_resets() -> None:
    limits = unlimited()
    log: list[Grant] = []
    await limits.observe("reports", ServerFeedback(200, remaining=3, reset_after=30))
    await asyncio.gather(*(acquire_at(limits, i, log) for i in range(6)))
    # Only 3 fit until the server resets at t=30; our own window had room for 10.
    assert times_of(log) == [0, 0, 0, 30, 30, 30]


@pytest.mark.looptime
async def test_remaining_without_reset_holds_for_one_period() -> None:
    limits = unlimited()
    await limits.observe("reports", ServerFeedback(200, remaining=1))
    first = await limits.acquire("reports")
    second = await limits.acquire("reports")
    assert (first.granted_at, second.granted_at) == (0, 60)


@pytest.mark.looptime
async def test_a_higher_remaining_than_our_window_changes_nothing() -> None:
    limits = unlimited(reports=(2, 60))
    await limits.acquire("reports")
    await limits.acquire("reports")
    await limits.observe("reports", ServerFeedback(200, remaining=9, reset_after=1))
    permit = await limits.acquire("reports")
    assert permit.granted_at == 60  # our window still rules


@pytest.mark.looptime
async def test_out_of_order_reports_combine_to_the_stricter() -> None:
    limits = unlimited()
    await limits.observe("reports", ServerFeedback(200, remaining=1, reset_after=40))
    await limits.observe("reports", ServerFeedback(200, remaining=5, reset_after=10))
    assert limits.snapshot()["reports"].server_remaining == 1
    times = [(await limits.acquire("reports")).granted_at for _ in range(3)]
    assert times == [0, 40, 40]


@pytest.mark.looptime
async def test_a_report_with_a_later_reset_replaces_the_one_in_force() -> None:
    limits = unlimited()
    await limits.observe("reports", ServerFeedback(200, remaining=0, reset_after=30))
    await asyncio.sleep(29.5)
    assert limits.snapshot()["reports"].paused_for == 0.5
    await limits.observe("reports", ServerFeedback(200, remaining=9, reset_after=60))
    assert limits.snapshot()["reports"].server_remaining == 9
    permit = await limits.acquire("reports", timeout=0)
    assert permit.granted_at == 29.5
    assert limits.snapshot()["reports"].server_remaining == 8


@pytest.mark.looptime
async def test_a_pause_learned_while_waiters_queue_moves_their_timer() -> None:
    limits = unlimited(reports=(1, 10))
    log: list[Grant] = []
    await limits.acquire("reports")
    waiter = asyncio.create_task(acquire_at(limits, 1, log))
    await asyncio.sleep(5)
    await limits.observe("reports", ServerFeedback(429, retry_after=15))
    await waiter
    assert log == [(1, 20)]


# -- the in-flight cap and permits --------------------------------------------------------


@pytest.mark.looptime
async def test_reports_in_flight_is_capped_at_4_by_default_and_release_frees_a_place() -> None:
    limits = RateLimits()
    held = [asyncio.create_task(limits.acquire("reports")) for _ in range(6)]
    await asyncio.sleep(1)
    granted = [t.result() for t in held if t.done()]
    assert len(granted) == 4
    assert limits.snapshot()["reports"].in_flight == 4
    assert limits.snapshot()["reports"].next_slot_in == 0  # the window is not the limit
    granted[0].release()
    granted[0].release()  # idempotent
    await asyncio.sleep(0)
    assert sum(t.done() for t in held) == 5
    assert limits.snapshot()["reports"].in_flight == 4
    async with granted[1]:
        pass
    assert granted[1].released
    permits = await asyncio.gather(*held)
    for permit in permits:
        permit.release()
    snap = limits.snapshot()["reports"]
    assert (snap.in_flight, snap.sent_in_window, snap.max_in_flight) == (0, 6, 4)


@pytest.mark.looptime
async def test_entity_has_no_in_flight_cap_by_default() -> None:
    limits = RateLimits()
    permits = [await limits.acquire("entity") for _ in range(50)]
    assert limits.snapshot()["entity"].in_flight == 50
    assert limits.snapshot()["entity"].max_in_flight is None
    for permit in permits:
        permit.release()


def test_a_standalone_permit_releases_harmlessly_and_says_so() -> None:
    calls: list[int] = []
    permit = Permit("entity", 1.5, on_release=lambda: calls.append(1))
    assert not permit.released
    assert "held" in repr(permit)
    permit.release()
    permit.release()
    assert calls == [1]
    assert permit.released
    assert repr(permit) == "<Permit entity granted_at=1.500000 released>"
    Permit().release()


# -- many waiters, many clients, loops -------------------------------------------------------


@pytest.mark.looptime
async def test_10000_concurrent_waiters_complete_in_order() -> None:
    limits = unlimited()
    log: list[Grant] = []
    await asyncio.gather(*(acquire_at(limits, i, log, bucket="entity") for i in range(10_000)))
    assert [n for n, _ in log] == list(range(10_000))
    assert max(times_of(log)) == 4 * 3600
    assert max_in_any_window(times_of(log), 3600) == 2000
    snap = limits.snapshot()["entity"]
    assert (snap.waiting["interactive"], snap.in_flight) == (0, 0)


@pytest.mark.looptime
async def test_one_instance_shared_by_several_clients_keeps_one_window() -> None:
    shared = unlimited()
    log: list[Grant] = []

    async def client(offset: int) -> None:
        await asyncio.gather(*(acquire_at(shared, offset + i, log, at=i) for i in range(15)))

    await asyncio.gather(client(0), client(100))
    assert len(log) == 30
    assert max_in_any_window(times_of(log), 60) == 10
    assert max(times_of(log)) == 124  # 3 windows' worth, the last arrivals at t=4..14


def test_an_instance_made_outside_a_loop_follows_its_clock_across_loops() -> None:
    limits = unlimited(reports=(2, 3600))
    snap = limits.snapshot()["reports"]  # no loop yet: time.monotonic()
    assert (snap.sent_in_window, snap.next_slot_in) == (0, 0)

    async def take(n: int) -> list[Permit]:
        return [await limits.acquire("reports", timeout=0) for _ in range(n)]

    permits = asyncio.run(take(2))
    assert limits.snapshot()["reports"].in_flight == 2
    with pytest.raises(AcquireTimeoutError):  # a new loop: the window is still full
        asyncio.run(take(1))
    for permit in permits:
        permit.release()  # from a closed loop: those places are already forgotten
    snap = limits.snapshot()["reports"]
    assert (snap.in_flight, snap.sent_in_window) == (0, 2)


def test_two_live_loops_share_one_window() -> None:
    limits = unlimited(reports=(2, 3600))
    first = asyncio.new_event_loop()
    try:
        permit = first.run_until_complete(limits.acquire("reports"))
        second = asyncio.run(limits.acquire("reports"))  # another loop, while the first lives
        with pytest.raises(AcquireTimeoutError):
            first.run_until_complete(limits.acquire("reports", timeout=0))
        permit.release()
        second.release()
    finally:
        first.close()
    snap = limits.snapshot()["reports"]
    assert (snap.sent_in_window, snap.in_flight) == (2, 0)


def test_threads_with_their_own_loops_share_the_window_and_the_in_flight_cap() -> None:
    limits = RateLimits(reports=(5, 3600), max_in_flight={"reports": 5})
    granted: list[Permit] = []
    refused: list[AcquireTimeoutError] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def worker() -> None:
        async def run() -> None:
            start.wait()
            for _ in range(5):
                try:
                    permit = await limits.acquire("reports", timeout=0)
                except AcquireTimeoutError as exc:
                    with lock:
                        refused.append(exc)
                else:
                    with lock:
                        granted.append(permit)

        asyncio.run(run())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert (len(granted), len(refused)) == (5, 15)
    assert limits.snapshot()["reports"].sent_in_window == 5


def test_a_release_in_one_loop_wakes_a_waiter_in_another_thread() -> None:
    limits = RateLimits(reports=(10, 60), max_in_flight={"reports": 1})
    first = asyncio.new_event_loop()
    queued = threading.Event()
    result: list[Permit] = []

    def other_thread() -> None:
        async def run() -> None:
            task = asyncio.create_task(limits.acquire("reports", timeout=30))
            await asyncio.sleep(0)
            queued.set()
            result.append(await task)

        asyncio.run(run())

    try:
        permit = first.run_until_complete(limits.acquire("reports"))
        thread = threading.Thread(target=other_thread)
        thread.start()
        assert queued.wait(timeout=30)
        assert limits.snapshot()["reports"].waiting["interactive"] == 1
        permit.release()  # the place frees in this loop; the other loop's waiter goes
        thread.join(timeout=30)
    finally:
        first.close()
    assert len(result) == 1
    assert limits.snapshot()["reports"].sent_in_window == 2


def test_release_after_the_loop_closed_only_frees_the_place() -> None:
    limits = RateLimits(reports=(5, 60), max_in_flight={"reports": 1})
    loop = looptime.new_event_loop()
    permit = loop.run_until_complete(limits.acquire("reports"))
    waiter = loop.create_task(limits.acquire("reports"))
    loop.run_until_complete(asyncio.sleep(0))
    waiter.cancel()
    loop.run_until_complete(asyncio.gather(waiter, return_exceptions=True))
    loop.close()
    permit.release()
    assert limits.snapshot()["reports"].in_flight == 0


# -- the interface, validation, introspection ----------------------------------------------


def test_rate_limits_is_a_rate_limit_backend_and_the_abc_is_abstract() -> None:
    assert isinstance(RateLimits(), RateLimitBackend)
    with pytest.raises(TypeError):
        RateLimitBackend()  # type: ignore[abstract]
    assert repr(RateLimits()) == (
        "RateLimits(entity=(2000, 3600.0), reports=(10, 60.0),"
        " max_in_flight={'entity': None, 'reports': 4}, bulk_max_wait=60.0)"
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"entity": 5}, "entity"),
        ({"entity": (1, 2, 3)}, "entity"),
        ({"reports": (0, 60)}, "reports.limit"),
        ({"reports": (True, 60)}, "reports.limit"),
        ({"reports": (2.5, 60)}, "reports.limit"),
        ({"reports": (10, 0)}, "reports.period"),
        ({"reports": (10, math.inf)}, "reports.period"),
        ({"reports": (10, math.nan)}, "reports.period"),
        ({"reports": (10, "60")}, "reports.period"),
        ({"max_in_flight": 4}, "max_in_flight"),
        ({"max_in_flight": {"sites": 4}}, "max_in_flight"),
        ({"max_in_flight": {"reports": 0}}, "max_in_flight.reports"),
        ({"max_in_flight": {"reports": True}}, "max_in_flight.reports"),
        ({"bulk_max_wait": -1}, "bulk_max_wait"),
        ({"bulk_max_wait": math.inf}, "bulk_max_wait"),
        ({"bulk_max_wait": None}, "bulk_max_wait"),
    ],
)
def test_invalid_options_raise_validation_error(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RateLimits(**kwargs)
    assert caught.value.field == field


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({"bucket": "sites"}, "bucket"),
        ({"bucket": ["reports"]}, "bucket"),
        ({"priority": "urgent"}, "priority"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": "5"}, "timeout"),
    ],
)
async def test_invalid_acquire_arguments_raise_validation_error(
    call: dict[str, Any], field: str
) -> None:
    limits = RateLimits()
    bucket = call.pop("bucket", "reports")
    with pytest.raises(ValidationError) as caught:
        await limits.acquire(bucket, **call)
    assert caught.value.field == field
    assert limits.snapshot()["reports"].sent_in_window == 0


@pytest.mark.looptime
async def test_snapshot_reports_window_waiters_and_next_slot() -> None:
    limits = RateLimits(reports=(2, 60), max_in_flight={"reports": None})
    await asyncio.sleep(10)
    await limits.acquire("reports")
    await asyncio.sleep(5)
    await limits.acquire("reports")
    bulk = asyncio.create_task(limits.acquire("reports", priority="bulk"))
    interactive = asyncio.create_task(limits.acquire("reports"))
    await asyncio.sleep(1)
    snap = limits.snapshot()["reports"]
    assert snap == BucketSnapshot(
        limit=2,
        period=60.0,
        sent_in_window=2,
        waiting={"interactive": 1, "bulk": 1},
        next_slot_in=54.0,
        paused_for=0.0,
        in_flight=2,
        max_in_flight=None,
        server_remaining=None,
    )
    assert not snap.paused
    assert (await interactive).granted_at == 70
    assert (await bulk).granted_at == 75
    assert limits.snapshot()["reports"].sent_in_window == 2
    await asyncio.sleep(150)
    assert limits.snapshot()["reports"].sent_in_window == 0


# -- the property: exact window, work-conserving, in policy order ----------------------------

# Times are multiples of 1/128 s on a loop with 1/1024 s resolution, so every sum is
# exact. Arrival i has fraction (2i+1)/128, its cancel (2i+2)/128, the 429 127/128, and
# periods are whole seconds: no two events of different kinds can coincide, so the
# expected schedule is unique.
_Spec = tuple[int, Priority, int | None]  # whole seconds of arrival, priority, cancel after


def expected_schedule(
    arrivals: Sequence[float],
    priorities: Sequence[Priority],
    cancels: Sequence[float],
    limit: int,
    period: float,
    bulk_max_wait: float,
    pause: tuple[float, float] | None,
) -> list[Grant]:
    """The ideal: grant the policy's choice as soon as one may go and one is waiting."""
    granted: list[Grant] = []
    done: set[int] = set()
    while True:
        ready = granted[-1][1] if granted else -math.inf
        if len(granted) >= limit:
            ready = max(ready, granted[-limit][1] + period)
        pending = [i for i in range(len(arrivals)) if i not in done]
        while True:
            starts = [max(ready, arrivals[i]) for i in pending]
            starts = [s for s, i in zip(starts, pending, strict=True) if s < cancels[i]]
            if not starts:
                return granted
            at = min(starts)
            if pause is not None and pause[0] <= at < pause[1]:
                ready = pause[1]
                continue
            break
        alive = sorted(
            (i for i in pending if arrivals[i] <= at < cancels[i]), key=arrivals.__getitem__
        )
        interactive = [i for i in alive if priorities[i] == "interactive"]
        bulk = [i for i in alive if priorities[i] == "bulk"]
        choice = interactive[0] if interactive else bulk[0]
        if bulk and interactive:
            aged = at - arrivals[bulk[0]] >= bulk_max_wait
            if aged and arrivals[bulk[0]] < arrivals[interactive[0]]:
                choice = bulk[0]
        granted.append((choice, at))
        done.add(choice)


@settings(max_examples=120, deadline=None, database=None)
@given(
    specs=st.lists(
        st.tuples(
            st.integers(0, 40),
            st.sampled_from(["interactive", "bulk"]),
            st.none() | st.integers(0, 30),
        ),
        min_size=1,
        max_size=25,
    ),
    limit=st.integers(1, 4),
    period=st.integers(1, 12),
    bulk_max_wait=st.integers(0, 40),
    pause=st.none() | st.tuples(st.integers(0, 40), st.integers(1, 20)),
)
def test_property_any_arrivals_get_the_exact_work_conserving_schedule(
    specs: list[_Spec],
    limit: int,
    period: int,
    bulk_max_wait: int,
    pause: tuple[int, int] | None,
) -> None:
    arrivals = [whole + (2 * i + 1) / 128 for i, (whole, _, _) in enumerate(specs)]
    priorities = [priority for _, priority, _ in specs]
    cancels = [
        math.inf if after is None else arrivals[i] + after + 1 / 128
        for i, (_, _, after) in enumerate(specs)
    ]
    paused = None if pause is None else (pause[0] + 127 / 128, pause[0] + 127 / 128 + pause[1])
    limits = unlimited(reports=(limit, period), bulk_max_wait=bulk_max_wait)
    log: list[Grant] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        tasks = [
            asyncio.create_task(acquire_at(limits, i, log, at=a, priority=p))
            for i, (a, p) in enumerate(zip(arrivals, priorities, strict=True))
        ]
        for task, cancel_at in zip(tasks, cancels, strict=True):
            if cancel_at < math.inf:
                loop.call_at(cancel_at, task.cancel)
        if paused is not None:
            await asyncio.sleep(paused[0])
            retry_after = paused[1] - paused[0]
            await limits.observe("reports", ServerFeedback(429, retry_after=retry_after))
        await asyncio.gather(*tasks, return_exceptions=True)

    loop = looptime.new_event_loop(start=0, resolution=1 / 1024)
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()

    expected = expected_schedule(
        arrivals, priorities, cancels, limit, period, bulk_max_wait, paused
    )
    assert log == expected
    assert max_in_any_window(times_of(log), period) <= limit
    for priority in ("interactive", "bulk"):
        order = [n for n, _ in log if priorities[n] == priority]
        assert order == sorted(order, key=arrivals.__getitem__)  # FIFO within a priority
    snap = limits.snapshot()["reports"]
    assert (snap.waiting, snap.in_flight) == ({"interactive": 0, "bulk": 0}, 0)
    assert queue_of(limits).timer is None


@pytest.mark.looptime
async def test_a_revoked_permit_gives_its_window_slot_back() -> None:
    limits = unlimited(reports=(1, 60))
    loop = asyncio.get_running_loop()
    unused = await limits.acquire("reports")
    unused.revoke()  # never sent
    assert limits.snapshot()["reports"].sent_in_window == 0
    used = await limits.acquire("reports")
    assert loop.time() == 0  # at once: the slot came back
    used.release()
    used.revoke()  # after a release there is nothing left to give back
    assert limits.snapshot()["reports"].sent_in_window == 1
    started = loop.time()
    (await limits.acquire("reports")).release()
    assert loop.time() - started == pytest.approx(60)


def test_a_permit_without_revoke_only_releases() -> None:
    released: list[bool] = []
    permit = Permit("entity", 0.0, on_release=lambda: released.append(True))
    permit.revoke()
    permit.revoke()
    assert released == [True]
    assert permit.released


@pytest.mark.looptime
async def test_an_abandoned_wait_that_was_granted_returns_the_slot() -> None:
    from fathom_async._client import _abandon

    limits = unlimited(reports=(1, 60))
    granted = asyncio.ensure_future(limits.acquire("reports"))
    await asyncio.sleep(0)
    assert granted.done()
    await _abandon(granted)  # the caller went away before using it
    assert limits.snapshot()["reports"].sent_in_window == 0
    assert limits.snapshot()["reports"].in_flight == 0


# -- reserved slots --------------------------------------------------------------------------


@pytest.mark.looptime
@pytest.mark.parametrize("bulk_max_wait", [60.0, 0.0])
async def test_a_reserve_keeps_slots_for_interactive_calls_behind_a_bulk_backlog(
    bulk_max_wait: float,
) -> None:
    limits = unlimited(reserve={"reports": 2}, bulk_max_wait=bulk_max_wait)
    bulk: list[Grant] = []
    interactive: list[Grant] = []
    backlog = [
        asyncio.create_task(acquire_at(limits, i, bulk, priority="bulk")) for i in range(24)
    ]
    await asyncio.gather(
        acquire_at(limits, 100, interactive, at=1),
        acquire_at(limits, 101, interactive, at=30),
        acquire_at(limits, 102, interactive, at=61),
    )
    await asyncio.gather(*backlog)
    # Bulk holds at most 8 of every minute's 10 (counting the dashboard's calls), aged
    # or not, so two places stay free at every moment: the dashboard never waits.
    assert times_of(bulk)[:9] == [0.0] * 8 + [60.0]
    assert times_of(interactive) == [1.0, 30.0, 61.0]
    assert max_in_any_window(times_of(bulk), 60) == 8
    assert max_in_any_window(times_of(bulk) + times_of(interactive), 60) <= 10
    assert limits.snapshot()["reports"].reserve == 2


@pytest.mark.looptime
async def test_a_bulk_timeout_says_when_the_next_bulk_slot_is_not_the_reserves() -> None:
    limits = unlimited(reserve={"reports": 2})
    for _ in range(8):
        await limits.acquire("reports", priority="bulk")
    with pytest.raises(AcquireTimeoutError) as bulk:
        await limits.acquire("reports", priority="bulk", timeout=0)
    assert bulk.value.next_slot_in == 60  # the reserve's two places are not bulk's
    permit = await limits.acquire("reports", timeout=0)  # an interactive call goes now
    assert permit.granted_at == 0


@pytest.mark.looptime
async def test_interactive_calls_may_use_the_whole_limit_with_a_reserve() -> None:
    limits = unlimited(reserve={"reports": 3})
    log: list[Grant] = []
    await asyncio.gather(*(acquire_at(limits, i, log) for i in range(11)))
    assert times_of(log) == [0.0] * 10 + [60.0]


@pytest.mark.looptime
async def test_a_server_budget_keeps_the_reserve_for_interactive_calls() -> None:
    limits = unlimited(reserve={"reports": 2})
    await limits.observe("reports", ServerFeedback(200, remaining=2, reset_after=30))
    loop = asyncio.get_running_loop()
    bulk = asyncio.create_task(limits.acquire("reports", priority="bulk"))
    first = await limits.acquire("reports")
    assert first.granted_at == 0  # an interactive call spends the reserved budget
    assert (await bulk).granted_at == 30  # bulk waits for the server's reset
    assert loop.time() == 30


@pytest.mark.parametrize(
    ("reserve", "field"),
    [
        ({"reports": 10}, "reserve.reports"),
        ({"reports": -1}, "reserve.reports"),
        ({"reports": 1.5}, "reserve.reports"),
        ({"reports": True}, "reserve.reports"),
        ({"sites": 1}, "reserve"),
        (2, "reserve"),
    ],
)
def test_an_invalid_reserve_is_refused(reserve: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RateLimits(reserve=reserve)
    assert caught.value.field == field


def test_grant_times_go_on_across_fake_clocks_and_real_loops() -> None:
    limits = unlimited(reports=(2, 60))
    first = looptime.new_event_loop()
    try:
        for _ in range(2):
            first.run_until_complete(limits.acquire("reports"))
        first.run_until_complete(asyncio.sleep(50))  # fake time: instant
    finally:
        first.close()
    second = looptime.new_event_loop()  # a new fake clock, starting at 0 again
    try:
        # The window remembers grants 50 s old, not grants "in the future".
        with pytest.raises(AcquireTimeoutError) as caught:
            second.run_until_complete(limits.acquire("reports", timeout=1))
        assert caught.value.next_slot_in is not None
        assert 9 < caught.value.next_slot_in <= 10
        permit = second.run_until_complete(limits.acquire("reports", timeout=11))
        assert permit.granted_at >= 60
    finally:
        second.close()
    # A real loop afterwards: the slot taken at limiter time ~60 still counts.
    assert limits.snapshot()["reports"].sent_in_window >= 1


@pytest.mark.looptime
async def test_a_looser_report_without_a_reset_arriving_late_does_not_loosen_the_budget() -> None:
    limits = unlimited()
    # Two responses of requests in flight together, arriving out of order: the one
    # that counted more requests (remaining 0) first, the older count (1) last.
    await limits.observe("reports", ServerFeedback(200, remaining=0))
    await asyncio.sleep(0.01)
    await limits.observe("reports", ServerFeedback(200, remaining=1))
    assert limits.snapshot()["reports"].server_remaining == 0
    permit = await limits.acquire("reports")
    assert permit.granted_at == 60.01  # one period after the last report


async def test_a_released_permit_leaves_no_garbage_cycle() -> None:
    """Every call takes and releases a permit: that must not feed the cyclic GC."""
    limits = RateLimits(entity=(10**6, 3600), reports=(10, 60))
    gc.collect()
    gc.disable()
    try:
        for _ in range(100):
            permit = limits.try_acquire("entity")
            assert permit is not None
            permit.release()
        del permit
        assert gc.collect() == 0
    finally:
        gc.enable()
    revocable = limits.try_acquire("entity")
    assert revocable is not None
    revocable.release()
    revocable.revoke()  # a released permit cannot be revoked: nothing happens
    assert limits.snapshot()["entity"].sent_in_window == 101
