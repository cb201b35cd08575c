"""The exact sliding window of one bucket, kept in process: *when* may a grant happen.

Fathom allows `limit` requests per `period` seconds per bucket, counted per Fathom
user, and how the server draws its windows is unknown. So we keep the one guarantee
that is safe against fixed, aligned and sliding windows alike: **every** half-open
window `[s, s + period)` holds at most `limit` of our grants.

How the guarantee is kept
-------------------------
The window remembers the times of its last `limit` grants, oldest first
(`g[0] <= ... <= g[limit-1]`). A new grant at time `t` is allowed only when fewer than
`limit` grants are remembered, or when `t >= g[0] + period`. Suppose some window
`[s, s + period)` held `limit + 1` grants; call the last of them `t`. When `t` was
granted, the `limit` grants before it were the remembered ones, all `>= s`, so
`g[0] >= s` and `t < s + period <= g[0] + period`: the rule forbade `t`. So no window
holds more than `limit`. The rule is also as loose as possible: a grant before
`g[0] + period` would put `limit + 1` grants into `[g[0], g[0] + period)`. So a burst
of `limit` goes at once, the `(limit + 1)`-th at exactly `g[0] + period` (reports: 10
at t=0, the 11th at t=60, not at t=6), and a backlog drains at exactly `limit` per
`period`.

Reserved slots: with `reserve = r`, a **bulk** grant is allowed only when the last
`limit - r` grants (of any priority) leave room, i.e. the same rule with `limit - r`.
So bulk work holds at most `limit - r` grants in any window, and the last `r` places of
every window stay free for interactive calls, which use the whole `limit`.

Comparisons allow 1 ns (`EPSILON`) for float rounding: `g[0] + period` is rarely
exactly representable, and asyncio itself runs a timer up to its clock resolution
early. A nanosecond is far below any network jitter.

What the server says: a 429 pauses the whole bucket until `paused_until`; a report of
`remaining = r` allows at most `r` more grants until it resets (bulk: `r - reserve`).
A report whose reset is no later than the one in force is about the same server
period (or late), and the stricter `r` wins; a later reset replaces it. A report
without a reset holds for one period from its arrival and never loosens one in force
(responses to requests in flight together arrive in any order): the fewer remaining
and the later end are kept.

Times are in the limiter's own clock (see `_clock`). Several event loops, in several
threads, may share one window: every method that reads and changes it takes the lock,
and a grant is recorded no earlier than the one before it, so the history stays in
order whichever thread's clock read came first. This module never sleeps, waits or
touches asyncio.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading

__all__ = ["EPSILON", "Window"]

#: Float slack in time comparisons (see the module docstring).
EPSILON = 1e-9


class Window:
    """One bucket's grant history, server pause and server budget."""

    __slots__ = (
        "budget", "budget_until", "limit", "lock", "paused_until", "period", "reserve", "sent",
    )

    def __init__(self, limit: int, period: float, reserve: int = 0) -> None:
        self.limit = limit
        self.period = period
        self.reserve = reserve
        # The last `limit` grant times, oldest first.
        self.sent: collections.deque[float] = collections.deque(maxlen=limit)
        self.paused_until = -math.inf
        # What the server's `remaining` allows until `budget_until` (None: no report).
        self.budget: int | None = None
        self.budget_until = -math.inf
        self.lock = threading.Lock()

    # -- reading (callers hold the lock, or accept a racy answer) ------------------------

    def opens_at(self, bulk: bool) -> float:
        """When the window and the server allow the next grant (may be in the past)."""
        due = self.paused_until
        room = self.limit - self.reserve if bulk else self.limit
        budget = self.budget
        if budget is not None and budget - (self.reserve if bulk else 0) <= 0:
            due = max(due, self.budget_until)
        sent = self.sent
        if len(sent) >= room:
            due = max(due, sent[-room] + self.period)
        return due

    def sent_in_window(self, now: float) -> int:
        start = now - self.period + EPSILON
        return sum(1 for t in self.sent if t > start)

    def budget_in_force(self, now: float) -> int | None:
        if self.budget is not None and now + EPSILON < self.budget_until:
            return self.budget
        return None

    # -- changing (callers hold the lock) --------------------------------------------------

    def take(self, now: float, bulk: bool) -> float | None:
        """Grant now if allowed: the recorded grant time, else None."""
        if now + EPSILON < self.opens_at(bulk):
            return None
        sent = self.sent
        if sent and sent[-1] > now:
            now = sent[-1]  # another thread's clock read came later: keep the order
        sent.append(now)
        if self.budget is not None:
            if now + EPSILON >= self.budget_until:
                self.budget = None  # the server's period is over
            else:
                self.budget -= 1
        return now

    def record(self, granted_at: float) -> None:
        """Count a grant made elsewhere (a shared limiter's, before falling back here)."""
        sent = self.sent
        if sent and granted_at < sent[-1]:
            merged = sorted([*sent, granted_at])
            sent.clear()
            sent.extend(merged[-self.limit:])
        else:
            sent.append(granted_at)

    def give_back(self, granted_at: float) -> None:
        """Undo a grant that was never used: its slot comes back.

        Appending it may have pushed out the oldest time, but that one was at least
        `period` old then, so it no longer counts in any window that matters. A server
        budget is not credited back, which can only make us more careful.
        """
        with contextlib.suppress(ValueError):  # only if `limit` grants came in between
            self.sent.remove(granted_at)

    def pause(self, now: float, seconds: float) -> None:
        self.paused_until = max(self.paused_until, now + max(seconds, 0.0))

    def trust_server(self, now: float, remaining: int, reset_after: float | None) -> None:
        """The server says only `remaining` more requests fit until it resets."""
        until = now + (self.period if reset_after is None else max(reset_after, 0.0))
        remaining = max(remaining, 0)
        in_force = self.budget is not None and now + EPSILON < self.budget_until
        if self.budget is not None and in_force:
            if reset_after is None:
                # A report without a reset cannot say it is newer (responses to
                # requests in flight together arrive in any order): both hold, so
                # keep the fewer and the later end.
                remaining = min(remaining, self.budget)
                until = max(until, self.budget_until)
            elif until <= self.budget_until + EPSILON:
                # The same server period, or a late response: the stricter report.
                remaining = min(remaining, self.budget)
                until = self.budget_until
        self.budget = remaining
        self.budget_until = until
