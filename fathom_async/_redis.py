"""The rate-limit scheduler on Redis: one exact budget for many processes and hosts.

`RedisRateLimits` keeps the guarantee of `RateLimits` (see `_window`) across every
process that shares a `key`: in every half-open window `[s, s + period)` of a bucket,
at most `limit` grants, counted in **Redis's clock** (`TIME`), so clock skew between
hosts cannot break it. It never does HTTP and never polls: each process asks Redis
only when its queue head may go, and sleeps exactly until a time Redis named. The
waiters themselves (priorities, aging, reservation, deadlines, cancellation, the
in-flight cap) are `_waitqueue`'s, the same queue the in-process limiter uses; this
module only decides *when* Redis grants.

How the guarantee is kept (one Lua script, reservations called turns)
---------------------------------------------------------------------
Per bucket, Redis holds a sorted set of the grant times of the last `period`
(microseconds of Redis time; members made unique by a counter; trimmed by time, not
by count, so a grant given back never uncovers an older one that still counts), a
sorted set of *turns* (promises of a
future slot, one per waiting process and loop), and a hash with the server's pause
and budget. One Lua script (`_redis_limits.lua`, shipped with the package; `EVALSHA`,
loaded again on `NOSCRIPT`) decides atomically, with `now = TIME`:

- a grant at `now` is allowed by the in-process rule: fewer than `limit` grants are
  remembered, or `now >= g + period` for the `limit`-th latest grant `g`; and no
  server pause or exhausted budget is in force. A bulk grant uses `limit - reserve`
  instead, so `reserve` slots of every window stay for interactive calls. Only times
  at which the script granted enter the set, in Redis's clock, so the proof in
  `_window` carries over.
- a process asks for the waiters that may go, as a string of classes in serving order
  (`I` interactive, `B` bulk, `A` bulk that waited `bulk_max_wait`), with the most
  it may let go (its in-flight cap); it gets those the window allows at `now`, and
  when one is left over a **turn** of the class that was short: the exact time its
  next slot is due, counting the turns already promised to others. Turns are the line, with
  the in-process order across processes: an interactive grant waits only behind
  interactive turns, so bulk turns never keep it from the reserve; a bulk grant waits
  behind every turn. A newcomer may not take a slot promised to a process already
  waiting in its line; the holder of a turn keeps its place in its line. Aged bulk
  work (`A`) stands in the interactive line, limited like bulk, so it keeps its place
  across processes too and is never starved; fresh bulk turns yield to both. When
  aged bulk work fills a call, the first interactive waiter is asked for as well, so
  the reserve serves it as in process.
- the process sleeps until its turn (measured from when the reply arrived, so it
  never wakes before Redis's clock reaches it), then asks again with its ticket: the
  script grants the turn if the window, pause and budget still allow it, and in the
  same call grants more or hands out the next turn. Under contention that is one
  round trip per grant.
- a turn must not outlive its reason: when nobody here waits for it any more (the
  waiters left, timed out or failed their deadline), or an interactive turn is left
  to bulk waiters only, the process gives it up (or trades it for a bulk turn) at
  once, and `aclose()` gives up every turn of the instance once its drivers have
  stopped (tickets are named per process: a forked child renews the name, so it never
  gives up its siblings' turns). A turn nobody confirms,
  a crashed process's, expires `_TURN_GRACE` seconds after it was due.
- no jitter: a turn is a promise of one slot to one process, not a race.

Why not pyrate-limiter's Redis bucket or `limits`' storage: both answer "yes" or
"no" now, and a caller told "no" must poll; a turn names the exact time, so sleepers
wake once, in order.

`Permit.granted_at` is the Redis time (seconds since the epoch) at which the script
granted. The request goes out when the reply arrives, a network hop later.

Within a process
----------------
Each event loop has its own queue per bucket, its own Redis connection
(`_redis_client.RedisConnector`) and one task per bucket (the driver) that talks to
Redis for all its waiters, so round trips are per loop and per slot, not per waiter.
Until its first answer a process does not know the window; once it does, waiters
whose deadline comes before the earliest slot of their class fail at once, with
`next_slot_in`, as in `RateLimits`.
`max_in_flight` is a **per-process** cap, not shared through Redis. `stats()` counts
round trips (script calls, `NOSCRIPT` reloads included) and grants.

What the server says (`observe`)
--------------------------------
The rules of `RateLimits`, kept in Redis so every process obeys them: a 429 pauses
the bucket for all (`Retry-After`, else `X-RateLimit-Reset`, else one slot interval,
from Redis's `now`); `remaining = r` allows at most `r` more grants until the reset.
Feedback that cannot reach Redis is kept and sent with the next call.

When Redis is unreachable (`on_unavailable`)
--------------------------------------------
- `"fail"` (default): fail closed. Every `acquire` waiting in this process raises
  `RateLimiterUnavailableError` (a `FathomError`), before any request is sent; the
  next `acquire` tries Redis again. Permits already granted are unaffected.
- `"local"`: fall back to an in-process window with the same limits, with a
  `RuntimeWarning` (once per instance) and a log record (each time). The fallback
  starts from this process's own last `limit` grants (Redis's times mapped onto the
  local clock) and the last server pause it saw, so **a process never grants more
  than `limit` in any window, counting its grants before and after the switch**; `N`
  processes apart from each other send at most `N * limit` in a window, and one
  process alone never more than `limit`. Every `retry_interval` seconds one probe
  tries Redis again; when it answers, this process switches back and sends the grants
  it made meanwhile, so the shared window counts them.

When Redis restarts and loses its data: every process remembers its own last `limit`
grant times and the last pause it saw. The script stores a generation (the Redis time
at which the state was created); a process that finds a generation other than the one
it knew re-seeds its history before it is granted anything. In the window that holds
the restart, grants decided before every active process has re-seeded may exceed
`limit`, by at most the grants of the processes not yet re-seeded; windows that start
after every process has re-seeded are exact. Run Redis with persistence to avoid it.

`snapshot()` is synchronous: Redis's figures as of the last round trip, aged by the
local clock; waiting and in-flight counts are live. It never blocks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import hashlib
import importlib.resources
import itertools
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from ._exceptions import FathomError, ValidationError
from ._logging import warn_caller
from ._loops import Beacon
from ._redis_client import RedisConnector
from ._scheduler import (
    BUCKETS,
    DEFAULT_BULK_MAX_WAIT,
    Bucket,
    BucketSnapshot,
    Permit,
    Priority,
    RateLimits,
    ServerFeedback,
    _is_number,
    _QueuedLimits,
)
from ._waitqueue import Waiter, WaitQueue

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RateLimiterUnavailableError", "RedisRateLimits"]

logger = logging.getLogger("fathom_async.redis")
T = TypeVar("T")


def _detached(
    loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, T]
) -> asyncio.Task[T]:
    """A background task with a context of its own: it outlives the call that started
    it, so none of that call's context (its trace span, its call record) goes with it."""
    return contextvars.Context().run(loop.create_task, work)

OnUnavailable = Literal["fail", "local"]
ON_UNAVAILABLE: tuple[OnUnavailable, ...] = get_args(OnUnavailable)

#: How long a promised turn waits for its holder before it is given up.
_TURN_GRACE = 2.0
#: How early a turn is confirmed; the grant is recorded at the turn itself and the
#: permit handed over then, so a process that wakes late loses no slot.
_EARLY = 0.05
_US = 1_000_000

_SCRIPT = importlib.resources.files(__package__).joinpath("_redis_limits.lua").read_text()
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


class RateLimiterUnavailableError(FathomError):
    """Redis, which holds the shared rate limits, could not be reached; nothing was sent.

    Raised by `acquire` when `on_unavailable="fail"` (the default). `bucket` names the
    bucket and `reason` what went wrong. Retry later, or pass `on_unavailable="local"`
    to fall back to in-process limits.
    """

    def __init__(self, bucket: str, reason: str) -> None:
        self.bucket = bucket
        self.reason = reason
        super().__init__(
            f"the shared rate limiter (Redis) is unavailable, so no slot in the {bucket!r}"
            f" bucket was granted and the request was not sent: {reason}"
        )


class _Unavailable(Exception):
    """Internal: a call to Redis failed."""


#: A waiter's result when this process fell back to local limits meanwhile.
_LOCAL: Any = object()


class _Reply:
    """What one call of the script said (times in microseconds of Redis time).

    `lost` is True when Redis had a generation we did not know (it lost its state):
    then nothing was decided and only `now` and `gen` are filled in.
    """

    __slots__ = (
        "budget", "budget_until", "gen", "granted_at", "in_window", "lost", "now", "opens_at",
        "opens_bulk_at", "pause", "turn", "turn_class",
    )

    def __init__(self, raw: Sequence[bytes | str | int]) -> None:
        self.gen = _text(raw[2])
        self.lost = int(raw[0]) != 0
        # Per position asked for: the grant time, or 0 for no grant.
        self.granted_at: list[int] = []
        # The class of the turn promised ("I", "A" or "B"), "" for none.
        self.turn_class = ""
        if self.lost:
            numbers = [int(raw[1]), 0, 0, -1, 0, 0, 0, 0]
        else:
            self.granted_at = [int(t) for t in _text(raw[3]).split()]
            numbers = [int(v) for v in (raw[1], *raw[4:11])]
            self.turn_class = _text(raw[11])
        (
            self.now, self.turn, self.pause, budget, self.budget_until, self.in_window,
            self.opens_at, self.opens_bulk_at,
        ) = numbers
        self.budget: int | None = None if budget < 0 else budget

    @property
    def granted(self) -> int:
        return sum(1 for t in self.granted_at if t)


class _Lane:
    """One bucket in this process, shared by its loops: keys, history, last reply."""

    def __init__(
        self, name: Bucket, limit: int, period: float, reserve: int, keys: tuple[str, ...]
    ) -> None:
        self.name: Bucket = name
        self.limit = limit
        self.period = period
        self.period_us = round(period * _US)
        self.reserve = reserve
        self.keys = keys
        self.lock = threading.Lock()
        self.known_gen = ""
        # Our own recent grant times (Redis us), to re-seed a Redis that lost them.
        self.history: collections.deque[int] = collections.deque(maxlen=limit)
        self.pending_seeds: list[int] = []  # grants made while Redis was away
        self.pending_pause = 0  # a pause observed while Redis was away (Redis us)
        self.reply: _Reply | None = None
        self.reply_at = 0.0  # time.monotonic() when `reply` arrived
        self.used = False  # asked Redis for grants: we may hold turns there

    def redis_now(self) -> float:
        """Redis time now (seconds), estimated from the last reply and the local clock."""
        reply = self.reply
        if reply is None:
            return time.time()
        return reply.now / _US + (time.monotonic() - self.reply_at)


class _RedisQueue(WaitQueue):
    """A bucket's waiters in one loop, granted by the script through this loop's driver."""

    def __init__(
        self, owner: RedisRateLimits, bucket: Bucket, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(owner, bucket, loop)
        self.lane = owner._lanes[bucket]
        self.owner = owner
        self.driver: asyncio.Task[None] | None = None
        self.ticket: str | None = None  # our turn in Redis's line, while we hold one
        # The class of that turn: "I" interactive, "B" bulk, "A" bulk that waited
        # `bulk_max_wait` (in the interactive line, limited like bulk).
        self.turn_for = "I"
        self.nudge: asyncio.Future[None] | None = None  # set: stop sleeping, ask now
        self.refunds: list[int] = []  # grants nobody used, to give back

    def turn_stale(self) -> bool:
        """Whether our turn stands in others' way for nobody here: give it up now.

        A turn nobody here waits for, or an interactive turn left to bulk waiters,
        would hold back other processes' interactive calls until it came.
        """
        if self.ticket is None:
            return False
        if self._head("interactive") is not None:
            return False
        return self.turn_for == "I" or self._head("bulk") is None

    def ask_again(self, asked: int) -> bool:
        """Whether to ask Redis again at once rather than sleep until our turn.

        Yes when the turn is stale, or when it is a bulk turn (aged or not) and an interactive call
        came after the waiter numbered `asked` (while we asked): the reserve may serve
        it now. One that was there already was asked for, or left out by the
        in-flight cap, and a release pumps again. And yes when a `timeout=0` waiter
        came meanwhile: its first answer may not wait for our turn.
        """
        if self.turn_stale():
            return True
        if any(w.once for queue in self.queues.values() for w in queue):
            return True  # timeout=0 came meanwhile: its answer is the next call's
        head = self._head("interactive")
        return self.turn_for != "I" and head is not None and head.seq > asked

    def pump(self) -> None:
        owner = self.owner
        nudge = self.nudge
        if (
            nudge is not None
            and not nudge.done()
            and (
                self.turn_stale()
                # the reserve may serve an interactive call before the bulk turn comes
                or (self.turn_for != "I" and self._head("interactive") is not None)
            )
        ):
            nudge.set_result(None)
        if (
            self.driver is None
            and not owner._closing
            and (self.wanted() or self.refunds)
            and not self.loop.is_closed()
        ):
            self.driver = _detached(self.loop, owner._drive(self))

    def earliest(self, bulk: bool) -> float | None:
        reply = self.lane.reply
        if reply is None or self.refunds:  # unknown, or about to change
            return None
        opens = (reply.opens_bulk_at if bulk else reply.opens_at) / _US
        return self.loop.time() + (opens - self.lane.redis_now())

    def wanted(self) -> int:
        """How many grants to ask Redis for: live waiters, within the in-flight cap."""
        n = min(self.waiting(), self.lane.limit)
        free = self.places.free()
        return max(n if free is None else min(n, free), 0)

    def to_ask(self, now: float) -> tuple[list[tuple[Priority, Waiter]], int]:
        """The waiters to ask Redis for, in serving order, and how many may go at most.

        When bulk waiters aged past `bulk_max_wait` fill the call, the first interactive
        waiter is asked for too: if bulk's share is spent, the reserve serves it, as in
        process (`RateLimits`).
        """
        most = self.wanted()
        order = self.ordered(now, most)
        first = self._head("interactive")
        if order and first is not None and all(waiter is not first for _, waiter in order):
            order.append(("interactive", first))
        return order, most

    def give_back(self, permit: Permit) -> None:
        granted_us = round(permit.granted_at * _US)
        with self.lane.lock, contextlib.suppress(ValueError):
            self.lane.history.remove(granted_us)
        self.refunds.append(granted_us)

    def drop(self) -> None:
        self.driver = None
        self.ticket = None
        super().drop()


class RedisRateLimits(_QueuedLimits):
    """Fathom's two buckets, kept exactly across every process sharing `key` on Redis.

    `url_or_client` is a Redis URL (`"redis://host:6379/0"`; a client is made per
    event loop on first use and closed by `aclose()`) or a `redis.asyncio.Redis` you
    own (used in the loop it belongs to, never closed here). `key` names the budget:
    use one per Fathom user (e.g. the account id); every process sharing it must use
    the same `entity`, `reports` and `reserve`. `max_in_flight` and `bulk_max_wait`
    are as in `RateLimits`, per process; `reserve` keeps slots of every window for
    interactive calls across all processes. `on_unavailable` is `"fail"` (raise
    `RateLimiterUnavailableError`) or `"local"` (fall back to in-process limits that
    start from this process's own recent grants, trying Redis again every
    `retry_interval` seconds). `connect_timeout` and `socket_timeout` bound each
    call to Redis when the client is made from a URL.

    Make it anywhere and use it from any event loop, one after another or at once
    from several threads. Needs the `redis` extra: `pip install fathom-async[redis]`.
    """

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        key: str,
        entity: tuple[int, float] = (2000, 3600),
        reports: tuple[int, float] = (10, 60),
        max_in_flight: Mapping[str, int | None] | None = None,
        bulk_max_wait: float = DEFAULT_BULK_MAX_WAIT,
        reserve: Mapping[str, int] | None = None,
        on_unavailable: OnUnavailable = "fail",
        retry_interval: float = 1.0,
        connect_timeout: float = 2.0,
        socket_timeout: float = 5.0,
    ) -> None:
        if isinstance(url_or_client, str) and not url_or_client:
            raise ValidationError("url_or_client", url_or_client, "a Redis URL or client")
        if not isinstance(url_or_client, str) and not callable(
            getattr(url_or_client, "evalsha", None)
        ):
            raise ValidationError(
                "url_or_client", url_or_client, "a Redis URL or a redis.asyncio.Redis"
            )
        if not isinstance(key, str) or not key:
            raise ValidationError("key", key, "a non-empty string naming the shared budget")
        if on_unavailable not in ON_UNAVAILABLE:
            raise ValidationError("on_unavailable", on_unavailable, f"one of {ON_UNAVAILABLE}")
        if not _is_number(retry_interval) or not 0 < retry_interval < math.inf:
            raise ValidationError("retry_interval", retry_interval, "a positive number of seconds")
        super().__init__(entity, reports, max_in_flight, bulk_max_wait, reserve)
        self.key = key
        self.on_unavailable: OnUnavailable = on_unavailable
        self.retry_interval = float(retry_interval)
        self._connector = RedisConnector(
            url_or_client, connect_timeout=connect_timeout, socket_timeout=socket_timeout
        )
        # Tickets name turns in Redis: unique per process (a forked child renews the
        # id, so it neither overwrites its siblings' turns nor gives them up).
        self._pid = os.getpid()
        self._id = secrets.token_hex(6)
        self._tickets = itertools.count(1)
        self._sha = _SCRIPT_SHA
        prefix = f"fathom_async:{{{key}}}"
        self._lanes: dict[Bucket, _Lane] = {}
        for bucket in BUCKETS:
            keys = (
                f"{prefix}:{bucket}:grants",
                f"{prefix}:{bucket}:turns",
                f"{prefix}:{bucket}:state",
                f"{prefix}:generation",
            )
            self._lanes[bucket] = _Lane(bucket, *self._limit(bucket), self.reserve[bucket], keys)
        # Falling back to in-process limits (on_unavailable="local"): the fallback and
        # the event set when Redis answers again; None while on Redis.
        self._fallback: RateLimits | None = None
        self._back: Beacon | None = None
        self._prober: asyncio.Task[None] | None = None
        self._warned = False
        self._closing = False
        self._last_reason = ""
        self._round_trips = 0
        self._grants = 0
        self._local_grants = 0
        self._reseeds = 0

    def __repr__(self) -> str:
        where = "<url>" if self._connector.owns_clients else "<client>"  # may hold a password
        return (
            f"RedisRateLimits({where}, key={self.key!r}, entity={self.entity!r},"
            f" reports={self.reports!r}, on_unavailable={self.on_unavailable!r})"
        )

    # -- loops --------------------------------------------------------------------------

    def _make_queues(self, loop: asyncio.AbstractEventLoop) -> dict[Bucket, _RedisQueue]:
        return {bucket: _RedisQueue(self, bucket, loop) for bucket in BUCKETS}

    async def aclose(self) -> None:
        """Stop talking to Redis and close the clients made from the URL (if any).

        Works from any event loop. Waiters still queued get
        `RateLimiterUnavailableError` (nothing was sent for them). The instance can be
        used again later.
        """
        self._closing = True
        try:
            here = asyncio.get_running_loop()
            tasks: list[asyncio.Task[None]] = []
            if self._prober is not None and self._prober.get_loop() is here:
                tasks.append(self._prober)
            away = self._back is not None  # Redis did not answer: no turn to give up
            self._prober = self._back = None
            for loop, queues in self._loops.items():
                for name, queue in queues.items():
                    closed = RateLimiterUnavailableError(name, "the limiter was closed")
                    driver, queue.driver, queue.ticket = queue.driver, None, None
                    if loop is here:
                        queue.settle(closed)
                        if driver is not None:
                            tasks.append(driver)
                    elif not loop.is_closed():
                        with contextlib.suppress(RuntimeError):
                            loop.call_soon_threadsafe(_stop, queue, closed, driver)
            for task in tasks:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            # Left in Redis, our turns would hold others back until they expired. Sent
            # once the drivers have stopped, whatever their last call made (a reply on
            # its way may have named a turn we never learned of). Best effort:
            # unanswered, they still expire after `_TURN_GRACE`.
            if not away:
                with contextlib.suppress(_Unavailable, RuntimeError):
                    await self._leave()
            await self._connector.aclose()
        finally:
            self._closing = False

    close = aclose

    async def __aenter__(self) -> RedisRateLimits:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- talking to Redis -----------------------------------------------------------

    async def _call(self, lane: _Lane, args: Sequence[str | int]) -> _Reply:
        """One run of the script; raise `_Unavailable` when Redis did not answer."""
        from redis.exceptions import ConnectionError, NoScriptError, RedisError

        common: list[str | int] = [
            lane.limit, lane.period_us, round(_TURN_GRACE * _US), lane.known_gen, lane.reserve,
            round(_EARLY * _US),
        ]
        argv = [args[0], *common, *args[1:]]
        try:
            client = self._connector.client()
        except ImportError:
            raise
        for attempt in (1, 2):
            try:
                self._round_trips += 1
                try:
                    raw = await _evalsha(client, self._sha, lane.keys, argv)
                except NoScriptError:  # first use, or Redis restarted: load it once more
                    self._round_trips += 2
                    self._sha = await client.script_load(_SCRIPT)
                    raw = await _evalsha(client, self._sha, lane.keys, argv)
                break
            except ConnectionError as exc:
                # A pooled connection that died with a restarted server fails once;
                # the second try connects afresh. (Had the script run and only the
                # reply been lost, its grants are counted but unused: never over.)
                if attempt == 2:
                    raise _Unavailable(f"{type(exc).__name__}: {exc}") from exc
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                raise _Unavailable(f"{type(exc).__name__}: {exc}") from exc
        reply = _Reply(raw)
        if not reply.lost:
            lane.reply, lane.reply_at = reply, time.monotonic()
        return reply

    async def _take(self, queue: _RedisQueue, classes: str, most: int | None = None) -> _Reply:
        """Confirm our turn (if any), take the grants `classes` ask for (`most` of them at
        most; all by default), a turn if short."""
        lane = queue.lane
        new_ticket = ""
        if classes:
            lane.used = True
            new_ticket = f"{self._ident()}:{next(self._tickets)}"
        seeds = list(lane.pending_seeds)
        refunds = list(queue.refunds)
        full = "0"
        pause = lane.pending_pause
        for attempt in range(2):
            reply = await self._call(
                lane,
                [
                    "take", classes, queue.ticket or "", new_ticket, " ".join(map(str, seeds)),
                    full, pause, " ".join(map(str, refunds)),
                    len(classes) if most is None else most,
                ],
            )
            if not reply.lost:
                break
            # Redis lost its state (a restart): send our whole history, once.
            assert attempt == 0, "Redis lost its state twice in one call"
            self._reseeds += 1
            logger.warning(
                "rate limits on Redis lost their state (key %r, %s); re-seeding %d grants",
                self.key, lane.name, len(lane.history),
            )
            queue.ticket = None
            lane.known_gen = ""
            seeds = list(lane.history)
            full = "1"
            pause = max(pause, lane.reply.pause if lane.reply is not None else 0)
        lane.known_gen = reply.gen
        del lane.pending_seeds[: len(seeds) if full == "0" else len(lane.pending_seeds)]
        lane.pending_pause = 0
        del queue.refunds[: len(refunds)]
        queue.ticket = new_ticket if reply.turn else None
        queue.turn_for = reply.turn_class or "I"
        return reply

    async def _leave(self) -> None:
        """Give up in Redis every turn this instance holds, in any loop (closing)."""
        for lane in self._lanes.values():
            if lane.used:
                await self._call(lane, ["leave", f"{self._ident()}:"])
                lane.used = False

    def _ident(self) -> str:
        """This process's prefix of ticket names, renewed in a forked child."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid, self._id = pid, secrets.token_hex(6)
            self._tickets = itertools.count(1)
        return self._id

    async def _drive(self, queue: _RedisQueue) -> None:
        """Ask Redis for what the queue may use now; sleep until our turn; repeat."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                now = loop.time()
                order, most = queue.to_ask(now)
                if not order and queue.ticket is None and not queue.refunds:
                    return
                classes = "".join(_class_of(queue, waiter, now) for _, waiter in order)
                asked = queue.seq
                reply = await self._take(queue, classes, most)
                self._serve(queue, reply, order, asked)
                if queue.ticket is not None and not queue.ask_again(asked):
                    await self._sleep(queue, max(reply.turn - reply.now, 0) / _US - _EARLY)
        except _Unavailable as exc:
            queue.ticket = None
            self._unavailable(queue, str(exc), loop)
        finally:
            if queue.driver is asyncio.current_task():
                queue.driver = None
            if queue.waiting() and queue.driver is None:
                queue.pump()

    @staticmethod
    async def _sleep(queue: _RedisQueue, seconds: float) -> None:
        """Until our turn, or until `pump()` nudges us (an interactive call came)."""
        loop = queue.loop
        nudge = queue.nudge = loop.create_future()
        timer = loop.call_later(seconds, _wake, nudge)
        try:
            await nudge
        finally:
            timer.cancel()
            queue.nudge = None

    def _serve(
        self,
        queue: _RedisQueue,
        reply: _Reply,
        order: list[tuple[Priority, Waiter]],
        asked: int,
    ) -> None:
        """Hand out what Redis granted to the waiters of `order`; `asked` is the number of
        the last waiter that had come when the call was made."""
        lane = queue.lane
        for index, granted_us in enumerate(reply.granted_at):
            if not granted_us:
                continue
            if index >= len(order):  # more grants than we asked for: give them back
                queue.refunds.append(granted_us)
                continue
            priority, waiter = order[index]
            if (
                waiter.future.done()
                or waiter not in queue.queues[priority]
                or not queue.places.take()
            ):  # the waiter left while we asked: give the slot back
                queue.refunds.append(granted_us)
                continue
            self._grants += 1
            with lane.lock:
                lane.history.append(granted_us)
            queue.serve(priority, waiter, queue.permit(granted_us / _US, queue.give_back))
        # timeout=0: the first answer decides. It was this call's for every such waiter
        # that was there when it was made (asked for, or left out: others were ahead);
        # one that came meanwhile has the next call's, if the next call can ask for it.
        now = queue.loop.time()
        following = {waiter for _, waiter in queue.to_ask(now)[0]}
        for waiter in [w for q in queue.queues.values() for w in q]:
            if waiter.once and (waiter.seq <= asked or waiter not in following):
                queue.end(waiter, queue.timed_out(0.0, bulk=waiter.bulk))
        queue.end_hopeless()  # now we know the window: deadlines it cannot meet fail now
        if queue.refunds and queue.driver is None:
            queue.pump()

    def _unavailable(
        self, queue: _RedisQueue, reason: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        if self.on_unavailable == "fail":
            logger.error("Redis unavailable for rate limits (key %r): %s", self.key, reason)
            queue.settle(RateLimiterUnavailableError(queue.bucket, reason))
            return
        if self._back is None:
            logger.warning(
                "Redis is unavailable (%s); rate limits for key %r fall back to this"
                " process alone until it returns", reason, self.key,
            )
            self._last_reason = reason
            self._fallback = self._seeded_fallback()
            self._back = Beacon()
            self._prober = _detached(loop, self._probe())
        queue.settle(_LOCAL)

    async def _probe(self) -> None:
        """While fallen back: every `retry_interval`, try Redis; when it answers, go back.

        The call sends what this process granted meanwhile (and any pause it saw), so
        the shared window counts it; waiters queued in the fallback are moved back.
        """
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                for bucket in BUCKETS:
                    await self._take(self._queue(bucket), "")
            except _Unavailable:
                continue
            back, self._back, self._prober = self._back, None, None
            assert back is not None
            back.fire()
            logger.warning("Redis is reachable again; shared rate limits (key %r) resume", self.key)
            return

    # -- local fallback ---------------------------------------------------------------

    def _seeded_fallback(self) -> RateLimits:
        """In-process limits that start from this process's own recent grants."""
        fallback = RateLimits(
            self.entity,
            self.reports,
            max_in_flight={str(k): v for k, v in self.max_in_flight.items()},
            bulk_max_wait=self.bulk_max_wait,
            reserve={str(k): v for k, v in self.reserve.items()},
        )
        for bucket, lane in self._lanes.items():
            local = fallback._queue(bucket)  # binds the running loop: its clock is ours
            now = local.now()
            redis_now = lane.redis_now()
            window = local.window
            with window.lock, lane.lock:
                for granted_us in sorted(lane.history):
                    window.record(now - (redis_now - granted_us / _US))
                pause = max(lane.pending_pause, lane.reply.pause if lane.reply else 0) / _US
                if pause > redis_now:
                    window.pause(now, pause - redis_now)
        return fallback

    async def _acquire_local(
        self, lane: _Lane, priority: Priority, timeout: float | None
    ) -> Permit:
        if not self._warned:  # in the caller's task, so a warning filter sees it here
            self._warned = True
            warn_caller(
                f"Redis is unavailable ({self._last_reason}); rate limits for key"
                f" {self.key!r} fall back to this process alone until it returns",
                RuntimeWarning,
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        back = self._back
        fallback = self._fallback
        assert fallback is not None
        local = asyncio.ensure_future(
            fallback.acquire(lane.name, priority=priority, timeout=timeout)
        )
        if back is not None:
            returned = asyncio.ensure_future(back.wait())
            try:
                await asyncio.wait({local, returned}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                returned.cancel()
                if not local.done():  # Redis is back first (or we were cancelled)
                    local.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await local
            if local.cancelled():
                left = None if timeout is None else max(started + timeout - loop.time(), 0.0)
                again: Permit = await self.acquire(lane.name, priority=priority, timeout=left)
                return again
        permit = await local
        granted_us = round(lane.redis_now() * _US)
        with lane.lock:
            lane.history.append(granted_us)
            lane.pending_seeds.append(granted_us)
        self._local_grants += 1
        return Permit(lane.name, granted_us / _US, permit.release)

    # -- the interface ----------------------------------------------------------------

    def _try_now(self, queue: _RedisQueue, priority: Priority) -> Permit | None:
        return None  # only Redis can say, and that takes a round trip

    async def _wait(
        self, queue: _RedisQueue, priority: Priority, timeout: float | None
    ) -> Permit:
        """`acquire()`, shared through Redis.

        `timeout=0` takes a slot only if Redis grants one on the first ask. Raises
        `RateLimiterUnavailableError` when Redis cannot be reached and
        `on_unavailable="fail"`.
        """
        if self._back is not None:
            prober = self._prober
            if prober is None or prober.done() or prober.get_loop().is_closed():
                # The loop that fell back has ended (asyncio.run() returned): probe here.
                self._prober = _detached(queue.loop, self._probe())
            return await self._acquire_local(queue.lane, priority, timeout)
        loop = queue.loop
        started = loop.time()
        if timeout == 0 and (
            queue._head("interactive") is not None
            or (priority == "bulk" and (queue.waiting() or queue.ticket is not None))
            or (queue.ticket is not None and queue.turn_for == "I")
            or queue.places.free() == 0  # the in-flight cap: nothing could be asked for
        ):
            # others are ahead: no first answer is ours
            raise queue.timed_out(0.0, bulk=priority == "bulk")
        result = await queue.wait(priority, timeout)
        if result is _LOCAL:
            left = None if timeout is None else max(started + timeout - loop.time(), 0.0)
            return await self._acquire_local(queue.lane, priority, left)
        permit: Permit = result
        early = permit.granted_at - queue.lane.redis_now()
        if early > 0:  # a turn confirmed early: the slot is ours from its time on
            try:
                await asyncio.sleep(early)
            except asyncio.CancelledError:
                permit.revoke()
                raise
        return permit

    async def observe(self, bucket: Bucket, feedback: ServerFeedback) -> None:
        """Share what a response said: a 429 pauses the bucket for every process.

        Never raises for Redis being away: the feedback is then applied locally and
        sent with the next call that reaches Redis.
        """
        queue = self._queue(bucket)
        lane = queue.lane
        pause = self._pause(bucket, feedback)
        if pause is None and feedback.remaining is None:
            return
        if self._fallback is not None:
            await self._fallback.observe(bucket, feedback)
        if self._back is None:
            reset = feedback.reset_after
            try:
                await self._call(
                    lane,
                    [
                        "observe",
                        -1 if pause is None else round(pause * _US),
                        -1 if feedback.remaining is None else max(feedback.remaining, 0),
                        -1 if reset is None else round(max(reset, 0.0) * _US),
                    ],
                )
                return
            except _Unavailable as exc:
                logger.warning("could not share rate-limit feedback through Redis: %s", exc)
        if pause is not None:
            until = round((lane.redis_now() + pause) * _US)
            lane.pending_pause = max(lane.pending_pause, until)

    def snapshot(self) -> dict[str, BucketSnapshot]:
        """Each bucket as last seen: Redis's figures from the last round trip, aged.

        `sent_in_window` and `server_remaining` are as Redis reported them on the last
        call (all processes); `next_slot_in` and `paused_for` are counted down on the
        local clock since then; `waiting` and `in_flight` are this process's, live.
        While fallen back to in-process limits, the fallback's snapshot is returned.
        """
        if self._back is not None and self._fallback is not None:
            return self._fallback.snapshot()
        result: dict[str, BucketSnapshot] = {}
        for bucket, lane in self._lanes.items():
            reply = lane.reply
            opens_in = paused_for = 0.0
            sent = 0
            remaining: int | None = None
            if reply is not None:
                now = lane.redis_now()
                opens_in = reply.opens_at / _US - now
                paused_until = reply.pause / _US
                if reply.budget is not None and reply.budget_until / _US > now:
                    remaining = reply.budget
                    if remaining <= 0:
                        paused_until = max(paused_until, reply.budget_until / _US)
                paused_for = paused_until - now
                sent = reply.in_window
            result[bucket] = self._snapshot(
                bucket,
                sent_in_window=sent,
                next_slot_in=opens_in,
                paused_for=paused_for,
                server_remaining=remaining,
            )
        return result

    def stats(self) -> dict[str, int]:
        """Counters since creation: Redis round trips, grants made through Redis,
        grants made by the in-process fallback, and re-seeds after Redis lost its state.

        `round_trips / grants` is the cost per granted request.
        """
        return {
            "round_trips": self._round_trips,
            "grants": self._grants,
            "local_grants": self._local_grants,
            "reseeds": self._reseeds,
        }


def _stop(
    queue: _RedisQueue, closed: RateLimiterUnavailableError, driver: asyncio.Task[None] | None
) -> None:
    """In another loop's thread: end its waiters and its driver."""
    queue.settle(closed)
    if driver is not None:
        driver.cancel()


def _class_of(queue: _RedisQueue, waiter: Waiter, now: float) -> str:
    """How the script is asked for a waiter's grant: "I" interactive, "B" bulk, "A" bulk
    that waited `bulk_max_wait` (it keeps its place among interactive calls of every
    process, within the bulk share)."""
    if not waiter.bulk:
        return "I"
    return "A" if queue.aged(waiter, now) else "B"


def _wake(nudge: asyncio.Future[None]) -> None:
    if not nudge.done():
        nudge.set_result(None)


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _evalsha(client: Any, sha: str, keys: Sequence[str], argv: Sequence[str | int]) -> Any:
    """`EVALSHA` on a `redis.asyncio.Redis`, typed loosely on purpose.

    redis-py types its script calls differently from one major version to the next
    (5.x: "a str or an awaitable", and only str arguments), while at run time an
    asyncio client always returns an awaitable and encodes ints itself.
    """
    return client.evalsha(sha, len(keys), *keys, *argv)
