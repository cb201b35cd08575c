"""Client-side rate limiting: Fathom's two buckets, kept exactly, in process.

Fathom allows `limit` requests per `period` seconds per bucket (entity: 2000 per
3600 s, reports: 10 per 60 s), counted per Fathom user. How the server draws its
windows is unknown, so we keep the one guarantee that is safe against fixed, aligned
and sliding windows alike: **every** half-open window `[s, s + period)` holds at most
`limit` of our sends. This module never does HTTP: the client calls `acquire()`
before a request, `Permit.release()` when it is done, and `observe()` with what the
response said. It must never sleep on its own or poll.

How the guarantee is kept (an exact sliding window of grant times)
------------------------------------------------------------------
Each bucket remembers the times of its last `limit` grants, oldest first
(`g[0] <= ... <= g[limit-1]`). A new grant at time `t` is allowed only when fewer
than `limit` grants are remembered, or when `t >= g[0] + period`. Suppose some
window `[s, s + period)` held `limit + 1` grants; call the last of them `t`. When `t`
was granted, the `limit` grants before it were the remembered ones, all `>= s`, so
`g[0] >= s` and `t < s + period <= g[0] + period`: the rule forbade `t`. So no window
holds more than `limit`. The rule is also as loose as possible: a grant before
`g[0] + period` would put `limit + 1` grants into `[g[0], g[0] + period)`. So a burst
of `limit` goes at once, the `(limit + 1)`-th goes at exactly `g[0] + period`
(reports: 10 at t=0, the 11th at t=60, not at t=6), and a backlog drains at exactly
`limit` per `period` (30 queued reports calls: 10 each at t=0, 60 and 120).

Comparisons allow 1 ns (`_EPSILON`) for float rounding: `g[0] + period` is rarely
exactly representable, and asyncio itself runs a timer up to its clock resolution
early. A nanosecond is far below any network jitter.

Waiting is done without polling: waiters queue as futures (one FIFO per priority),
and each bucket has at most one timer (`loop.call_at`), set for the moment its head
waiter may go: `max(g[0] + period, end of any server pause)`. When it fires, every
waiter the window allows is granted, in order, and the timer is set again. A waiter
costs one future and one queue entry; a grant costs O(1).

Why aiolimiter's `AsyncLimiter(10, 60)` lets 19 through in one window
---------------------------------------------------------------------
`AsyncLimiter(max_rate, time_period)` is a leaky bucket: it holds up to `max_rate`
units and drains continuously at `max_rate / time_period` per second. Start empty:
10 acquisitions go at t=0 (level 10). The level then drains one unit every
60 / 10 = 6 s, so one more acquisition goes at t = 6, 12, ..., 54: 9 more. The window
`[0, 60)` holds 10 + 9 = 19. In general a token bucket bounds a window of length `T`
by `capacity + rate * T`, here `10 + (10 / 60) * 60 = 20` (19 inside a half-open
window): about twice the limit. `AsyncLimiter(100, 1)` lets 199 into one 1 s window.
Making it safe needs `capacity + rate * period <= limit`, e.g. capacity 1 and a
6.67 s drip: no bursts, and the 11th call waits for a drip instead of the window.

Where aiolimiter is used: nowhere in this module. Its semantics (a smoothed rate with
a bounded burst) are right for a limit defined as a drip; Fathom's is defined per
window. The exact window needs the grant times, which a token bucket throws away;
the in-flight cap is a counter, not a rate; and priorities, FIFO order and server
pauses need a queue that aiolimiter does not expose.

What the server says (`observe`)
--------------------------------
- A 429 pauses the **whole** bucket: no waiter is granted until `Retry-After`
  (else `X-RateLimit-Reset`) seconds from now; with neither, for one slot interval
  (`period / limit`). A 429 alone does not fill our window: it may come from the
  unpublished concurrency cap rather than from the window.
- `remaining = r` (until `reset_after`, else for one `period`): we trust the server,
  since other processes and tokens of the same user spend the same budget. Until the
  reset we grant at most `r` more, on top of our own window; so `remaining == 0`
  with `reset_after` pauses the bucket until then. When the server says *more*
  remain than our window allows, our window still rules: the server has not seen
  our in-flight requests yet. Responses may arrive out of order: a report whose
  reset is no later than the one in force is about the same server period (or
  late), and the stricter `r` wins; a report with a later reset is newer and
  replaces it.
- `limit` is not used: configure raised limits in `RateLimits(...)`.

Priorities and aging
--------------------
Interactive waiters go before bulk ones, FIFO within each priority. A bulk waiter
that has waited `bulk_max_wait` seconds (default 60) is served as if it were
interactive, in arrival order; so bulk work waits at most `bulk_max_wait` plus the
interactive work that arrived before it.

Loops and clocks
----------------
Nothing asyncio is made in `__init__`: the limiter binds to the running loop on first
use, and several clients may share one instance in that loop. Grant times are loop
times (`loop.time()`, which is `time.monotonic()` for asyncio's loops), so when the
bound loop is closed and another loop uses the limiter, the history is kept and the
waiters and in-flight places of the old loop are forgotten. Using one instance from
two live loops at once raises `RuntimeError`. `snapshot()` works outside a loop: it
reads the bound loop's clock, or `time.monotonic()` before first use.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import functools
import math
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Literal, get_args

import attrs

from ._exceptions import AcquireTimeoutError, ValidationError

__all__ = [
    "Bucket",
    "BucketSnapshot",
    "Permit",
    "Priority",
    "RateLimitBackend",
    "RateLimits",
    "ServerFeedback",
]

Bucket = Literal["entity", "reports"]
Priority = Literal["interactive", "bulk"]
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)
PRIORITIES: tuple[Priority, ...] = get_args(Priority)

#: Float slack in time comparisons (see the module docstring).
_EPSILON = 1e-9
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
    resets (None: no report in force).
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

    @property
    def paused(self) -> bool:
        """Whether the server told us to stop for now."""
        return self.paused_for > 0


class Permit:
    """A granted slot. `release()` frees the in-flight place; the window slot stays used.

    Release it when the request is done (`finally`, or `async with permit:`).
    Releasing twice is harmless. A backend passes `on_release` to learn of it.
    """

    __slots__ = ("_on_release", "_on_revoke", "bucket", "granted_at")

    def __init__(
        self,
        bucket: Bucket | None = None,
        granted_at: float = 0.0,
        on_release: Callable[[], None] | None = None,
        on_revoke: Callable[[], None] | None = None,
    ) -> None:
        self.bucket = bucket
        self.granted_at = granted_at
        self._on_release = on_release
        self._on_revoke = on_revoke

    @property
    def released(self) -> bool:
        return self._on_release is None

    def release(self) -> None:
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            on_release()

    def revoke(self) -> None:
        """Give back a grant that was never used: its window slot returns too.

        For a request that was not sent after all. A backend that cannot take a
        slot back only frees the in-flight place, as `release()` does.
        """
        on_revoke, self._on_revoke = self._on_revoke, None
        if on_revoke is not None and self._on_release is not None:
            on_revoke()
        else:
            self.release()

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Permit {self.bucket} granted_at={self.granted_at:.6f} {state}>"


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


class _Waiter:
    __slots__ = ("arrived", "future", "seq")

    def __init__(self, future: asyncio.Future[Permit | None], seq: int, arrived: float) -> None:
        self.future = future  # result: a Permit, or None when the wait timed out
        self.seq = seq
        self.arrived = arrived


class _BucketState:
    """One bucket: its window, server pause and budget, in-flight count, queues, timer."""

    def __init__(
        self,
        name: Bucket,
        limit: int,
        period: float,
        max_in_flight: int | None,
        bulk_max_wait: float,
    ) -> None:
        self.name: Bucket = name
        self.limit = limit
        self.period = period
        self.max_in_flight = max_in_flight
        self.bulk_max_wait = bulk_max_wait
        # The last `limit` grant times, oldest first (see the module docstring).
        self.sent: collections.deque[float] = collections.deque(maxlen=limit)
        # A 429 stops every grant until `paused_until`.
        self.paused_until = -math.inf
        # What the server's `remaining` allows until `budget_until` (None: no report).
        self.budget: int | None = None
        self.budget_until = -math.inf
        self.in_flight = 0
        # Bumped when the bound loop closes, so that loop's permits release nothing.
        self.epoch = 0
        # OrderedDicts: FIFO, and O(1) removal of a waiter that gave up.
        self.queues: dict[Priority, collections.OrderedDict[_Waiter, None]] = {
            p: collections.OrderedDict() for p in PRIORITIES
        }
        self.seq = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -- the window and the server ------------------------------------------------

    def opens_at(self) -> float:
        """When the window and the server allow the next grant (may be in the past)."""
        due = self.paused_until
        if self.budget is not None and self.budget <= 0:
            due = max(due, self.budget_until)
        if len(self.sent) == self.limit:
            due = max(due, self.sent[0] + self.period)
        return due

    def sent_in_window(self, now: float) -> int:
        start = now - self.period + _EPSILON
        return sum(1 for t in self.sent if t > start)

    def capped(self) -> bool:
        return self.max_in_flight is not None and self.in_flight >= self.max_in_flight

    def can_grant(self, now: float) -> bool:
        return not self.capped() and now + _EPSILON >= self.opens_at()

    def grant(self, now: float) -> Permit:
        self.sent.append(now)
        self.in_flight += 1
        if self.budget is not None:
            if now + _EPSILON >= self.budget_until:
                self.budget = None  # the server's period is over
            else:
                self.budget -= 1
        permit = Permit(self.name, now)
        permit._on_release = functools.partial(self.on_release, self.epoch)
        permit._on_revoke = functools.partial(self.revoke, permit)
        return permit

    def on_release(self, epoch: int) -> None:
        if epoch != self.epoch:  # granted in a loop that is closed now
            return
        self.in_flight -= 1
        loop = self.loop
        if loop is not None and not loop.is_closed() and self.waiting():
            self.dispatch()  # with nobody waiting there is nothing to grant

    def revoke(self, permit: Permit) -> None:
        """Undo a grant whose task was cancelled before it could use it.

        The window slot comes back. A server budget (`remaining`) is not credited
        back, which can only make us more careful.
        """
        permit._on_release = None
        self.in_flight -= 1
        # Appending it may have pushed out the oldest time, but that one was at least
        # `period` old then, so it no longer counts in any window that matters.
        with contextlib.suppress(ValueError):  # only if `limit` grants came in between
            self.sent.remove(permit.granted_at)
        self.dispatch()

    def pause(self, now: float, seconds: float) -> None:
        self.paused_until = max(self.paused_until, now + max(seconds, 0.0))

    def trust_server(self, now: float, remaining: int, reset_after: float | None) -> None:
        """The server says only `remaining` more requests fit until it resets."""
        until = now + (self.period if reset_after is None else max(reset_after, 0.0))
        remaining = max(remaining, 0)
        in_force = self.budget is not None and now + _EPSILON < self.budget_until
        if self.budget is not None and in_force and until <= self.budget_until + _EPSILON:
            # The same server period, or a late response: keep the stricter report.
            # (A later reset means a newer report, which replaces the old one.)
            remaining = min(remaining, self.budget)
            until = self.budget_until
        self.budget = remaining
        self.budget_until = until

    def budget_in_force(self, now: float) -> int | None:
        if self.budget is not None and now + _EPSILON < self.budget_until:
            return self.budget
        return None

    # -- the queues -----------------------------------------------------------------

    def waiting(self) -> int:
        return len(self.queues["interactive"]) + len(self.queues["bulk"])

    def _head(self, priority: Priority) -> _Waiter | None:
        queue = self.queues[priority]
        while queue:
            waiter = next(iter(queue))
            if not waiter.future.done():
                return waiter
            del queue[waiter]  # cancelled: its task has not run its cleanup yet
        return None

    def next_waiter(self, now: float) -> tuple[Priority, _Waiter] | None:
        """Interactive first; a bulk waiter aged `bulk_max_wait` competes as interactive."""
        first = self._head("interactive")
        bulk = self._head("bulk")
        if bulk is not None and (
            first is None
            or (now - bulk.arrived + _EPSILON >= self.bulk_max_wait and bulk.seq < first.seq)
        ):
            return "bulk", bulk
        if first is not None:
            return "interactive", first
        return None

    def dispatch(self) -> None:
        """Grant every waiter the window allows now, then set the timer for the next."""
        loop = self.loop
        assert loop is not None
        now = loop.time()
        while (head := self.next_waiter(now)) is not None:
            priority, waiter = head
            if self.capped():  # a release will dispatch again
                break
            if not self.can_grant(now):
                self._arm(loop, self.opens_at())
                return
            del self.queues[priority][waiter]
            waiter.future.set_result(self.grant(now))
        self._disarm()

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self.timer is not None:
            if self.timer.when() == when:
                return
            self.timer.cancel()
        self.timer = loop.call_at(when, self._on_timer)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        self.dispatch()

    def time_out(self, priority: Priority, waiter: _Waiter) -> None:
        if waiter.future.done():
            return
        self.queues[priority].pop(waiter, None)
        waiter.future.set_result(None)
        self.dispatch()

    # -- loops ------------------------------------------------------------------------

    def busy(self) -> bool:
        return self.in_flight > 0 or self.waiting() > 0

    def forget_loop(self) -> None:
        """The bound loop is gone: so are its waiters, timer and in-flight requests."""
        for queue in self.queues.values():
            queue.clear()
        self.timer = None
        self.in_flight = 0
        self.epoch += 1


class RateLimits(RateLimitBackend):
    """Fathom's two buckets, kept exactly in this process.

    `entity` and `reports` are `(limit, period_seconds)`; raise them if Fathom
    support raised yours. `max_in_flight` caps concurrent requests per bucket, e.g.
    `{"reports": 2}`; `None` means no cap (defaults: reports 4, entity no cap).
    `bulk_max_wait` is how many seconds a bulk waiter waits before it is served as
    interactive (aging; default 60).

    Share one instance between clients of the same Fathom user: the limits are per
    user, not per token. The asyncio objects are made on first use, in the loop
    that uses them.
    """

    def __init__(
        self,
        entity: tuple[int, float] = (2000, 3600),
        reports: tuple[int, float] = (10, 60),
        *,
        max_in_flight: Mapping[str, int | None] | None = None,
        bulk_max_wait: float = DEFAULT_BULK_MAX_WAIT,
    ) -> None:
        self.entity = _check_limit("entity", entity)
        self.reports = _check_limit("reports", reports)
        self.max_in_flight = _check_in_flight(max_in_flight)
        if not _is_number(bulk_max_wait) or not 0 <= bulk_max_wait < math.inf:
            raise ValidationError("bulk_max_wait", bulk_max_wait, "a number of seconds >= 0")
        self.bulk_max_wait = float(bulk_max_wait)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._states: dict[Bucket, _BucketState] = {
            "entity": _BucketState(
                "entity", *self.entity, self.max_in_flight["entity"], self.bulk_max_wait
            ),
            "reports": _BucketState(
                "reports", *self.reports, self.max_in_flight["reports"], self.bulk_max_wait
            ),
        }

    def __repr__(self) -> str:
        return (
            f"RateLimits(entity={self.entity!r}, reports={self.reports!r},"
            f" max_in_flight={self.max_in_flight!r}, bulk_max_wait={self.bulk_max_wait!r})"
        )

    def _state(self, bucket: Bucket) -> tuple[_BucketState, asyncio.AbstractEventLoop]:
        try:
            state = self._states[bucket]
        except (KeyError, TypeError):
            raise ValidationError("bucket", bucket, f"one of {BUCKETS}") from None
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._bind(loop)
        return state, loop

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        old = self._loop
        if old is not None:
            if not old.is_closed() and any(s.busy() for s in self._states.values()):
                raise RuntimeError(
                    "this RateLimits is in use by another event loop; share one"
                    " instance only between clients in the same loop"
                )
            for state in self._states.values():
                state.forget_loop()
        self._loop = loop
        for state in self._states.values():
            state.loop = loop

    async def acquire(
        self,
        bucket: Bucket,
        *,
        priority: Priority = "interactive",
        timeout: float | None = None,
    ) -> Permit:
        """Wait for a slot in `bucket`, interactive work first.

        Raises `AcquireTimeoutError` when no slot came within `timeout` seconds
        (`None`: wait as long as it takes). A wait that times out or is cancelled
        consumes nothing.
        """
        state, loop = self._state(bucket)
        if priority not in PRIORITIES:
            raise ValidationError("priority", priority, f"one of {PRIORITIES}")
        if timeout is not None and (not _is_number(timeout) or not timeout >= 0):
            raise ValidationError("timeout", timeout, "None or a number of seconds >= 0")
        now = loop.time()
        if not state.waiting() and state.can_grant(now):
            return state.grant(now)
        if timeout is not None and timeout <= 0:
            raise AcquireTimeoutError(bucket, timeout)

        future: asyncio.Future[Permit | None] = loop.create_future()
        state.seq += 1
        waiter = _Waiter(future, state.seq, now)
        queue = state.queues[priority]
        queue[waiter] = None
        timer = (
            None
            if timeout is None
            else loop.call_at(now + timeout, state.time_out, priority, waiter)
        )
        try:
            state.dispatch()
            permit = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                granted = future.result()
                if granted is not None:  # granted, but the task was cancelled first
                    state.revoke(granted)
            else:
                future.cancel()
                if queue.pop(waiter, False) is None:
                    state.dispatch()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if permit is None:
            raise AcquireTimeoutError(bucket, float(timeout or 0))
        return permit

    def try_acquire(self, bucket: Bucket, *, priority: Priority = "interactive") -> Permit | None:
        """A slot now if one is free and nobody is queued ahead; else None."""
        state, loop = self._state(bucket)
        if priority not in PRIORITIES:
            raise ValidationError("priority", priority, f"one of {PRIORITIES}")
        now = loop.time()
        if not state.waiting() and state.can_grant(now):
            return state.grant(now)
        return None

    async def observe(self, bucket: Bucket, feedback: ServerFeedback) -> None:
        """Learn from a response: a 429 pauses the bucket, a low `remaining` is trusted."""
        state, loop = self._state(bucket)
        now = loop.time()
        if feedback.status == 429:
            pause = feedback.retry_after
            if pause is None:
                pause = feedback.reset_after
            if pause is None:
                pause = state.period / state.limit
            state.pause(now, pause)
        if feedback.remaining is not None:
            state.trust_server(now, feedback.remaining, feedback.reset_after)
        if state.waiting():
            state.dispatch()

    def snapshot(self) -> dict[str, BucketSnapshot]:
        """Each bucket's window, queues, pause and in-flight count, now."""
        loop = self._loop
        now = loop.time() if loop is not None else time.monotonic()
        result: dict[str, BucketSnapshot] = {}
        for name, state in self._states.items():
            opens_in = state.opens_at() - now
            paused_until = state.paused_until
            budget = state.budget_in_force(now)
            if budget is not None and budget <= 0:
                paused_until = max(paused_until, state.budget_until)
            result[name] = BucketSnapshot(
                limit=state.limit,
                period=state.period,
                sent_in_window=state.sent_in_window(now),
                waiting={p: len(q) for p, q in state.queues.items()},
                next_slot_in=opens_in if opens_in > _EPSILON else 0.0,
                paused_for=max(paused_until - now, 0.0),
                in_flight=state.in_flight,
                max_in_flight=state.max_in_flight,
                server_remaining=budget,
            )
        return result
