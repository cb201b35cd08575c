"""Client-side rate limiting: the two Fathom buckets, in process.

Fathom allows `limit` requests per `period` seconds per bucket (entity: 2000/3600 s,
reports: 10/60 s), counted per Fathom user. We keep an exact sliding window: the send
times of the last `limit` grants. A new grant is allowed at time t only when fewer
than `limit` grants lie in (t - period, t], i.e. when the oldest of the last `limit`
grants is at least `period` old. Then every window of length `period`, aligned or
not, holds at most `limit` sends, which is safe whatever way the server counts.

This module never does HTTP: the client calls `acquire()` before a request and
`observe()` with what the response said.
"""

from __future__ import annotations

import abc
import asyncio
import collections
from typing import Literal

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
BUCKETS: tuple[Bucket, ...] = ("entity", "reports")
PRIORITIES: tuple[Priority, ...] = ("interactive", "bulk")


@attrs.frozen
class ServerFeedback:
    """What one response said about the server's rate limit (all optional but status)."""

    status: int
    retry_after: float | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None


@attrs.frozen
class BucketSnapshot:
    """The state of one bucket at one moment (loop time)."""

    limit: int
    period: float
    sent_in_window: int
    waiting: dict[str, int]
    next_slot_in: float
    paused_for: float


class Permit:
    """A granted slot. `release()` frees the in-flight place; the window slot stays used."""

    __slots__ = ("_released",)

    def __init__(self) -> None:
        self._released = False

    def release(self) -> None:
        self._released = True


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

    @abc.abstractmethod
    async def observe(self, bucket: Bucket, feedback: ServerFeedback) -> None:
        """Learn from a response (a 429 pauses the whole bucket)."""

    @abc.abstractmethod
    def snapshot(self) -> dict[str, BucketSnapshot]:
        """The state of every bucket, for dashboards and tests."""


def _check_limit(name: str, value: tuple[int, float]) -> tuple[int, float]:
    try:
        limit, period = value
    except (TypeError, ValueError):
        raise ValidationError(name, value, "a (limit, period_seconds) pair") from None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"{name}.limit", limit, "a positive int")
    if isinstance(period, bool) or not isinstance(period, (int, float)) or not period > 0:
        raise ValidationError(f"{name}.period", period, "a positive number of seconds")
    return limit, float(period)


class _Window:
    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self.sent: collections.deque[float] = collections.deque(maxlen=limit)
        self.lock = asyncio.Lock()
        self.paused_until = 0.0
        self.waiting = dict.fromkeys(PRIORITIES, 0)

    def delay(self, now: float) -> float:
        wait = self.paused_until - now
        if len(self.sent) == self.limit:
            wait = max(wait, self.sent[0] + self.period - now)
        return max(wait, 0.0)


class RateLimits(RateLimitBackend):
    """Fathom's two buckets, kept exactly in this process.

    Share one instance between clients of the same Fathom user: the limits are per
    user, not per token. The asyncio objects are made on first use, in the loop
    that uses them.
    """

    def __init__(
        self,
        entity: tuple[int, float] = (2000, 3600),
        reports: tuple[int, float] = (10, 60),
    ) -> None:
        self.entity = _check_limit("entity", entity)
        self.reports = _check_limit("reports", reports)
        self._windows: dict[Bucket, _Window] | None = None

    def __repr__(self) -> str:
        return f"RateLimits(entity={self.entity!r}, reports={self.reports!r})"

    def _window(self, bucket: Bucket) -> _Window:
        if self._windows is None:
            self._windows = {"entity": _Window(*self.entity), "reports": _Window(*self.reports)}
        return self._windows[bucket]

    async def acquire(
        self,
        bucket: Bucket,
        *,
        priority: Priority = "interactive",
        timeout: float | None = None,
    ) -> Permit:
        window = self._window(bucket)
        loop = asyncio.get_running_loop()
        window.waiting[priority] += 1
        try:
            async with asyncio.timeout(timeout):
                async with window.lock:
                    while (delay := window.delay(loop.time())) > 0:
                        await asyncio.sleep(delay)
                    window.sent.append(loop.time())
        except TimeoutError:
            raise AcquireTimeoutError(bucket, timeout or 0.0) from None
        finally:
            window.waiting[priority] -= 1
        return Permit()

    async def observe(self, bucket: Bucket, feedback: ServerFeedback) -> None:
        if feedback.status != 429:
            return
        window = self._window(bucket)
        now = asyncio.get_running_loop().time()
        pause = feedback.retry_after if feedback.retry_after is not None else feedback.reset_after
        if pause is None:
            pause = window.period / window.limit
        window.paused_until = max(window.paused_until, now + pause)

    def snapshot(self) -> dict[str, BucketSnapshot]:
        now = asyncio.get_running_loop().time()
        result = {}
        for bucket in BUCKETS:
            window = self._window(bucket)
            result[bucket] = BucketSnapshot(
                limit=window.limit,
                period=window.period,
                sent_in_window=sum(1 for t in window.sent if t > now - window.period),
                waiting=dict(window.waiting),
                next_slot_in=window.delay(now),
                paused_for=max(window.paused_until - now, 0.0),
            )
        return result
