"""The rate-limit scheduler on Redis: one exact budget for many processes and hosts.

`RedisRateLimits` keeps the guarantee of `RateLimits` (see `_scheduler`) across every
process that shares a `key`: in every half-open window `[s, s + period)` of a bucket,
at most `limit` grants, counted in **Redis's clock** (`TIME`), so clock skew between
hosts cannot break it. It never does HTTP and never polls: each process asks Redis
only when its queue head may go, and sleeps exactly until a time Redis named.

How the guarantee is kept (one Lua script, reservations called turns)
---------------------------------------------------------------------
Per bucket, Redis holds a sorted set of the last `limit` grant times (microseconds of
Redis time; members made unique by a counter), a sorted set of *turns* (promises of a
future slot, one per waiting process), and a hash with the server's pause and budget.
One Lua script (`EVALSHA`; on `NOSCRIPT`, e.g. after a restart, it is loaded again)
decides atomically, with `now = TIME`:

- a grant at `now` is allowed by the same rule as in process: fewer than `limit`
  grants are remembered, or `now >= g[0] + period` for the oldest of the last
  `limit`; and no server pause or exhausted budget is in force. The proof in
  `_scheduler` carries over: only times at which the script granted enter the set,
  in Redis's clock, so no window of Redis time holds more than `limit`.
- a process asks for `n` grants at once (its local waiters that may go); it gets
  `k <= n` at `now`, and when `k < n` a **turn**: the exact time its next slot is
  due, counting the turns already promised to others (the `(limit)`-th latest of
  grants plus promises, plus `period`). Turns are the line: a newcomer may not take
  a slot promised to a process already waiting.
- the process sleeps until its turn (measured from when the reply arrived, so it
  never wakes before Redis's clock reaches it), then asks again with its ticket: the
  script grants the turn if the window, pause and budget still allow it, and in the
  same call grants more or hands out the next turn. Under contention that is one
  round trip per grant (confirm the turn and take the next); a lone request that
  must wait costs two. A turn nobody confirms expires after `_TURN_GRACE` seconds.
- no jitter is added: a turn is a promise of one slot to one process, not a race,
  so waking processes do not stampede. Turns can coincide (several processes told
  to come back when a pause ends): those the window allows are granted, the others
  get distinct turns at the back of the line, at most one extra round trip each.

Why not pyrate-limiter's Redis bucket or `limits`' storage: both answer "yes" or
"no" now, and a caller told "no" must poll. pyrate-limiter's `RedisBucket` keeps a
sorted set of timestamps too (exact), but leaves waiting to a retry loop with a
fixed delay and costs several commands per grant (3.7 measured, see the issue);
`limits`' moving window (`acquire_entry`) is a sorted set/list without a wait time,
so callers poll, wake late and together (51-161 commands per grant, 32 sends in one
20/s window). A turn names the exact time, so sleepers wake once, in order.

What a grant time is: `Permit.granted_at` is the Redis time (seconds since the
epoch) at which the script granted. The request goes out when the reply arrives,
a network hop later, as with any remote limiter.

Within a process
----------------
Each bucket has local queues like `RateLimits`: interactive before bulk, FIFO, and a
bulk waiter aged `bulk_max_wait` served as interactive. Only one task per bucket
(the driver) talks to Redis, for as many waiters as may go, so round trips are per
process and per slot, not per waiter. `max_in_flight` is a **per-process** cap (the
in-process defaults: reports 4, entity none); it is not shared through Redis.
`stats()` counts round trips (script calls, `NOSCRIPT` reloads included) and grants.

What the server says (`observe`)
--------------------------------
The rules of `RateLimits`, kept in Redis so every process obeys them: a 429 pauses
the bucket for all (`Retry-After`, else `X-RateLimit-Reset`, else one slot
interval, from Redis's `now`); `remaining = r` allows at most `r` more grants until
the reset (a report with a reset no later than the one in force keeps the stricter
`r`; a later reset replaces it). A turn promised before a 429 is refused when it is
confirmed inside the pause, and given a new turn after it. Feedback that cannot
reach Redis is kept and sent with the next call.

When Redis is unreachable (`on_unavailable`)
--------------------------------------------
- `"fail"` (default): fail closed. Every `acquire` waiting in this process raises
  `RateLimiterUnavailableError` (a `FathomError`), before any request is sent; the
  next `acquire` tries Redis again. Permits already granted are unaffected.
- `"local"`: fall back to an in-process `RateLimits` with the same limits, with a
  `RuntimeWarning` (once per instance) and a log record (each time). Every
  `retry_interval` seconds one acquire tries Redis again; when it answers, this
  process switches back and sends the grants it made meanwhile, so the shared
  window counts them. While apart, each process keeps the limit on its own: `N`
  processes may send up to `N * limit` in a window. In-flight counts are not
  carried across the switch.

When Redis restarts and loses its data: every process remembers its own last
`limit` grant times and the last pause it saw. The script stores a generation
(the Redis time at which the state was created); a process that finds a generation
other than the one it knew re-seeds its history before it is granted anything, so
the window is rebuilt from what the processes remember. What is lost: turns (their
holders ask again), the server budget (`remaining`), and the history of processes
that have not called Redis since the restart. So in the window that holds the
restart, grants decided before every active process has re-seeded may exceed
`limit`, by at most the grants of the processes not yet re-seeded (at most `limit`
in all); windows that start after every process has re-seeded are exact. No request
is lost: a waiter whose call failed either raises (fail) or goes local, and a turn
that vanished is asked for again. Run Redis with persistence to avoid even that.

Loops: the Redis client is made on first use, in the running loop (from a URL), and
closed by `aclose()` (or `async with`); a client passed in is never closed here.
`snapshot()` is synchronous, so it reports the state from the last round trip,
aged by the local clock; waiting and in-flight counts are live. It must never block.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import hashlib
import logging
import math
import secrets
import time
import warnings
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Literal, get_args

from ._exceptions import AcquireTimeoutError, FathomError, ValidationError
from ._scheduler import (
    _EPSILON,
    BUCKETS,
    DEFAULT_BULK_MAX_WAIT,
    PRIORITIES,
    Bucket,
    BucketSnapshot,
    Permit,
    Priority,
    RateLimitBackend,
    RateLimits,
    ServerFeedback,
    _check_in_flight,
    _check_limit,
    _is_number,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RateLimiterUnavailableError", "RedisRateLimits"]

logger = logging.getLogger("fathom_async.redis")

OnUnavailable = Literal["fail", "local"]
ON_UNAVAILABLE: tuple[OnUnavailable, ...] = get_args(OnUnavailable)

#: How long a promised turn waits for its holder before it is given up.
_TURN_GRACE = 2.0
_US = 1_000_000

_SCRIPT = """
local G, T, S, GEN = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local known = ARGV[5]
local function fmt(x) return string.format('%.0f', x) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local gen = redis.call('GET', GEN)
if not gen then
  gen = fmt(now)
  redis.call('SET', GEN, gen)
end
local function field(name)
  local v = redis.call('HGET', S, name)
  if v then return tonumber(v) end
  return nil
end
local pause = field('pause') or 0
local budget = field('budget')
local budget_until = field('until') or 0
if budget and now >= budget_until then
  budget = nil
  redis.call('HDEL', S, 'budget', 'until')
end
local function window_at()
  local card = redis.call('ZCARD', G)
  if card < limit then return 0 end
  local row = redis.call('ZRANGE', G, card - limit, card - limit, 'WITHSCORES')
  return tonumber(row[2]) + period
end
local function blocked_at(promised)
  local at = pause
  if budget and budget - promised <= 0 and budget_until > at then at = budget_until end
  return at
end
local function line_at(q)
  local card = redis.call('ZCARD', G)
  local idx = card + q - limit
  if idx < 0 then return 0 end
  local row
  if idx < card then
    row = redis.call('ZRANGE', G, idx, idx, 'WITHSCORES')
  else
    row = redis.call('ZRANGE', T, idx - card, idx - card, 'WITHSCORES')
  end
  return tonumber(row[2]) + period
end
local granted, turn = 0, 0
if op == 'take' then
  local n = tonumber(ARGV[6])
  local ticket, new_ticket = ARGV[7], ARGV[8]
  local seeds, full, seed_pause = ARGV[9], ARGV[10] == '1', tonumber(ARGV[11])
  if known ~= '' and known ~= gen and not full then
    return {1, now, gen}
  end
  if seeds ~= '' then
    local seq = redis.call('HINCRBY', S, 'seq', 1)
    local i = 0
    for v in string.gmatch(seeds, '%d+') do
      local t = tonumber(v)
      if t > now - period then
        i = i + 1
        redis.call('ZADD', G, fmt(t), 's' .. seq .. ':' .. i)
      end
    end
    redis.call('ZREMRANGEBYRANK', G, 0, -(limit + 1))
  end
  if seed_pause > pause then
    pause = seed_pause
    redis.call('HSET', S, 'pause', fmt(pause))
  end
  for r in string.gmatch(ARGV[12], '%d+') do
    local row = redis.call('ZRANGEBYSCORE', G, r, r, 'LIMIT', 0, 1)
    if row[1] then redis.call('ZREM', G, row[1]) end
  end
  redis.call('ZREMRANGEBYSCORE', T, '-inf', '(' .. fmt(now - grace))
  local holder = ticket ~= '' and redis.call('ZREM', T, ticket) == 1
  local q = redis.call('ZCARD', T)
  while granted < n do
    local at = math.max(window_at(), blocked_at(0))
    if not (holder and granted == 0) then
      at = math.max(at, line_at(q), blocked_at(q))
    end
    if at > now then break end
    redis.call('ZADD', G, fmt(now), 'g' .. redis.call('HINCRBY', S, 'seq', 1))
    redis.call('ZREMRANGEBYRANK', G, 0, -(limit + 1))
    if budget then budget = budget - 1 end
    granted = granted + 1
  end
  if granted < n and new_ticket ~= '' then
    turn = math.max(window_at(), blocked_at(0), line_at(q), blocked_at(q), now)
    redis.call('ZADD', T, fmt(turn), new_ticket)
  end
  if budget then redis.call('HSET', S, 'budget', fmt(budget)) end
  local keep = math.ceil((period + grace) / 1000) + 1000
  redis.call('PEXPIRE', G, keep)
  if redis.call('ZCARD', T) > 0 then redis.call('PEXPIRE', T, keep) end
else
  local pause_for, remaining, reset = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  if pause_for >= 0 and now + pause_for > pause then
    pause = now + pause_for
    redis.call('HSET', S, 'pause', fmt(pause))
  end
  if remaining >= 0 then
    local reset_at = now + period
    if reset >= 0 then reset_at = now + reset end
    if budget and reset_at <= budget_until then
      remaining = math.min(remaining, budget)
      reset_at = budget_until
    end
    budget, budget_until = remaining, reset_at
    redis.call('HSET', S, 'budget', fmt(budget), 'until', fmt(budget_until))
  end
end
local last = math.max(pause, budget_until, now + period + grace)
redis.call('PEXPIRE', S, math.ceil((last - now) / 1000) + 1000)
local in_window = redis.call('ZCOUNT', G, '(' .. fmt(now - period), '+inf')
return {0, now, gen, granted, turn, pause, budget or -1, budget_until, in_window,
        math.max(window_at(), blocked_at(0))}
"""
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


class _Signal(enum.Enum):
    TIMEOUT = "timeout"
    LOCAL = "local"


class _Reply:
    """What one call of the script said (times in microseconds of Redis time).

    `lost` is True when Redis had a generation we did not know (it lost its state):
    then nothing was decided and only `now` and `gen` are filled in.
    """

    __slots__ = (
        "budget", "budget_until", "gen", "granted", "in_window", "lost", "now", "opens_at",
        "pause", "turn",
    )

    def __init__(self, raw: Sequence[bytes | str | int]) -> None:
        gen = raw[2]
        self.gen = gen.decode() if isinstance(gen, bytes) else str(gen)
        self.lost = int(raw[0]) != 0
        if self.lost:
            numbers = [int(raw[1]), 0, 0, 0, -1, 0, 0, 0]
        else:
            numbers = [int(v) for v in (raw[1], *raw[3:10])]
        (
            self.now, self.granted, self.turn, self.pause, budget, self.budget_until,
            self.in_window, self.opens_at,
        ) = numbers
        self.budget: int | None = None if budget < 0 else budget


class _Waiter:
    __slots__ = ("arrived", "future", "one_shot", "seq")

    def __init__(
        self, future: asyncio.Future[Permit | _Signal], seq: int, arrived: float, one_shot: bool
    ) -> None:
        self.future = future
        self.seq = seq
        self.arrived = arrived
        self.one_shot = one_shot  # timeout=0: one answer from Redis, then give up


class _Lane:
    """One bucket in this process: local queues, in-flight count, driver, cached state."""

    def __init__(
        self,
        name: Bucket,
        limit: int,
        period: float,
        max_in_flight: int | None,
        bulk_max_wait: float,
        keys: tuple[str, str, str, str],
    ) -> None:
        self.name: Bucket = name
        self.limit = limit
        self.period = period
        self.period_us = round(period * _US)
        self.max_in_flight = max_in_flight
        self.bulk_max_wait = bulk_max_wait
        self.keys = keys
        self.queues: dict[Priority, collections.OrderedDict[_Waiter, None]] = {
            p: collections.OrderedDict() for p in PRIORITIES
        }
        self.seq = 0
        self.in_flight = 0
        self.epoch = 0
        self.driver: asyncio.Task[None] | None = None
        self.ticket: str | None = None  # our turn in Redis's line, while we hold one
        self.known_gen = ""
        # Our own recent grant times (Redis us), to re-seed a Redis that lost them.
        self.history: collections.deque[int] = collections.deque(maxlen=limit)
        self.pending_seeds: list[int] = []  # grants made while Redis was away
        self.pending_pause = 0  # a pause observed while Redis was away (Redis us)
        self.refunds: list[int] = []  # grants nobody used, to give back
        self.reply: _Reply | None = None
        self.reply_at = 0.0  # loop time at which `reply` arrived
        self.kick: functools.partial[None] | None = None

    # -- the queues ---------------------------------------------------------------

    def waiting(self) -> int:
        return sum(1 for q in self.queues.values() for w in q if not w.future.done())

    def _head(self, priority: Priority) -> _Waiter | None:
        queue = self.queues[priority]
        while queue:
            waiter = next(iter(queue))
            if not waiter.future.done():
                return waiter
            del queue[waiter]
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

    def wanted(self) -> int:
        """How many grants to ask Redis for: live waiters, within the in-flight cap."""
        n = min(self.waiting(), self.limit)
        if self.max_in_flight is not None:
            n = min(n, self.max_in_flight - self.in_flight)
        return max(n, 0)

    def settle(self, signal: _Signal | BaseException) -> None:
        """Answer every waiter at once (timeouts, fallback, failure)."""
        for queue in self.queues.values():
            while queue:
                waiter, _ = queue.popitem(last=False)
                if waiter.future.done():
                    continue
                if isinstance(signal, BaseException):
                    waiter.future.set_exception(signal)
                else:
                    waiter.future.set_result(signal)

    def time_out(self, priority: Priority, waiter: _Waiter) -> None:
        if not waiter.future.done():
            self.queues[priority].pop(waiter, None)
            waiter.future.set_result(_Signal.TIMEOUT)

    # -- grants -------------------------------------------------------------------

    def grant(self, granted_us: int) -> Permit:
        self.in_flight += 1
        permit = Permit(self.name, granted_us / _US)
        permit._on_release = functools.partial(self.on_release, self.epoch)
        return permit

    def on_release(self, epoch: int) -> None:
        if epoch != self.epoch:
            return
        self.in_flight -= 1
        if self.kick is not None:
            self.kick()

    def revoke(self, permit: Permit) -> None:
        """Give back a grant whose task was cancelled before it could use it."""
        permit._on_release = None
        self.in_flight -= 1
        granted_us = round(permit.granted_at * _US)
        with contextlib.suppress(ValueError):
            self.history.remove(granted_us)
        self.refunds.append(granted_us)
        if self.kick is not None:
            self.kick()

    # -- the cached state -----------------------------------------------------------

    def redis_now(self, loop_now: float) -> float:
        """Redis time now (seconds), estimated from the last reply and the local clock."""
        if self.reply is None:
            return time.time()
        return self.reply.now / _US + (loop_now - self.reply_at)

    def forget_loop(self) -> None:
        for queue in self.queues.values():
            queue.clear()
        self.driver = None
        self.ticket = None
        self.in_flight = 0
        self.epoch += 1


class RedisRateLimits(RateLimitBackend):
    """Fathom's two buckets, kept exactly across every process sharing `key` on Redis.

    `url_or_client` is a Redis URL (`"redis://host:6379/0"`; the client is made on
    first use and closed by `aclose()`) or a `redis.asyncio.Redis` you own. `key`
    names the budget: use one per Fathom user (e.g. the account id); every process
    sharing it must use the same `entity` and `reports` limits. `max_in_flight` and
    `bulk_max_wait` are as in `RateLimits`, per process. `on_unavailable` is `"fail"`
    (raise `RateLimiterUnavailableError`) or `"local"` (fall back to an in-process
    `RateLimits`, trying Redis again every `retry_interval` seconds).
    `connect_timeout` and `socket_timeout` bound each call to Redis when the
    client is made from a URL.

    Needs the `redis` extra: `pip install fathom-async[redis]`.
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
        on_unavailable: OnUnavailable = "fail",
        retry_interval: float = 1.0,
        connect_timeout: float = 2.0,
        socket_timeout: float = 5.0,
    ) -> None:
        if isinstance(url_or_client, str):
            if not url_or_client:
                raise ValidationError("url_or_client", url_or_client, "a Redis URL or client")
            self._url: str | None = url_or_client
            self._client: Redis | None = None
        else:
            if not callable(getattr(url_or_client, "evalsha", None)):
                raise ValidationError(
                    "url_or_client", url_or_client, "a Redis URL or a redis.asyncio.Redis"
                )
            self._url = None
            self._client = url_or_client
        if not isinstance(key, str) or not key:
            raise ValidationError("key", key, "a non-empty string naming the shared budget")
        if on_unavailable not in ON_UNAVAILABLE:
            raise ValidationError("on_unavailable", on_unavailable, f"one of {ON_UNAVAILABLE}")
        for name, value in (
            ("retry_interval", retry_interval),
            ("connect_timeout", connect_timeout),
            ("socket_timeout", socket_timeout),
        ):
            if not _is_number(value) or not 0 < value < math.inf:
                raise ValidationError(name, value, "a positive number of seconds")
        if not _is_number(bulk_max_wait) or not 0 <= bulk_max_wait < math.inf:
            raise ValidationError("bulk_max_wait", bulk_max_wait, "a number of seconds >= 0")
        self.key = key
        self.entity = _check_limit("entity", entity)
        self.reports = _check_limit("reports", reports)
        self.max_in_flight = _check_in_flight(max_in_flight)
        self.bulk_max_wait = float(bulk_max_wait)
        self.on_unavailable: OnUnavailable = on_unavailable
        self.retry_interval = float(retry_interval)
        self._timeouts = (float(connect_timeout), float(socket_timeout))
        self._id = secrets.token_hex(6)
        self._tickets = 0
        self._sha = _SCRIPT_SHA
        self._loop: asyncio.AbstractEventLoop | None = None
        prefix = f"fathom_async:{{{key}}}"
        self._lanes: dict[Bucket, _Lane] = {}
        for name, (limit, period) in (("entity", self.entity), ("reports", self.reports)):
            bucket: Bucket = name  # type: ignore[assignment]
            keys = (
                f"{prefix}:{name}:grants",
                f"{prefix}:{name}:turns",
                f"{prefix}:{name}:state",
                f"{prefix}:generation",
            )
            self._lanes[bucket] = _Lane(
                bucket, limit, period, self.max_in_flight[bucket], self.bulk_max_wait, keys
            )
        # Falling back to in-process limits (on_unavailable="local").
        self._fallback: RateLimits | None = None
        self._back: asyncio.Event | None = None  # set: Redis answers again; None: on Redis
        self._prober: asyncio.Task[None] | None = None
        self._warned = False
        self._closing = False
        self._last_reason = ""
        self._round_trips = 0
        self._grants = 0
        self._local_grants = 0
        self._reseeds = 0

    def __repr__(self) -> str:
        where = "<client>" if self._url is None else "<url>"  # a URL may hold a password
        return (
            f"RedisRateLimits({where}, key={self.key!r}, entity={self.entity!r},"
            f" reports={self.reports!r}, on_unavailable={self.on_unavailable!r})"
        )

    # -- loop and client ------------------------------------------------------------

    def _lane(self, bucket: Bucket) -> tuple[_Lane, asyncio.AbstractEventLoop]:
        try:
            lane = self._lanes[bucket]
        except (KeyError, TypeError):
            raise ValidationError("bucket", bucket, f"one of {BUCKETS}") from None
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._bind(loop)
        return lane, loop

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        old = self._loop
        if old is not None:
            if not old.is_closed() and any(
                lane.in_flight or lane.waiting() or lane.driver for lane in self._lanes.values()
            ):
                raise RuntimeError(
                    "this RedisRateLimits is in use by another event loop; share one"
                    " instance only between clients in the same loop"
                )
            for lane in self._lanes.values():
                lane.forget_loop()
            if self._url is not None:
                self._client = None  # made in the old loop; `aclose()` it there
        self._loop = loop
        for lane in self._lanes.values():
            lane.kick = functools.partial(self._kick, lane)

    def _redis(self) -> Redis:
        if self._client is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            assert self._url is not None
            connect_timeout, socket_timeout = self._timeouts
            # No retries inside redis-py: a failure must reach us, and a script
            # retried after a lost reply would grant twice.
            self._client = redis.asyncio.Redis.from_url(
                self._url,
                socket_connect_timeout=connect_timeout,
                socket_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),
            )
        return self._client

    async def aclose(self) -> None:
        """Stop talking to Redis and close the client made from the URL (if any).

        Waiters still queued get `RateLimiterUnavailableError` (nothing was sent for
        them). The instance can be used again later.
        """
        self._closing = True
        try:
            tasks = [self._prober] + [lane.driver for lane in self._lanes.values()]
            self._prober = self._back = None
            for name, lane in self._lanes.items():
                for queue in lane.queues.values():
                    for waiter in queue:
                        if not waiter.future.done():
                            waiter.future.set_exception(
                                RateLimiterUnavailableError(name, "the limiter was closed")
                            )
                    queue.clear()
                lane.driver = lane.ticket = None
            for task in tasks:
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            client = self._client
            if self._url is not None and client is not None:
                self._client = None
                await client.aclose()
        finally:
            self._closing = False

    close = aclose

    async def __aenter__(self) -> RedisRateLimits:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- talking to Redis -----------------------------------------------------------

    async def _call(self, lane: _Lane, args: Sequence[str | int]) -> _Reply:
        """One run of the script; raise `_Unavailable` when Redis did not answer."""
        from redis.exceptions import ConnectionError, NoScriptError, RedisError

        common: list[str | int] = [
            lane.limit, lane.period_us, round(_TURN_GRACE * _US), lane.known_gen
        ]
        argv = [args[0], *common, *args[1:]]
        client = self._redis()
        for attempt in (1, 2):
            try:
                self._round_trips += 1
                try:
                    raw = await client.evalsha(self._sha, 4, *lane.keys, *argv)
                except NoScriptError:  # first use, or Redis restarted: load it once more
                    self._round_trips += 2
                    self._sha = await client.script_load(_SCRIPT)
                    raw = await client.evalsha(self._sha, 4, *lane.keys, *argv)
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
            lane.reply, lane.reply_at = reply, asyncio.get_running_loop().time()
        return reply

    async def _take(self, lane: _Lane, n: int) -> tuple[_Reply, str | None]:
        """Confirm our turn (if any), take up to `n` grants, and a turn if short."""
        new_ticket = ""
        if n > 0:
            self._tickets += 1
            new_ticket = f"{self._id}:{self._tickets}"
        seeds = list(lane.pending_seeds)
        refunds = list(lane.refunds)
        full = "0"
        pause = lane.pending_pause
        for attempt in range(2):
            reply = await self._call(
                lane,
                [
                    "take", n, lane.ticket or "", new_ticket, " ".join(map(str, seeds)),
                    full, pause, " ".join(map(str, refunds)),
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
            lane.ticket = None
            lane.known_gen = ""
            seeds = list(lane.history)
            full = "1"
            pause = max(pause, lane.reply.pause if lane.reply is not None else 0)
        lane.known_gen = reply.gen
        lane.pending_seeds.clear()
        lane.pending_pause = 0
        del lane.refunds[: len(refunds)]
        lane.ticket = new_ticket if reply.turn else None
        return reply, lane.ticket

    def _kick(self, lane: _Lane) -> None:
        """Make sure the bucket's driver runs when there is something to ask Redis."""
        if lane.driver is None and not self._closing and (lane.wanted() or lane.refunds):
            loop = self._loop
            if loop is not None and not loop.is_closed():
                lane.driver = loop.create_task(self._drive(lane))

    async def _drive(self, lane: _Lane) -> None:
        """Ask Redis for as many grants as the queue may use; sleep until our turn."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                n = lane.wanted()
                if n == 0 and lane.ticket is None and not lane.refunds:
                    return
                reply, ticket = await self._take(lane, n)
                self._serve(lane, reply, loop)
                if ticket is not None:
                    await asyncio.sleep(max(reply.turn - reply.now, 0) / _US)
        except _Unavailable as exc:
            lane.ticket = None
            self._unavailable(lane, str(exc), loop)
        finally:
            if lane.driver is asyncio.current_task():
                lane.driver = None
            if lane.waiting() and lane.driver is None:
                self._kick(lane)

    def _serve(self, lane: _Lane, reply: _Reply, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for _ in range(reply.granted):
            head = lane.next_waiter(now)
            if head is None:  # the waiter left while we asked: give the slot back
                lane.refunds.append(reply.now)
                continue
            self._grants += 1
            priority, waiter = head
            del lane.queues[priority][waiter]
            lane.history.append(reply.now)
            waiter.future.set_result(lane.grant(reply.now))
        for priority, queue in lane.queues.items():
            for waiter in [w for w in queue if w.one_shot]:
                lane.time_out(priority, waiter)

    def _unavailable(self, lane: _Lane, reason: str, loop: asyncio.AbstractEventLoop) -> None:
        if self.on_unavailable == "fail":
            logger.error("Redis unavailable for rate limits (key %r): %s", self.key, reason)
            for queue in lane.queues.values():
                for waiter in queue:
                    if not waiter.future.done():
                        waiter.future.set_exception(
                            RateLimiterUnavailableError(lane.name, reason)
                        )
                queue.clear()
            return
        if self._back is None:
            logger.warning(
                "Redis is unavailable (%s); rate limits for key %r fall back to this"
                " process alone until it returns", reason, self.key,
            )
            self._last_reason = reason
            self._back = asyncio.Event()
            self._prober = loop.create_task(self._probe())
        lane.settle(_Signal.LOCAL)

    async def _probe(self) -> None:
        """While fallen back: every `retry_interval`, try Redis; when it answers, go back.

        The call sends what this process granted meanwhile (and any pause it saw), so
        the shared window counts it; waiters queued in the fallback are moved back.
        """
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                for lane in self._lanes.values():
                    await self._take(lane, 0)
            except _Unavailable:
                continue
            back, self._back, self._prober = self._back, None, None
            assert back is not None
            back.set()
            logger.warning("Redis is reachable again; shared rate limits (key %r) resume", self.key)
            return

    # -- local fallback ---------------------------------------------------------------

    def _local(self) -> RateLimits:
        if self._fallback is None:
            self._fallback = RateLimits(
                self.entity,
                self.reports,
                max_in_flight={str(k): v for k, v in self.max_in_flight.items()},
                bulk_max_wait=self.bulk_max_wait,
            )
        return self._fallback

    async def _acquire_local(
        self, lane: _Lane, priority: Priority, timeout: float | None
    ) -> Permit:
        if not self._warned:  # in the caller's task, so a warning filter sees it here
            self._warned = True
            warnings.warn(
                f"Redis is unavailable ({self._last_reason}); rate limits for key"
                f" {self.key!r} fall back to this process alone until it returns",
                RuntimeWarning,
                stacklevel=3,
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        back = self._back
        local = asyncio.ensure_future(
            self._local().acquire(lane.name, priority=priority, timeout=timeout)
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
                return await self.acquire(lane.name, priority=priority, timeout=left)
        permit = await local
        granted_us = round(lane.redis_now(loop.time()) * _US)
        lane.history.append(granted_us)
        lane.pending_seeds.append(granted_us)
        self._local_grants += 1
        return Permit(lane.name, granted_us / _US, permit.release)

    # -- the interface ----------------------------------------------------------------

    async def acquire(
        self,
        bucket: Bucket,
        *,
        priority: Priority = "interactive",
        timeout: float | None = None,
    ) -> Permit:
        """Wait for a slot in `bucket` shared through Redis, interactive work first.

        Raises `AcquireTimeoutError` when no slot came within `timeout` seconds
        (`timeout=0`: take a slot only if Redis grants one on the first ask), and
        `RateLimiterUnavailableError` when Redis cannot be reached and
        `on_unavailable="fail"`. A wait that fails, times out or is cancelled sends
        nothing.
        """
        lane, loop = self._lane(bucket)
        if priority not in PRIORITIES:
            raise ValidationError("priority", priority, f"one of {PRIORITIES}")
        if timeout is not None and (not _is_number(timeout) or not timeout >= 0):
            raise ValidationError("timeout", timeout, "None or a number of seconds >= 0")
        now = loop.time()
        if self._back is not None:
            return await self._acquire_local(lane, priority, timeout)
        one_shot = timeout is not None and timeout <= 0
        if one_shot and (lane.ticket is not None or lane.waiting()):
            raise AcquireTimeoutError(bucket, float(timeout or 0))
        future: asyncio.Future[Permit | _Signal] = loop.create_future()
        lane.seq += 1
        waiter = _Waiter(future, lane.seq, now, one_shot)
        queue = lane.queues[priority]
        queue[waiter] = None
        timer = (
            None
            if timeout is None or one_shot
            else loop.call_at(now + timeout, lane.time_out, priority, waiter)
        )
        try:
            self._kick(lane)
            result = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                granted = future.result()
                if isinstance(granted, Permit):
                    lane.revoke(granted)
            else:
                future.cancel()
                queue.pop(waiter, None)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if result is _Signal.TIMEOUT:
            raise AcquireTimeoutError(bucket, float(timeout or 0))
        if result is _Signal.LOCAL:
            left = None if timeout is None else max(now + timeout - loop.time(), 0.0)
            return await self._acquire_local(lane, priority, left)
        return result

    async def observe(self, bucket: Bucket, feedback: ServerFeedback) -> None:
        """Share what a response said: a 429 pauses the bucket for every process.

        Never raises for Redis being away: the feedback is then applied locally and
        sent with the next call that reaches Redis.
        """
        lane, loop = self._lane(bucket)
        pause: float | None = None
        if feedback.status == 429:
            pause = feedback.retry_after
            if pause is None:
                pause = feedback.reset_after
            if pause is None:
                pause = lane.period / lane.limit
            pause = max(pause, 0.0)
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
            until = round((lane.redis_now(loop.time()) + pause) * _US)
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
        loop = self._loop
        loop_now = loop.time() if loop is not None else time.monotonic()
        result: dict[str, BucketSnapshot] = {}
        for name, lane in self._lanes.items():
            reply = lane.reply
            opens_in = paused_for = 0.0
            sent = 0
            remaining: int | None = None
            if reply is not None:
                now = lane.redis_now(loop_now)
                opens_in = reply.opens_at / _US - now
                paused_until = reply.pause / _US
                if reply.budget is not None and reply.budget_until / _US > now:
                    remaining = reply.budget
                    if remaining <= 0:
                        paused_until = max(paused_until, reply.budget_until / _US)
                paused_for = max(paused_until - now, 0.0)
                sent = reply.in_window
            result[name] = BucketSnapshot(
                limit=lane.limit,
                period=lane.period,
                sent_in_window=sent,
                waiting={
                    p: sum(1 for w in q if not w.future.done()) for p, q in lane.queues.items()
                },
                next_slot_in=opens_in if opens_in > _EPSILON else 0.0,
                paused_for=paused_for,
                in_flight=lane.in_flight,
                max_in_flight=lane.max_in_flight,
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
