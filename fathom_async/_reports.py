"""Reports on a budget of ten calls a minute: sharing, caching and splitting them.

- Single flight: identical report requests in flight at the same time in one
  event loop (same normalised query, same token, same strictness) share one
  request and one result, and each caller keeps its own terms: the request waits
  for slots at the highest priority among its callers and as long as the most
  patient one may, each caller's `acquire_timeout` counts the slot waiting done
  while it is there, and a caller that is cancelled leaves the others waiting.
  Only when every caller has gone is the request cancelled (and forgotten at once:
  nobody joins a cancelled request). An error reaches every caller.
- Cache (optional, `FathomClient(report_cache=ReportCache())`): answers are kept
  as the decoded JSON under a hash of the token and the normalised query. What is
  cached (see `ReportCacheBackend`): an aggregation whose `date_to` is over an
  hour in the past on the site's clock (a closed range, `is_closed_range`) for
  `ttl`; any other aggregation for
  `open_ttl` (0, not cached, by default); current visitors never, unless the call
  passes `max_age=`. Per call, `cache=False` bypasses the cache and `max_age=s`
  accepts only an answer at most `s` seconds old (and keeps the fresh one at
  least that long).
- Splitting: `aggregations.query(split=True)` and `aggregations.plan()`:
  hour-grouped ranges over 7 days, and date-grouped ranges with more periods than
  one call's `limit`, become consecutive sub-ranges that start on a period
  boundary (the arithmetic is `_dates`'), run through the client (so through the
  rate-limit scheduler) and are merged in order.

This module never builds a request itself (resources describe them) and never
sends one except through `FathomClient._request`.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from . import _telemetry
from ._calls import CALL, CallRecord
from ._dates import TIME_FORMAT, halve_range, split_range
from ._dates import zone as _zone
from ._exceptions import AcquireTimeoutError, ValidationError
from ._frames import AggregationRows
from ._logging import logger
from ._protocol import ApiRequest
from ._redis_client import RedisConnector
from .types import DateGrouping

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._client import Acquire, FathomClient, SlotTerms
    from ._scheduler import Bucket, Permit, Priority

__all__ = [
    "CacheStats",
    "RedisReportCache",
    "ReportCache",
    "ReportCacheBackend",
    "ReportPlan",
    "SingleFlight",
    "check_max_age",
    "fetch_report",
    "gather_all",
    "halve_range",
    "is_closed_range",
    "request_key",
    "run_aggregation",
    "split_range",
]

T = TypeVar("T")

# A range that ended less than this long ago may still gain visits (or change
# their duration and bounce), so it is not yet "closed".
_SETTLE = timedelta(hours=1)
# Without the report's timezone, "now" on the site's wall clock is at least
# UTC - 12 h (no zone lies further west).
_WESTMOST = timedelta(hours=12)


# -- keys ----------------------------------------------------------------------------


def token_scope(token: str) -> str:
    """Who is asking, without the secret: a hash of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def request_key(token: str, request: ApiRequest) -> str:
    """A stable key for one report request: token scope + method, path, sorted query."""
    query = "&".join(f"{name}={value}" for name, value in sorted(request.query))
    text = f"{token_scope(token)}\n{request.method} {request.path}?{query}"
    return "fathom:v1:" + hashlib.sha256(text.encode()).hexdigest()


# -- single flight -------------------------------------------------------------------


#: Slack for timers, which may fire a little before their time.
_EARLY = 1e-6


class _Caller:
    """One caller of a shared run, on its own terms."""

    __slots__ = ("joined", "priority", "timeout")

    def __init__(self, priority: Priority, timeout: float | None, joined: float) -> None:
        self.priority = priority
        self.timeout = timeout
        self.joined = joined  # the run's slot-wait clock when this caller came

    def deadline(self) -> float | None:
        """When its `acquire_timeout` is spent, on the run's slot-wait clock."""
        return None if self.timeout is None else self.joined + self.timeout


class _Flight(Generic[T]):
    """One shared run and the terms of everyone waiting for its answer.

    It is the run's `SlotTerms`: each attempt waits for its slot at the highest
    priority among the callers (when that changes during the wait, the wait is given
    up, a slot granted meanwhile goes back, and it is asked again) and for as long as
    the most patient caller still may. The run's slot-wait clock (`waited()`)
    advances only while it waits for a slot; each caller's `acquire_timeout` is
    spent on that clock from the moment it joined.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.task: asyncio.Future[T] | None = None
        self.callers: list[_Caller] = []
        self.bucket: Bucket = "reports"
        self._interactive = 0
        self._waited = 0.0
        self._since: float | None = None  # loop time the current slot wait began
        self._changed: asyncio.Future[None] = loop.create_future()
        # What the run's attempts did; each caller takes it in with the answer.
        self.record = CallRecord(raw=True)

    async def run(self, start: Callable[[SlotTerms], Coroutine[Any, Any, T]]) -> T:
        """The shared run itself, in a task of its own (whose context this sets)."""
        CALL.set(self.record)
        if _telemetry.AVAILABLE:
            self.record.origin = _telemetry.current_span()
        return await start(self)

    # -- terms ------------------------------------------------------------------

    @property
    def priority(self) -> Priority:
        return "bulk" if self.callers and not self._interactive else "interactive"

    def waited(self) -> float:
        """Seconds the run has waited for slots so far."""
        if self._since is None:
            return self._waited
        return self._waited + self.loop.time() - self._since

    def _deadline(self) -> float | None:
        """The most patient caller's deadline on the slot-wait clock (None: none)."""
        deadlines = [caller.deadline() for caller in self.callers]
        if not deadlines or None in deadlines:
            return None
        return max(deadline for deadline in deadlines if deadline is not None)

    def _signal(self) -> None:
        """Wake whoever watches the terms or the slot wait."""
        changed, self._changed = self._changed, self.loop.create_future()
        changed.set_result(None)

    def join(self, priority: Priority, timeout: float | None) -> _Caller:
        before = self.priority
        caller = _Caller(priority, timeout, self.waited())
        self.callers.append(caller)
        self._interactive += priority == "interactive"
        if self.priority != before:
            self._signal()
        return caller

    def leave(self, caller: _Caller) -> bool:
        """Take a caller off; whether nobody is left to want the answer."""
        before = self.priority
        self.callers.remove(caller)
        self._interactive -= caller.priority == "interactive"
        if not self.callers:
            return True
        if self.priority != before:
            self._signal()
        return False

    # -- the run's side: waiting for slots ---------------------------------------------

    async def wait(self, bucket: Bucket, acquire: Acquire) -> Permit:
        """Wait for a slot on the callers' terms (called by the client per attempt)."""
        self.bucket = bucket
        self._since = self.loop.time()
        self._signal()  # the callers' clocks run from now
        try:
            while True:
                priority, deadline = self.priority, self._deadline()
                patience = None if deadline is None else max(0.0, deadline - self.waited())
                attempt = asyncio.ensure_future(acquire(priority, patience))
                if not await self._settled(attempt, priority):
                    continue  # given up: asked again at the new priority
                try:
                    return attempt.result()
                except AcquireTimeoutError:
                    later = self._deadline()
                    if deadline is not None and (later is None or later > deadline + _EARLY):
                        continue  # a more patient caller came meanwhile
                    raise
        finally:
            self._waited = self.waited()
            self._since = None
            self._signal()

    async def _settled(self, attempt: asyncio.Future[Permit], priority: Priority) -> bool:
        """Wait for `attempt`; False when it was given up for a change of priority."""
        from ._client import _abandon  # cancels it; a slot granted meanwhile goes back

        while not attempt.done():
            changed = self._changed
            try:
                await asyncio.wait((attempt, changed), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                await _abandon(attempt)
                raise
            if not attempt.done() and self.priority != priority:
                await _abandon(attempt)
                return False
        return True

    # -- a caller's side ----------------------------------------------------------------

    async def answer(self, caller: _Caller) -> T:
        """The run's result, or AcquireTimeoutError once this caller's own budget is
        spent while the run waits for a slot."""
        task = self.task
        assert task is not None
        deadline = caller.deadline()
        while not task.done():
            changed = self._changed
            timeout = None
            if deadline is not None and self._since is not None:
                timeout = deadline - self.waited()
                if timeout <= _EARLY:
                    raise AcquireTimeoutError(self.bucket, deadline - caller.joined)
            await asyncio.wait((task, changed), timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        try:
            return task.result()
        except AcquireTimeoutError as exc:  # the run's: no caller had more patience
            if caller.timeout is None or exc.timeout == caller.timeout:
                raise
            raise AcquireTimeoutError(
                exc.bucket, caller.timeout, next_slot_in=exc.next_slot_in
            ) from None


class SingleFlight:
    """Identical calls in flight at once share one run; `run()` joins or starts it.

    Keep one per event loop (the client does): a run and its callers are one loop's.
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[Any]] = {}
        self.started = 0
        self.joined = 0

    def __len__(self) -> int:
        return len(self._flights)

    async def run(
        self,
        key: Hashable,
        start: Callable[[SlotTerms], Coroutine[Any, Any, T]],
        *,
        priority: Priority = "interactive",
        acquire_timeout: float | None = None,
    ) -> T:
        """The result of the run for `key`: the one in flight, or a new `start(terms)`.

        `start` gets the run's slot terms, for `FathomClient._request(slots=...)`.
        This caller's `priority` counts towards the run's while it waits; its
        `acquire_timeout` bounds the time the run spends waiting for slots while it
        is there (then `AcquireTimeoutError` for this caller only); cancelling it
        cancels only its own wait, or the run when it was the last one there.
        """
        loop = asyncio.get_running_loop()
        found: _Flight[T] | None = self._flights.get(key)
        running = found.task if found is not None and found.loop is loop else None
        if found is None or running is None or running.done():
            flight: _Flight[T] = _Flight(loop)
            caller = flight.join(priority, acquire_timeout)  # its terms before the run starts
            task: asyncio.Future[T] = asyncio.ensure_future(flight.run(start))
            flight.task = task
            self._flights[key] = flight
            task.add_done_callback(functools.partial(self._forget, key, flight))
            self.started += 1
        else:
            flight, task = found, running
            caller = flight.join(priority, acquire_timeout)
            self.joined += 1
        joined = flight is found
        try:
            return await flight.answer(caller)
        finally:
            record = CALL.get()
            if record is not None:  # what the run did for this caller, while it was there
                record.take(flight.record, wait=False)
                record.wait += flight.waited() - caller.joined
                if joined:
                    record.coalesced = True
                    record.origin = flight.record.origin
            if flight.leave(caller) and not task.done():
                # Nobody is left to want the answer: forget the run before cancelling
                # it, so that a caller arriving now starts afresh instead of joining it.
                if self._flights.get(key) is flight:
                    del self._flights[key]
                task.cancel()

    def _forget(self, key: Hashable, flight: _Flight[Any], task: asyncio.Future[Any]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter already had it raised


# -- caches --------------------------------------------------------------------------


@attrs.frozen
class CacheStats:
    """What a report cache has done so far."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0
    errors: int = 0


def _check_seconds(field: str, value: object, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValidationError(field, value, "a number of seconds >= 0")
    if value == float("inf"):
        raise ValidationError(field, value, "a finite number of seconds")
    return float(value)


class ReportCacheBackend(abc.ABC):
    """Where report answers are kept; subclass it for another store.

    Args:
        ttl: seconds to keep an aggregation over a closed range: its `date_to` over
            an hour in the past on the site's wall clock. With the query's
            `timezone=` that clock is exact; without it, "now" is read on the
            westernmost clock (UTC-12), so `date_to` must lie over 13 hours before
            the current UTC time, read as UTC.
        open_ttl: seconds to keep any other aggregation (a range still open, or
            none given); 0, the default, does not cache them.

    Current visitors are kept only when a call passes `max_age=`. A failing store
    never fails a report: the error is logged and counted, and the call goes to
    the API. Values are decoded JSON (never None).

    A subclass implements three methods: `_now()`, the clock that stamps entries
    (seconds); `_load(key)`, which returns `(stored_at, value)` for a live entry or
    None; and `_store(key, value, ttl)`, which keeps the value, stamped with
    `_now()`, for `ttl` seconds. `get()`, `set()` and `stats` are built on them.
    """

    def __init__(self, *, ttl: float = 3600.0, open_ttl: float = 0.0) -> None:
        self.ttl: float = _check_seconds("ttl", ttl)  # type: ignore[assignment]
        self.open_ttl: float = _check_seconds("open_ttl", open_ttl)  # type: ignore[assignment]
        self._hits = self._misses = self._stores = self._evictions = self._errors = 0

    @property
    def stats(self) -> CacheStats:
        """Counts of hits, misses, stores, evictions and backend errors so far."""
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            stores=self._stores,
            evictions=self._evictions,
            errors=self._errors,
        )

    async def get(self, key: str, *, max_age: float | None = None) -> Any:
        """The value under `key`, if present and at most `max_age` seconds old; else None."""
        try:
            found = await self._load(key)
        except Exception as exc:  # a cache outage must not cost the report
            self._failed("read", exc)
            found = None
        value = None  # values are never None
        if found is not None and (max_age is None or self._now() - found[0] <= max_age):
            value = found[1]
        meters = _telemetry.meters()
        if meters is not None:
            meters.looked_up(value is not None)
        if value is None:
            self._misses += 1
        else:
            self._hits += 1
        return value

    async def set(self, key: str, value: Any, *, ttl: float) -> None:
        """Keep `value` under `key` for `ttl` seconds."""
        try:
            await self._store(key, value, ttl)
        except Exception as exc:  # a cache outage must not cost the report
            self._failed("write", exc)
        else:
            self._stores += 1

    def _failed(self, action: str, exc: Exception) -> None:
        self._errors += 1
        logger.warning("report cache %s failed: %s: %s", action, type(exc).__name__, exc)

    @abc.abstractmethod
    def _now(self) -> float:
        """The clock that stamps values (seconds)."""

    @abc.abstractmethod
    async def _load(self, key: str) -> tuple[float, Any] | None:
        """(stored at, value) for a live entry, or None."""

    @abc.abstractmethod
    async def _store(self, key: str, value: Any, ttl: float) -> None:
        """Keep the value, stamped with `_now()`, for `ttl` seconds."""


class ReportCache(ReportCacheBackend):
    """An in-memory cache for one process: TTL expiry and least-recently-used eviction.

    Times are the event loop's clock. `max_entries` bounds the number of answers
    kept (one report can be large: a 1000-row answer is a few hundred kB).
    """

    def __init__(
        self, *, ttl: float = 3600.0, open_ttl: float = 0.0, max_entries: int = 256
    ) -> None:
        super().__init__(ttl=ttl, open_ttl=open_ttl)
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValidationError("max_entries", max_entries, "an int >= 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<ReportCache {len(self)}/{self.max_entries} entries ttl={self.ttl:g}s>"

    def clear(self) -> None:
        """Forget every cached answer (the counts in `stats` are kept)."""
        self._entries.clear()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _load(self, key: str) -> tuple[float, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, expires, value = entry
        if self._now() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return stored, value

    async def _store(self, key: str, value: Any, ttl: float) -> None:
        now = self._now()
        self._entries[key] = (now, now + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self._evictions += 1


class RedisReportCache(ReportCacheBackend):
    """A cache in Redis (the `redis` extra), shared by every process that uses it.

    Give a URL (`redis://localhost:6379/0`) or your own `redis.asyncio.Redis`
    (which we then never close). Entries expire on the server (`SET ... PX`); each
    is stamped with the Unix time so `max_age=` works across processes. Keys are
    `prefix` + a hash of the token and the query: no token or site id is readable
    in Redis.

    Made from a URL, the cache works in any event loop (one Redis client per loop,
    made on first use), and `aclose()` may be called from any of them. Each call
    to Redis gives up after `connect_timeout` / `socket_timeout` seconds, so a Redis
    that stops answering costs a cache error, and the report goes to the API. A
    client you pass in belongs to the loop it is used in, and its own timeouts apply.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "fathom-async:",
        ttl: float = 3600.0,
        open_ttl: float = 0.0,
        connect_timeout: float = 2.0,
        socket_timeout: float = 5.0,
    ) -> None:
        super().__init__(ttl=ttl, open_ttl=open_ttl)
        if (url is None) == (client is None):
            raise ValidationError("url", url, "a redis:// URL or client=..., exactly one")
        if url is not None and not isinstance(url, str):
            raise ValidationError("url", url, "a redis:// URL")
        field = "url" if url is not None else "client"
        try:
            # a missing extra or a bad URL fails here, not as cache errors later
            self._connector = RedisConnector(
                url if url is not None else client,  # type: ignore[arg-type]
                connect_timeout=connect_timeout,
                socket_timeout=socket_timeout,
            )
        except ValidationError as exc:
            if exc.field != "url_or_client":
                raise
            raise ValidationError(field, exc.value, exc.allowed) from None
        self.prefix = prefix
        self.clock: Callable[[], float] = time.time

    def __repr__(self) -> str:
        return f"<RedisReportCache prefix={self.prefix!r} ttl={self.ttl:g}s>"

    async def aclose(self) -> None:
        """Close the clients made from the URL, in every loop; a client passed in stays open."""
        await self._connector.aclose()

    def _now(self) -> float:
        return self.clock()

    async def _load(self, key: str) -> tuple[float, Any] | None:
        raw = await self._connector.client().get(self.prefix + key)
        if raw is None:
            return None
        entry = json.loads(raw)
        return float(entry["t"]), entry["v"]

    async def _store(self, key: str, value: Any, ttl: float) -> None:
        payload = json.dumps({"t": self._now(), "v": value}, separators=(",", ":"))
        await self._connector.client().set(self.prefix + key, payload, px=max(int(ttl * 1000), 1))


# -- one report request: cache, single flight, structure ---------------------------------


def is_closed_range(request: ApiRequest, now: float) -> bool:
    """Whether an aggregation's `date_to` lies over an hour before "now" on its clock.

    `now` is the Unix time. With `timezone=` in the query, "now" is read on that
    wall clock; without it, on the westmost one (UTC - 12 h), so a range is never
    taken as closed too early whatever the site's zone.
    """
    query = dict(request.query)
    date_to = query.get("date_to")
    if date_to is None:
        return False
    end = datetime.strptime(date_to, TIME_FORMAT)
    utc_now = datetime.fromtimestamp(now, timezone.utc)
    name = query.get("timezone")
    if name is None:
        local_now = utc_now.replace(tzinfo=None) - _WESTMOST
    else:
        local_now = utc_now.astimezone(_zone(name)).replace(tzinfo=None)
    return end < local_now - _SETTLE


def check_max_age(value: object) -> float | None:
    return _check_seconds("max_age", value, allow_none=True)


async def fetch_report(
    client: FathomClient,
    request: ApiRequest,
    structure: Callable[[Any], T],
    *,
    cache: bool = True,
    max_age: float | None = None,
    closed: bool | None = None,
) -> T:
    """Send one report request, through the cache (if on) and the single flight.

    `closed` says which TTL the cache rule gives: True `ttl`, False `open_ttl`,
    None (current visitors) none unless `max_age` asks. The caller that starts a
    request decides whether its answer is kept; callers that join it share it.
    """
    shared = client._shared
    backend: ReportCacheBackend | None = shared.report_cache if cache else None
    keep = 0.0
    if backend is not None:
        rule = 0.0 if closed is None else backend.ttl if closed else backend.open_ttl
        keep = max(rule, max_age or 0.0)
        if keep == 0 and max_age is None:
            backend = None  # not cached: neither read nor written
    key = request_key(shared.token, request)
    record = CALL.get()
    if backend is not None and not (record is not None and record.raw):  # raw: always sent
        found = await backend.get(key, max_age=max_age)
        if found is not None:
            if record is not None:
                record.cached += 1
            return structure(found)

    async def send(slots: SlotTerms) -> T:
        data = await client._request(request, slots=slots)
        result = structure(data)  # a body we cannot read is never kept
        if backend is not None and keep > 0:
            await backend.set(key, data, ttl=keep)
        return result

    options = client._options  # each caller's own terms, kept while it shares the run
    return await shared.in_flight.run(
        (key, shared.converter.strict),
        send,
        priority=options.priority,
        acquire_timeout=options.acquire_timeout,
    )


# -- splitting -----------------------------------------------------------------------


@attrs.frozen
class ReportPlan:
    """What an aggregation will cost before it runs: `calls` requests, one per range.

    `ranges` are the (date_from, date_to) of each call on the site's wall clock
    (None where the query left a bound open); `limit` the rows asked for per call.
    The count is a floor: a call that comes back with exactly `limit` rows is split
    again (one more call per split); a cache hit or a shared call costs nothing.
    """

    calls: int
    ranges: tuple[tuple[datetime | None, datetime | None], ...]
    limit: int | None
    date_grouping: DateGrouping | None
    reason: str
    requests: tuple[ApiRequest, ...] = attrs.field(repr=False, eq=False)


async def gather_all(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Run all at once; the first error cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


async def run_aggregation(
    client: FathomClient,
    plan: ReportPlan,
    structure: Callable[[Any], AggregationRows],
    *,
    rebuild: Callable[[datetime, datetime], ApiRequest] | None,
    cache: bool,
    max_age: float | None,
    descending: bool,
    columns: tuple[str, ...],
    zone_name: str | None,
    order_by: tuple[str, bool] | None = None,
    limit_given: bool = False,
) -> AggregationRows:
    """Run a plan's calls at once (the scheduler paces them) and merge them in order.

    A call that returns exactly `plan.limit` rows may have been cut short: with
    `rebuild` (a split query) its range is halved and both halves run instead;
    otherwise, or for a single period, the result is marked `truncated`.
    """
    now = client._shared.clock()
    truncated = False

    async def run(
        request: ApiRequest, span: tuple[datetime | None, datetime | None]
    ) -> list[AggregationRows]:
        nonlocal truncated
        rows = await fetch_report(
            client, request, structure, cache=cache, max_age=max_age,
            closed=is_closed_range(request, now),
        )
        if plan.limit is None or len(rows) < plan.limit:
            return [rows]
        start, end = span
        halves = None
        if rebuild is not None and plan.date_grouping is not None and start and end:
            halves = halve_range(start, end, plan.date_grouping, zone_name)
        if halves is None and rebuild is None and limit_given:
            return [rows]  # a top-N query got its N rows: nothing is missing
        if halves is None:
            truncated = True
            logger.warning(
                "aggregation returned limit=%d rows for %s..%s: rows may be missing",
                plan.limit, start, end,
            )
            return [rows]
        assert rebuild is not None
        parts = await gather_all([run(rebuild(*half), half) for half in halves])
        return [chunk for part in parts for chunk in part]

    parts = await gather_all(
        [run(request, span) for request, span in zip(plan.requests, plan.ranges, strict=True)]
    )
    chunks = [chunk for part in parts for chunk in part]
    if descending:
        chunks.reverse()
    # Column by column when every chunk is a table of one shape (no row is made),
    # row by row otherwise.
    merged = AggregationRows._concat(
        chunks, columns=columns, timezone=zone_name, truncated=truncated
    )
    if order_by is not None and len(chunks) > 1:  # each call sorted only its own rows
        merged = merged._sorted(*order_by)
    return merged
