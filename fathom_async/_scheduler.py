"""Client-side rate limiting: the public limiter types and Fathom's two buckets in process.

Fathom allows `limit` requests per `period` seconds per bucket (entity: 2000 per
3600 s, reports: 10 per 60 s), counted per Fathom user. The client calls `acquire()`
before a request, `Permit.release()` when it is done, and `observe()` with what the
response said. This module never does HTTP, never sleeps on its own and never polls.

The parts, one place each:
- `_window`: the exact sliding window (every window of `period` seconds holds at most
  `limit` grants; why, and why it is as loose as possible), the reserve for
  interactive calls, and the server's pause and budget.
- `_waitqueue`: the one wait queue every backend uses: priorities, FIFO, aging,
  reservation, deadlines, cancellation, the in-flight cap.
- this module: the public types, and `RateLimits`, which pairs a `Window` per bucket
  with a wait queue per bucket and event loop; `_redis` pairs the same queue with a
  Lua script instead.

Why aiolimiter's `AsyncLimiter(10, 60)` lets 19 through in one window
---------------------------------------------------------------------
`AsyncLimiter(max_rate, time_period)` is a leaky bucket: it holds up to `max_rate`
units and drains continuously at `max_rate / time_period` per second. Start empty:
10 acquisitions go at t=0 (level 10). The level then drains one unit every
60 / 10 = 6 s, so one more acquisition goes at t = 6, 12, ..., 54: 9 more. The window
`[0, 60)` holds 10 + 9 = 19. In general a token bucket bounds a window of length `T`
by `capacity + rate * T`, here `10 + (10 / 60) * 60 = 20` (19 inside a half-open
window): about twice the limit. Making it safe needs `capacity + rate * period <=
limit`, e.g. capacity 1 and a 6.67 s drip: no bursts, and the 11th call waits for a
drip instead of the window. The exact window needs the grant times, which a token
bucket throws away; priorities, FIFO and server pauses need a queue it does not expose.

What the server says (`observe`)
--------------------------------
- A 429 pauses the **whole** bucket: no waiter is granted until `Retry-After`
  (else `X-RateLimit-Reset`) seconds from now; with neither, for one slot interval
  (`period / limit`). A 429 alone does not fill our window: it may come from the
  unpublished concurrency cap rather than from the window.
- `remaining = r` (until `reset_after`, else for one `period`): we trust the server,
  since other processes and tokens of the same user spend the same budget. Until the
  reset we grant at most `r` more (bulk: `r - reserve`), on top of our own window.
- `limit` is not used: configure raised limits in `RateLimits(...)`.

Loops, threads and clocks
-------------------------
Nothing asyncio is made in `__init__`. The window of each bucket is shared by every
event loop that uses the instance, one after another or at once from several threads
(a lock guards it); waiters, timers and futures are kept per loop. Grant times are on
one clock across loops (`_loops.SharedClock`): the event loop's own time on the first
loop, carried on to the next. Waiters of different loops compete for one window; the
order between them is the order in which their loops get there. When a loop closes,
its waiters and in-flight places are forgotten; a permit of a closed loop releases
nothing. `snapshot()` works outside any loop.
"""

from __future__ import annotations

import abc
import asyncio
import math
from collections.abc import Awaitable, Mapping
from typing import Any

import attrs

from ._exceptions import ValidationError
from ._loops import PerLoop, SharedClock
from ._types import BUCKETS, PRIORITIES, Bucket, Priority
from ._waitqueue import Permit, Places, Waiter, WaitQueue
from ._window import EPSILON, Window

__all__ = [
    "BUCKETS",
    "PRIORITIES",
    "Bucket",
    "BucketSnapshot",
    "Permit",
    "Priority",
    "RateLimitBackend",
    "RateLimits",
    "ServerFeedback",
]


DEFAULT_MAX_IN_FLIGHT: dict[Bucket, int | None] = {"entity": None, "reports": 4}
DEFAULT_BULK_MAX_WAIT = 60.0


@attrs.frozen
class ServerFeedback:
    """What one response said about the server's rate limit (all optional but status).

    Seconds are relative to the moment `observe()` is called.
    """

    status: int
    retry_after: float | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None


@attrs.frozen
class BucketSnapshot:
    """The state of one bucket at one moment.

    `sent_in_window` counts our grants in the last `period` seconds; `waiting` the
    waiters by priority; `next_slot_in` is how long until the window and the server
    allow the next grant (0 when one may go now; the in-flight cap is not counted);
    `paused_for` is what is left of a server pause (a 429, or `remaining == 0`);
    `server_remaining` is how many more the server's last report allows before it
    resets (None: no report in force); `reserve` how many slots of each window only
    interactive calls may use.
    """

    limit: int
    period: float
    sent_in_window: int
    waiting: dict[str, int]
    next_slot_in: float
    paused_for: float
    in_flight: int = 0
    max_in_flight: int | None = None
    server_remaining: int | None = None
    reserve: int = 0

    @property
    def paused(self) -> bool:
        """Whether the server told us to stop for now."""
        return self.paused_for > 0


class RateLimitBackend(abc.ABC):
    """What the client needs from a limiter; the Redis backend implements it too."""

    @abc.abstractmethod
    async def acquire(
        self,
        bucket: Bucket,
        *,
        priority: Priority = "interactive",
        timeout: float | None = None,
    ) -> Permit:
        """Wait for a slot in `bucket`; raise AcquireTimeoutError after `timeout` s."""

    def try_acquire(self, bucket: Bucket, *, priority: Priority = "interactive") -> Permit | None:
        """A slot now without waiting, or None (then `acquire()` waits for one).

        The client tries this first, so the common case of a free slot costs no
        coroutine. A backend that cannot answer synchronously keeps this default.
        """
        return None

    @abc.abstractmethod
    async def observe(self, bucket: Bucket, feedback: ServerFeedback) -> None:
        """Learn from a response (a 429 pauses the whole bucket)."""

    @abc.abstractmethod
    def snapshot(self) -> dict[str, BucketSnapshot]:
        """The state of every bucket, for dashboards and tests."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_limit(name: str, value: tuple[int, float]) -> tuple[int, float]:
    try:
        limit, period = value
    except (TypeError, ValueError):
        raise ValidationError(name, value, "a (limit, period_seconds) pair") from None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"{name}.limit", limit, "a positive int")
    if not _is_number(period) or not 0 < period < math.inf:
        raise ValidationError(f"{name}.period", period, "a positive number of seconds")
    return limit, float(period)


def _check_in_flight(value: Mapping[str, int | None] | None) -> dict[Bucket, int | None]:
    caps = dict(DEFAULT_MAX_IN_FLIGHT)
    if value is None:
        return caps
    if not isinstance(value, Mapping):
        raise ValidationError("max_in_flight", value, "a mapping of bucket to int or None")
    for key, cap in value.items():
        if key not in BUCKETS:
            raise ValidationError("max_in_flight", key, f"a bucket, one of {BUCKETS}")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValidationError(f"max_in_flight.{key}", cap, "a positive int or None")
        caps[key] = cap
    return caps


def _check_reserve(
    value: Mapping[str, int] | None, limits: Mapping[Bucket, tuple[int, float]]
) -> dict[Bucket, int]:
    reserve: dict[Bucket, int] = {"entity": 0, "reports": 0}
    if value is None:
        return reserve
    if not isinstance(value, Mapping):
        raise ValidationError("reserve", value, "a mapping of bucket to int, e.g. {'reports': 2}")
    for key, count in value.items():
        if key not in BUCKETS:
            raise ValidationError("reserve", key, f"a bucket, one of {BUCKETS}")
        limit = limits[key][0]
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < limit:
            raise ValidationError(
                f"reserve.{key}", count, f"an int from 0 to {limit - 1} (below the limit)"
            )
        reserve[key] = count
    return reserve


class _LocalQueue(WaitQueue):
    """A bucket's waiters in one loop, granted from the in-process `Window`."""

    def __init__(
        self, owner: RateLimits, bucket: Bucket, loop: asyncio.AbstractEventLoop, offset: float
    ) -> None:
        super().__init__(owner, bucket, loop)
        self.window = owner._windows[bucket]
        self.offset = offset  # limiter time = loop time + offset
        self.timer: asyncio.TimerHandle | None = None
        self.give_back = self._give_back

    def now(self) -> float:
        """Limiter time now, on this loop's clock."""
        return self.loop.time() + self.offset

    def earliest(self, bulk: bool) -> float | None:
        return self.window.opens_at(bulk) - self.offset

    def take_now(self, bulk: bool) -> Permit | None:
        """A slot at once if nobody here is queued and the window allows it."""
        if self.queues["interactive"] or self.queues["bulk"]:
            return None
        if not self.places.take():
            return None
        window = self.window
        with window.lock:
            granted = window.take(self.now(), bulk)
        if granted is None:
            self.places.put_back()
            return None
        return self.permit(granted, self.give_back)

    def pump(self) -> None:
        loop = self.loop
        window = self.window
        places = self.places
        interactive, bulk_queue = self.queues["interactive"], self.queues["bulk"]
        while True:
            first = self._head("interactive") if interactive else None
            bulk = self._head("bulk") if bulk_queue else None
            if (first is None and bulk is None) or (
                places.cap is not None and places.count >= places.cap
            ):  # nobody, or a release will pump again
                self._disarm()
                return
            # The next to serve, then the one to try if it may not go yet.
            heads: tuple[tuple[Priority, Waiter | None], ...]
            if bulk is None or (
                first is not None and not self._bulk_first(bulk, first, loop.time())
            ):
                heads = (("interactive", first), ("bulk", bulk))
            else:
                heads = (("bulk", bulk), ("interactive", first))
            chosen: tuple[Priority, Waiter] | None = None
            granted: float | None = None
            due = math.inf
            with window.lock:
                now = loop.time() + self.offset
                for priority, waiter in heads:
                    if waiter is None:
                        continue
                    granted = window.take(now, waiter.bulk)
                    if granted is not None:
                        chosen = priority, waiter
                        break
                    due = min(due, window.opens_at(waiter.bulk))
            if chosen is None or granted is None:
                self._arm(due - self.offset)
                return
            if not places.take():  # another loop took the last place meanwhile
                with window.lock:
                    window.give_back(granted)
                self._disarm()
                return
            self.serve(*chosen, self.permit(granted, self.give_back))

    def _give_back(self, permit: Permit) -> None:
        with self.window.lock:
            self.window.give_back(permit.granted_at)

    def _arm(self, when: float) -> None:
        timer = self.timer
        if timer is not None:
            if timer.when() == when:
                return
            timer.cancel()
        self.timer = self.loop.call_at(when, self._on_timer)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        self.pump()

    def drop(self) -> None:
        self.timer = None  # its loop is closed: nothing to cancel
        super().drop()



class _QueuedLimits(RateLimitBackend):
    """What every backend on the one wait queue shares: the options, the in-flight
    places, a queue per bucket and event loop, and the shape of `acquire`."""

    def __init__(
        self,
        entity: tuple[int, float],
        reports: tuple[int, float],
        max_in_flight: Mapping[str, int | None] | None,
        bulk_max_wait: float,
        reserve: Mapping[str, int] | None,
    ) -> None:
        self.entity = _check_limit("entity", entity)
        self.reports = _check_limit("reports", reports)
        self.max_in_flight = _check_in_flight(max_in_flight)
        self.reserve = _check_reserve(reserve, {"entity": self.entity, "reports": self.reports})
        if not _is_number(bulk_max_wait) or not 0 <= bulk_max_wait < math.inf:
            raise ValidationError("bulk_max_wait", bulk_max_wait, "a number of seconds >= 0")
        self.bulk_max_wait = float(bulk_max_wait)
        self._places: dict[Bucket, Places] = {b: Places(self.max_in_flight[b]) for b in BUCKETS}
        self._loops: PerLoop[dict[Bucket, Any]] = PerLoop(self._make_queues, _drop_queues)

    def _limit(self, bucket: Bucket) -> tuple[int, float]:
        return self.entity if bucket == "entity" else self.reports

    @abc.abstractmethod
    def _make_queues(self, loop: asyncio.AbstractEventLoop) -> dict[Bucket, Any]:
        """A wait queue per bucket, for a loop that uses us for the first time."""

    @abc.abstractmethod
    def _try_now(self, queue: Any, priority: Priority) -> Permit | None:
        """A slot at once without waiting, or None."""

    @abc.abstractmethod
    def _wait(self, queue: Any, priority: Priority, timeout: float | None) -> Awaitable[Permit]:
        """Wait for a slot, the arguments checked and no slot free at once."""

    def _queue(self, bucket: Bucket) -> Any:
        queues = self._loops.get()
        try:
            return queues[bucket]
        except (KeyError, TypeError):
            raise ValidationError("bucket", bucket, f"one of {BUCKETS}") from None

    async def acquire(
        self,
        bucket: Bucket,
        *,
        priority: Priority = "interactive",
        timeout: float | None = None,
    ) -> Permit:
        """Wait for a slot in `bucket`, interactive work first.

        Raises `AcquireTimeoutError` when no slot came within `timeout` seconds
        (`None`: wait as long as it takes), and at once when the window or a server
        pause keeps every slot beyond the deadline; its `next_slot_in` says when the
        next one is. A wait that times out, fails or is cancelled sends nothing.
        """
        queue = self._queue(bucket)
        if priority not in PRIORITIES:
            raise ValidationError("priority", priority, f"one of {PRIORITIES}")
        if timeout is not None and (not _is_number(timeout) or not timeout >= 0):
            raise ValidationError("timeout", timeout, "None or a number of seconds >= 0")
        permit = self._try_now(queue, priority)
        if permit is not None:
            return permit
        return await self._wait(queue, priority, timeout)

    def _pause(self, bucket: Bucket, feedback: ServerFeedback) -> float | None:
        """How long a response stops the whole bucket: a 429 for `Retry-After`, else
        `X-RateLimit-Reset`, else one slot interval; None for any other response."""
        if feedback.status != 429:
            return None
        for seconds in (feedback.retry_after, feedback.reset_after):
            if seconds is not None:
                return max(seconds, 0.0)
        limit, period = self._limit(bucket)
        return period / limit

    def _snapshot(
        self,
        bucket: Bucket,
        *,
        sent_in_window: int,
        next_slot_in: float,
        paused_for: float,
        server_remaining: int | None,
    ) -> BucketSnapshot:
        """A bucket's snapshot: the backend's figures, with the live queues and places."""
        queues = [qs[bucket] for loop, qs in self._loops.items() if not loop.is_closed()]
        limit, period = self._limit(bucket)
        return BucketSnapshot(
            limit=limit,
            period=period,
            sent_in_window=sent_in_window,
            waiting={
                p: sum(sum(1 for w in q.queues[p] if not w.future.done()) for q in queues)
                for p in PRIORITIES
            },
            next_slot_in=next_slot_in if next_slot_in > EPSILON else 0.0,
            paused_for=max(paused_for, 0.0),
            in_flight=self._places[bucket].count,
            max_in_flight=self._places[bucket].cap,
            server_remaining=server_remaining,
            reserve=self.reserve[bucket],
        )


class RateLimits(_QueuedLimits):
    """Fathom's two buckets, kept exactly in this process.

    `entity` and `reports` are `(limit, period_seconds)`; raise them if Fathom
    support raised yours. `max_in_flight` caps concurrent requests per bucket, e.g.
    `{"reports": 2}`; `None` means no cap (defaults: reports 4, entity no cap).
    `bulk_max_wait` is how many seconds a bulk waiter waits before it is served
    ahead of interactive calls that came after it (aging; default 60).
    `reserve` keeps slots for interactive calls: with `{"reports": 2}`, bulk work
    gets at most 8 of the 10 report slots in any minute, however long its backlog,
    so a dashboard's call never waits behind an export for long.

    Share one instance between clients of the same Fathom user: the limits are per
    user, not per token (`FathomClient` without `rate_limits=` does that for clients
    of one token). Make it anywhere and use it from any event loop, one after
    another or at once from several threads.
    """

    def __init__(
        self,
        entity: tuple[int, float] = (2000, 3600),
        reports: tuple[int, float] = (10, 60),
        *,
        max_in_flight: Mapping[str, int | None] | None = None,
        bulk_max_wait: float = DEFAULT_BULK_MAX_WAIT,
        reserve: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(entity, reports, max_in_flight, bulk_max_wait, reserve)
        self._clock = SharedClock()
        self._windows: dict[Bucket, Window] = {
            bucket: Window(*self._limit(bucket), self.reserve[bucket]) for bucket in BUCKETS
        }

    def __repr__(self) -> str:
        reserve = "" if not any(self.reserve.values()) else f", reserve={self.reserve!r}"
        return (
            f"RateLimits(entity={self.entity!r}, reports={self.reports!r},"
            f" max_in_flight={self.max_in_flight!r}, bulk_max_wait={self.bulk_max_wait!r}"
            f"{reserve})"
        )

    def _make_queues(self, loop: asyncio.AbstractEventLoop) -> dict[Bucket, _LocalQueue]:
        offset = self._clock.offset(loop)
        return {bucket: _LocalQueue(self, bucket, loop, offset) for bucket in BUCKETS}

    def _try_now(self, queue: _LocalQueue, priority: Priority) -> Permit | None:
        return queue.take_now(priority == "bulk")

    def _wait(
        self, queue: _LocalQueue, priority: Priority, timeout: float | None
    ) -> Awaitable[Permit]:
        if timeout is not None and timeout <= 0:
            raise queue.timed_out(timeout, bulk=priority == "bulk")
        return queue.wait(priority, timeout)

    def try_acquire(self, bucket: Bucket, *, priority: Priority = "interactive") -> Permit | None:
        """A slot now if one is free and nobody is queued ahead; else None."""
        queue: _LocalQueue = self._queue(bucket)
        if priority not in PRIORITIES:
            raise ValidationError("priority", priority, f"one of {PRIORITIES}")
        return queue.take_now(priority == "bulk")

    async def observe(self, bucket: Bucket, feedback: ServerFeedback) -> None:
        """Learn from a response: a 429 pauses the bucket, a low `remaining` is trusted."""
        queue: _LocalQueue = self._queue(bucket)
        window = queue.window
        pause = self._pause(bucket, feedback)
        with window.lock:
            now = queue.now()
            if pause is not None:
                window.pause(now, pause)
            if feedback.remaining is not None:
                window.trust_server(now, feedback.remaining, feedback.reset_after)
        queue.wake()  # waiters' timers move to the new opening

    def snapshot(self) -> dict[str, BucketSnapshot]:
        """Each bucket's window, queues, pause and in-flight count, now."""
        current = self._loops.peek()
        result: dict[str, BucketSnapshot] = {}
        for bucket, window in self._windows.items():
            now = current[bucket].now() if current is not None else self._clock.now()
            with window.lock:
                paused_until = window.paused_until
                budget = window.budget_in_force(now)
                if budget is not None and budget <= 0:
                    paused_until = max(paused_until, window.budget_until)
                result[bucket] = self._snapshot(
                    bucket,
                    sent_in_window=window.sent_in_window(now),
                    next_slot_in=window.opens_at(False) - now,
                    paused_for=paused_until - now,
                    server_remaining=budget,
                )
        return result


def _drop_queues(queues: Mapping[Bucket, WaitQueue]) -> None:
    for queue in queues.values():
        queue.drop()
