"""Reports on a budget of ten calls a minute: sharing, caching and splitting them.

- Single flight: identical report requests in flight at the same time (same
  normalised query, same token, same strictness) share one request and one
  result. A caller that is cancelled leaves the others waiting; only when every
  caller has gone is the request itself cancelled. An error reaches every caller.
- Cache (optional, `FathomClient(report_cache=ReportCache())`): answers are kept
  as the decoded JSON under a hash of the token and the normalised query. What is
  cached (see `ReportCacheBackend`): an aggregation whose `date_to` is over an
  hour in the past (a closed range) for `ttl`; any other aggregation for
  `open_ttl` (0, not cached, by default); current visitors never, unless the call
  passes `max_age=`. Per call, `cache=False` bypasses the cache and `max_age=s`
  accepts only an answer at most `s` seconds old (and keeps the fresh one at
  least that long).
- Splitting: the range arithmetic behind `aggregations.query(split=True)` and
  `aggregations.plan()`: hour-grouped ranges over 7 days, and date-grouped ranges
  with more periods than one call's `limit`, become consecutive sub-ranges that
  start on a period boundary, run through the client (so through the rate-limit
  scheduler) and are merged in order.

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
from zoneinfo import ZoneInfo

import attrs

from ._exceptions import ValidationError
from ._frames import AggregationRows
from ._logging import logger
from ._models import AggregationRow
from ._protocol import ApiRequest

if TYPE_CHECKING:
    from ._client import FathomClient

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

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_HOUR_SPAN = timedelta(days=7)
_SECOND = timedelta(seconds=1)
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


class _Flight(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Future[T]) -> None:
        self.task = task
        self.waiters = 0


class SingleFlight:
    """Identical calls in flight at once share one run; `run()` joins or starts it."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[Any]] = {}
        self.started = 0
        self.joined = 0

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, start: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The result of the run for `key`: the one in flight, or a new `start()`."""
        flight: _Flight[T] | None = self._flights.get(key)
        if flight is None or flight.task.get_loop() is not asyncio.get_running_loop():
            flight = _Flight(asyncio.ensure_future(start()))
            self._flights[key] = flight
            flight.task.add_done_callback(functools.partial(self._forget, key, flight))
            self.started += 1
        else:
            self.joined += 1
        flight.waiters += 1
        try:
            # shield: cancelling one caller must not cancel the run the others await
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()  # nobody is left to want the answer

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
        ttl: seconds to keep an aggregation over a closed range (`date_to` over an
            hour in the past on the site's wall clock).
        open_ttl: seconds to keep any other aggregation (a range still open, or
            none given); 0, the default, does not cache them.

    Current visitors are kept only when a call passes `max_age=`. A failing store
    never fails a report: the error is logged and counted, and the call goes to
    the API. Values are decoded JSON (never None).
    """

    def __init__(self, *, ttl: float = 3600.0, open_ttl: float = 0.0) -> None:
        self.ttl: float = _check_seconds("ttl", ttl)  # type: ignore[assignment]
        self.open_ttl: float = _check_seconds("open_ttl", open_ttl)  # type: ignore[assignment]
        self._hits = self._misses = self._stores = self._evictions = self._errors = 0

    @property
    def stats(self) -> CacheStats:
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
        if found is None or (max_age is not None and self._now() - found[0] > max_age):
            self._misses += 1
            return None
        self._hits += 1
        return found[1]

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
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "fathom-async:",
        ttl: float = 3600.0,
        open_ttl: float = 0.0,
    ) -> None:
        super().__init__(ttl=ttl, open_ttl=open_ttl)
        if (url is None) == (client is None):
            raise ValidationError("url", url, "a redis:// URL or client=..., exactly one")
        if url is not None and not isinstance(url, str):
            raise ValidationError("url", url, "a redis:// URL")
        self.prefix = prefix
        self._url = url
        self._client = client
        self._owns_client = client is None
        if url is not None:
            _redis_module()  # a missing extra fails here, not as cache errors later
        self.clock: Callable[[], float] = time.time

    def __repr__(self) -> str:
        return f"<RedisReportCache prefix={self.prefix!r} ttl={self.ttl:g}s>"

    def _redis(self) -> Any:
        if self._client is None:
            self._client = _redis_module().Redis.from_url(self._url)
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool (only if we made the client)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
        elif client is not None:
            self._client = client

    def _now(self) -> float:
        return self.clock()

    async def _load(self, key: str) -> tuple[float, Any] | None:
        raw = await self._redis().get(self.prefix + key)
        if raw is None:
            return None
        entry = json.loads(raw)
        return float(entry["t"]), entry["v"]

    async def _store(self, key: str, value: Any, ttl: float) -> None:
        payload = json.dumps({"t": self._now(), "v": value}, separators=(",", ":"))
        await self._redis().set(self.prefix + key, payload, px=max(int(ttl * 1000), 1))


def _redis_module() -> Any:
    try:
        import redis.asyncio
    except ImportError:
        raise ImportError(
            "RedisReportCache needs redis: pip install 'fathom-async[redis]'"
        ) from None
    return redis.asyncio


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
    if backend is not None:
        found = await backend.get(key, max_age=max_age)
        if found is not None:
            return structure(found)

    async def send() -> T:
        data = await client._request(request)
        result = structure(data)  # a body we cannot read is never kept
        if backend is not None and keep > 0:
            await backend.set(key, data, ttl=keep)
        return result

    return await shared.in_flight.run((key, shared.converter.strict), send)


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
    date_grouping: str | None
    reason: str
    requests: tuple[ApiRequest, ...] = attrs.field(repr=False, eq=False)


def _zone(name: str) -> Any:
    if name.upper() == "UTC":
        return timezone.utc
    return ZoneInfo(name)


def _floor(moment: datetime, grouping: str) -> datetime:
    if grouping == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if grouping == "day":
        return day
    if grouping == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def _add(moment: datetime, grouping: str, count: int) -> datetime:
    """`moment` (a period start) plus `count` periods, or datetime.max past the calendar."""
    try:
        if grouping == "hour":
            return moment + timedelta(hours=count)
        if grouping == "day":
            return moment + timedelta(days=count)
        if grouping == "month":
            months = moment.year * 12 + moment.month - 1 + count
            return moment.replace(year=months // 12, month=months % 12 + 1)
        return moment.replace(year=moment.year + count)
    except (OverflowError, ValueError):
        return datetime.max


def _periods(start: datetime, end: datetime, grouping: str) -> int:
    """How many periods (rows per group) the range [start, end] touches."""
    first, last = _floor(start, grouping), _floor(end, grouping)
    if grouping == "hour":
        return (last - first) // timedelta(hours=1) + 1
    if grouping == "day":
        return (last - first).days + 1
    if grouping == "month":
        return (last.year - first.year) * 12 + last.month - first.month + 1
    return last.year - first.year + 1


def _elapsed(start: datetime, end: datetime, zone: Any) -> timedelta:
    if zone is None:
        return end - start
    return end.replace(tzinfo=zone).astimezone(timezone.utc) - start.replace(
        tzinfo=zone
    ).astimezone(timezone.utc)


def _unclear(moment: datetime, zone: Any) -> bool:
    """A wall-clock time that a DST change skips or repeats in `zone`."""
    if zone is None:
        return False
    early = moment.replace(tzinfo=zone, fold=0)
    late = moment.replace(tzinfo=zone, fold=1)
    return early.utcoffset() != late.utcoffset()


def _fits(start: datetime, end: datetime, grouping: str, limit: int, zone: Any) -> bool:
    if grouping == "hour" and (
        end - start > MAX_HOUR_SPAN or _elapsed(start, end, zone) > MAX_HOUR_SPAN
    ):
        return False
    return _periods(start, end, grouping) <= limit


def _boundary(start: datetime, grouping: str, limit: int, zone: Any) -> datetime:
    """Where the first sub-range of a split starting at `start` should end (exclusive)."""
    base = _floor(start, grouping)
    step = min(limit, 168) if grouping == "hour" else limit
    boundary = _add(base, grouping, step)
    if grouping == "hour":
        # at most 7 days on the wall clock (the API's rule) and in elapsed time
        # (should the API count that way across a DST change)
        while boundary - _SECOND > start and _elapsed(start, boundary - _SECOND, zone) > (
            MAX_HOUR_SPAN
        ):
            boundary = _add(boundary, grouping, -1)
    # Never cut at a time the DST change skips or repeats: the API would have to
    # guess which instant we meant, and could drop or double an hour.
    candidate = boundary
    while candidate > start and (_unclear(candidate, zone) or _unclear(candidate - _SECOND, zone)):
        candidate = _add(candidate, grouping, -1)
    return candidate if candidate > start else boundary


def split_range(
    start: datetime,
    end: datetime,
    grouping: str,
    limit: int,
    timezone_name: str | None = None,
) -> list[tuple[datetime, datetime]]:
    """Consecutive [from, to] ranges (wall clock, inclusive, 1 s apart) covering [start, end].

    Each range is valid for one call: for hour grouping at most 7 days (both on the
    wall clock and, when the timezone is known, in elapsed time); for every
    grouping at most `limit` periods. Ranges after the first start on a period
    boundary, so no period's row is split between two calls, and never at a wall
    clock time a DST change skips or repeats.
    """
    zone = _zone(timezone_name) if timezone_name is not None else None
    ranges: list[tuple[datetime, datetime]] = []
    while not _fits(start, end, grouping, limit, zone):
        boundary = _boundary(start, grouping, limit, zone)
        if boundary > end:  # pragma: no cover - _fits() said the rest does not fit
            break
        ranges.append((start, boundary - _SECOND))
        start = boundary
    ranges.append((start, end))
    return ranges


def halve_range(
    start: datetime, end: datetime, grouping: str, timezone_name: str | None = None
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]] | None:
    """[start, end] cut in two on a period boundary, or None for a single period."""
    periods = _periods(start, end, grouping)
    if periods < 2:
        return None
    zone = _zone(timezone_name) if timezone_name is not None else None
    middle = _add(_floor(start, grouping), grouping, periods // 2)
    candidate = middle
    while candidate > start and (_unclear(candidate, zone) or _unclear(candidate - _SECOND, zone)):
        candidate = _add(candidate, grouping, -1)
    if candidate > start:
        middle = candidate
    return (start, middle - _SECOND), (middle, end)


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
    structure: Callable[[Any], list[AggregationRow]],
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
    ) -> list[list[AggregationRow]]:
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
    merged = AggregationRows(columns=columns, timezone=zone_name, truncated=truncated)
    for chunk in chunks:
        merged.extend(chunk)
    if order_by is not None and len(chunks) > 1:  # each call sorted only its own rows
        field, reverse = order_by
        present = [row for row in merged if getattr(row, field) is not None]
        absent = [row for row in merged if getattr(row, field) is None]
        present.sort(key=lambda row: getattr(row, field), reverse=reverse)
        merged[:] = present + absent
    return merged
