"""The server's rate limits: exact sliding windows per account, and a concurrency cap.

Two buckets, as the API documents them: `entity` (2000 requests an hour: account,
token, sites, events, milestones) and `reports` (10 a minute: aggregations and
current visitors), counted per account so that several tokens of one user share
them. A request is counted when it is let through; a refused one is not. Report
requests are also capped in flight (aggregations are slow on the real server).

Time comes from an injectable clock (the event loop's by default, so tests under
looptime run an hour in no time); `time_scale` shortens every period by that factor.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BUCKETS", "Bucket", "Decision", "RateLimiter"]

Bucket = Literal["entity", "reports"]

# bucket -> (limit, period in seconds)
BUCKETS: dict[Bucket, tuple[int, float]] = {"entity": (2000, 3600.0), "reports": (10, 60.0)}


@dataclass(frozen=True)
class Decision:
    """The outcome of one check: allowed or not, and what the headers say."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int = 0

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
            headers["X-RateLimit-Reset"] = str(self.retry_after)
        return headers


class RateLimiter:
    """Sliding-window limits per (account, bucket), and an in-flight cap on reports."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        time_scale: float = 1.0,
        entity_limit: int = BUCKETS["entity"][0],
        report_limit: int = BUCKETS["reports"][0],
        report_concurrency: int = 5,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.clock = clock
        self.time_scale = time_scale
        self.limits: dict[Bucket, tuple[int, float]] = {
            "entity": (entity_limit, BUCKETS["entity"][1] / time_scale),
            "reports": (report_limit, BUCKETS["reports"][1] / time_scale),
        }
        self.report_concurrency = report_concurrency
        self._hits: dict[tuple[int, Bucket], deque[float]] = {}
        self._in_flight: dict[int, int] = {}

    def hit(self, account_id: int, bucket: Bucket) -> Decision:
        """Count one request if the window has room; otherwise say when it will."""
        limit, period = self.limits[bucket]
        now = self.clock()
        hits = self._hits.setdefault((account_id, bucket), deque())
        while hits and hits[0] <= now - period:
            hits.popleft()
        if len(hits) >= limit:
            wait = hits[0] + period - now
            return Decision(False, limit, 0, max(1, math.ceil(wait)))
        hits.append(now)
        return Decision(True, limit, limit - len(hits))

    def used(self, account_id: int, bucket: Bucket) -> int:
        """How many requests the current window holds (for tests and the demo)."""
        _, period = self.limits[bucket]
        now = self.clock()
        return sum(1 for t in self._hits.get((account_id, bucket), ()) if t > now - period)

    def try_start_report(self, account_id: int) -> bool:
        """Take an in-flight report slot, or False when the cap is reached."""
        if self._in_flight.get(account_id, 0) >= self.report_concurrency:
            return False
        self._in_flight[account_id] = self._in_flight.get(account_id, 0) + 1
        return True

    def end_report(self, account_id: int) -> None:
        """A report of this account finished: it no longer counts toward the concurrency cap."""
        self._in_flight[account_id] -= 1

    def in_flight(self, account_id: int) -> int:
        """How many reports of this account are being answered now."""
        return self._in_flight.get(account_id, 0)

    def reset(self) -> None:
        """Forget every counted request."""
        self._hits.clear()
