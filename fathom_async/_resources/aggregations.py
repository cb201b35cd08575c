"""`/aggregations`: Fathom's flexible report, validated before it costs a request.

Reports share the 10-per-minute bucket, so a query the API would refuse with a 400
must be refused here instead, for free. `aggregation_plan()` says how many calls a
query takes (one, or several when split); running them (shared, cached, merged)
is `_reports`' job. The answer in practice is a bare JSON array
whose numbers are strings (FACTS.md); the documented list wrapper is accepted too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from datetime import timezone as dt_timezone
from typing import Any, Literal, overload

from .._converter import Converter
from .._dates import TIME_FORMAT, hour_range_fits, site_now, split_range
from .._exceptions import APIResponseError, ValidationError
from .._filters import Filter, encode_filters
from .._frames import AggregationRows
from .._models import AggregationRow
from .._protocol import ApiRequest, encode_id, join_csv
from .._reports import ReportPlan, check_max_age, run_aggregation
from .._rows import structure_table
from .._telemetry import public_call
from .._types import (
    AGGREGATES,
    DATE_GROUPINGS,
    ENTITIES,
    FIELD_GROUPINGS,
    DateGrouping,
    Entity,
    EventAggregate,
    FieldGrouping,
    PageviewAggregate,
)
from .._validation import check_bool, check_choice, check_int, check_report_time, check_timezone
from ._base import Resource

__all__ = ["AggregationsResource", "aggregation_plan", "aggregation_request"]

MAX_LIMIT = 1000
DEFAULT_GROUPED_LIMIT = 500  # what the API sends when field_grouping is set


def _check_target(
    entity: str, site_id: str | None, entity_id: str | None, entity_name: str | None
) -> list[tuple[str, str]]:
    for field, value in (("site_id", site_id), ("entity_id", entity_id)):
        if value is not None:
            encode_id(field, value)  # same rules as ids in paths
    if entity_name is not None and (not isinstance(entity_name, str) or not entity_name.strip()):
        raise ValidationError("entity_name", entity_name, "an event name (a non-blank string)")
    if entity == "pageview":
        if entity_name is not None:
            raise ValidationError("entity_name", entity_name, "None for pageview reports")
        if site_id is not None and entity_id is not None and site_id != entity_id:
            raise ValidationError("entity_id", entity_id, "the site id, or left out with site_id")
        target = site_id if site_id is not None else entity_id
        if target is None:
            raise ValidationError("site_id", None, "the id of the site to report on")
        return [("entity_id", target)]
    if entity_id is not None:
        if entity_name is not None:
            raise ValidationError("entity_name", entity_name, "None when entity_id is given")
        params = [("entity_id", entity_id)]
        return params + ([("site_id", site_id)] if site_id is not None else [])
    if entity_name is None or site_id is None:
        raise ValidationError(
            "entity_name" if site_id is not None else "site_id",
            None,
            "site_id and entity_name (or the event's entity_id) for event reports",
        )
    return [("site_id", site_id), ("entity_name", entity_name)]


def _check_sort(sort_by: object, sortable: Iterable[str]) -> str:
    allowed = sorted(set(sortable))
    if not isinstance(sort_by, str) or sort_by.count(":") != 1:
        raise ValidationError("sort_by", sort_by, "'field:asc' or 'field:desc'")
    field, direction = sort_by.split(":")
    if direction not in ("asc", "desc"):
        raise ValidationError("sort_by", sort_by, "a direction of asc or desc")
    if field not in allowed:
        raise ValidationError("sort_by", sort_by, f"a field you asked for: {', '.join(allowed)}")
    return sort_by


def aggregation_request(
    *,
    entity: Entity,
    aggregates: str | Sequence[str],
    site_id: str | None = None,
    entity_id: str | None = None,
    entity_name: str | None = None,
    date_grouping: DateGrouping | None = None,
    field_grouping: str | Sequence[str] | None = None,
    sort_by: str | None = None,
    timezone: str | None = None,
    date_from: datetime | date | str | None = None,
    date_to: datetime | date | str | None = None,
    limit: int | None = None,
    filters: Iterable[Filter | Mapping[str, str]] | None = None,
    now: datetime | None = None,
    check_hour_range: bool = True,
) -> ApiRequest:
    """Validate an aggregation query and describe its request (pure; no I/O).

    `check_hour_range=False` skips the 7-day rule for hour grouping, for a plan
    that splits the range into calls that each keep it.
    """
    check_choice("entity", entity, ENTITIES)
    query: list[tuple[str, str]] = [("entity", entity)]
    query += _check_target(entity, site_id, entity_id, entity_name)
    query.append(("aggregates", join_csv("aggregates", aggregates, AGGREGATES[entity])))
    sortable = [aggregates] if isinstance(aggregates, str) else list(aggregates)
    if date_grouping is not None:
        check_choice("date_grouping", date_grouping, DATE_GROUPINGS)
        query.append(("date_grouping", date_grouping))
        sortable.append("timestamp")
    if field_grouping is not None:
        groups = join_csv("field_grouping", field_grouping, FIELD_GROUPINGS)
        query.append(("field_grouping", groups))
        sortable += [field_grouping] if isinstance(field_grouping, str) else list(field_grouping)
    if filters is not None:
        query.append(("filters", encode_filters(filters)))
    if sort_by is not None:
        query.append(("sort_by", _check_sort(sort_by, sortable)))
    if timezone is not None:
        query.append(("timezone", check_timezone(timezone)))
    start = end = None
    if date_from is not None:
        start = check_report_time("date_from", date_from, end=False, tz=timezone)
        query.append(("date_from", start.strftime(TIME_FORMAT)))
    if date_to is not None:
        end = check_report_time("date_to", date_to, end=True, tz=timezone)
        query.append(("date_to", end.strftime(TIME_FORMAT)))
    if start is not None and end is not None and start > end:
        raise ValidationError("date_to", date_to, f"not before date_from ({start:{TIME_FORMAT}})")
    if date_grouping == "hour" and check_hour_range:
        _check_hour_range(start, end, timezone, now)
    if limit is not None:
        query.append(("limit", str(check_int("limit", limit, 1, 1000))))
    return ApiRequest("GET", "/aggregations", "reports", query=tuple(query))


def _check_hour_range(
    start: datetime | None, end: datetime | None, zone_name: str | None, now: datetime | None
) -> None:
    """The API's 7-day rule for hour grouping, counted as the splitter counts it.

    Without `date_to` the range ends "now" on the site's clock: exactly known with
    `timezone=`, else taken as the earliest any clock reads, so only a range too
    long on every clock is refused.
    """
    if start is None:
        raise ValidationError(
            "date_from", None, "a start within 7 days of date_to for hour grouping"
        )
    if end is None:
        end = site_now(now or datetime.now(dt_timezone.utc), zone_name)
    if not hour_range_fits(start, end, zone_name):
        raise ValidationError(
            "date_grouping", "hour",
            "day, month or year for ranges over 7 days of elapsed time (API rule)",
        )


def aggregation_plan(
    *,
    entity: Entity,
    aggregates: str | Sequence[str],
    site_id: str | None = None,
    entity_id: str | None = None,
    entity_name: str | None = None,
    date_grouping: DateGrouping | None = None,
    field_grouping: str | Sequence[str] | None = None,
    sort_by: str | None = None,
    timezone: str | None = None,
    date_from: datetime | date | str | None = None,
    date_to: datetime | date | str | None = None,
    limit: int | None = None,
    filters: Iterable[Filter | Mapping[str, str]] | None = None,
    now: datetime | None = None,
    split: bool = True,
) -> ReportPlan:
    """The calls an aggregation takes (pure; no I/O); `split=False` is always one.

    Splitting asks each call for `limit` rows (1000, the most, if not given) and
    cuts [date_from, date_to] into ranges that each fit one call (`split_range`):
    it needs a `date_grouping` and both bounds, else the query stays one call.
    """
    check_bool("split", split)

    def build(
        date_from: datetime | date | str | None,
        date_to: datetime | date | str | None,
        limit: int | None,
        check_hour_range: bool = True,
    ) -> ApiRequest:
        return aggregation_request(
            entity=entity, aggregates=aggregates, site_id=site_id, entity_id=entity_id,
            entity_name=entity_name, date_grouping=date_grouping,
            field_grouping=field_grouping, sort_by=sort_by, timezone=timezone,
            date_from=date_from, date_to=date_to, limit=limit, filters=filters, now=now,
            check_hour_range=check_hour_range,
        )

    if not split:
        request = build(date_from, date_to, limit)
        default = DEFAULT_GROUPED_LIMIT if field_grouping is not None else None
        return _plan((request,), limit if limit is not None else default, date_grouping,
                     "one call (split=False)")
    per_call = limit if limit is not None else MAX_LIMIT
    whole = build(date_from, date_to, per_call, check_hour_range=False)
    start, end = _bounds(whole)
    if date_grouping is None or start is None or end is None:
        if date_grouping == "hour":
            whole = build(date_from, date_to, per_call)  # the 7-day rule, as one call
        return _plan((whole,), per_call, date_grouping,
                     "one call: splitting needs date_grouping, date_from and date_to")
    ranges = split_range(start, end, date_grouping, per_call, timezone)
    requests = tuple(build(first, last, per_call) for first, last in ranges)
    reason = "one call" if len(ranges) == 1 else (
        f"{len(ranges)} calls: {date_grouping} grouping, at most "
        + ("7 days and " if date_grouping == "hour" else "")
        + f"{per_call} {date_grouping}s per call"
    )
    return _plan(requests, per_call, date_grouping, reason)


def _bounds(request: ApiRequest) -> tuple[datetime | None, datetime | None]:
    query = dict(request.query)
    start, end = query.get("date_from"), query.get("date_to")
    return (
        datetime.strptime(start, TIME_FORMAT) if start is not None else None,
        datetime.strptime(end, TIME_FORMAT) if end is not None else None,
    )


def _plan(
    requests: tuple[ApiRequest, ...],
    limit: int | None,
    grouping: DateGrouping | None,
    reason: str,
) -> ReportPlan:
    return ReportPlan(
        calls=len(requests),
        ranges=tuple(_bounds(request) for request in requests),
        limit=limit,
        date_grouping=grouping,
        reason=reason,
        requests=requests,
    )


def _read_rows(converter: Converter) -> Callable[[Any], AggregationRows]:
    def read(data: Any) -> AggregationRows:
        if isinstance(data, Mapping) and isinstance(data.get("data"), list):
            data = data["data"]  # the documented wrapper; the live API sends a bare array
        if not isinstance(data, list):
            raise APIResponseError("expected a list of aggregation rows", body=data)
        table = structure_table(data, converter)
        if table is None:  # rows only the converter can read (or refuse): made now
            return AggregationRows(converter.structure_many(data, AggregationRow))
        return AggregationRows._from_table(table)

    return read


def _columns(
    aggregates: str | Sequence[str],
    date_grouping: str | None,
    field_grouping: Sequence[str] | str | None,
) -> tuple[str, ...]:
    names = [aggregates] if isinstance(aggregates, str) else list(aggregates)
    if date_grouping is not None:
        names.append("date")
    if field_grouping is not None:
        names += [field_grouping] if isinstance(field_grouping, str) else list(field_grouping)
    return tuple(names)


def _order_by(sort_by: str | None) -> tuple[str, bool] | None:
    """The field and direction merged rows are sorted by (None: by range, as they came)."""
    if sort_by is None or sort_by.startswith("timestamp:"):
        return None
    field, direction = sort_by.split(":")
    return field, direction == "desc"


class AggregationsResource(Resource):
    """`GET /aggregations`: Fathom's reports (the reports bucket, 10 calls a minute).

    Every call may also raise `AuthenticationError` (a bad token), `RateLimitError`
    (429s beyond the retries), `ServerError` (5xx beyond the retries),
    `APIConnectionError` / `APITimeoutError` (no answer) and `ClientClosedError`.
    """

    @overload
    async def query(
        self,
        *,
        entity: Literal["pageview"],
        aggregates: PageviewAggregate | Sequence[PageviewAggregate],
        site_id: str | None = None,
        entity_id: str | None = None,
        entity_name: str | None = None,
        date_grouping: DateGrouping | None = None,
        field_grouping: FieldGrouping | Sequence[FieldGrouping] | None = None,
        sort_by: str | None = None,
        timezone: str | None = None,
        date_from: datetime | date | str | None = None,
        date_to: datetime | date | str | None = None,
        limit: int | None = None,
        filters: Iterable[Filter | Mapping[str, str]] | None = None,
        split: bool = False,
        cache: bool = True,
        max_age: float | None = None,
    ) -> AggregationRows: ...

    @overload
    async def query(
        self,
        *,
        entity: Literal["event"],
        aggregates: EventAggregate | Sequence[EventAggregate],
        site_id: str | None = None,
        entity_id: str | None = None,
        entity_name: str | None = None,
        date_grouping: DateGrouping | None = None,
        field_grouping: FieldGrouping | Sequence[FieldGrouping] | None = None,
        sort_by: str | None = None,
        timezone: str | None = None,
        date_from: datetime | date | str | None = None,
        date_to: datetime | date | str | None = None,
        limit: int | None = None,
        filters: Iterable[Filter | Mapping[str, str]] | None = None,
        split: bool = False,
        cache: bool = True,
        max_age: float | None = None,
    ) -> AggregationRows: ...

    @public_call("aggregations.query", "reports")
    async def query(
        self,
        *,
        entity: Entity,
        aggregates: str | Sequence[str],
        site_id: str | None = None,
        entity_id: str | None = None,
        entity_name: str | None = None,
        date_grouping: DateGrouping | None = None,
        field_grouping: str | Sequence[str] | None = None,
        sort_by: str | None = None,
        timezone: str | None = None,
        date_from: datetime | date | str | None = None,
        date_to: datetime | date | str | None = None,
        limit: int | None = None,
        filters: Iterable[Filter | Mapping[str, str]] | None = None,
        split: bool = False,
        cache: bool = True,
        max_age: float | None = None,
    ) -> AggregationRows:
        """Run an aggregation and return its rows, numbers typed (`GET /aggregations`).

        Pageview reports name the site (`site_id`); event reports name the site and
        the event (`site_id` + `entity_name`, or the event's `entity_id`). Dates are
        wall-clock times in the site's timezone: naive datetimes,
        `YYYY-MM-DD HH:MM:SS` strings, or a whole day as a `date` or a `YYYY-MM-DD`
        string. Hour grouping allows at most 7 days of elapsed time: with
        `timezone=`, a week across a DST fall-back (7 days and an hour) is too long.

        The rows are an `AggregationRows`, an immutable sequence kept as typed
        columns: each row is made when first touched, and `.to_pandas()`,
        `.to_polars()` and `.to_dicts()` read the columns without making rows.
        `.truncated` is set, and a warning logged, when rows may be missing: a call
        came back with exactly its row cap (the API's default 500 for a field
        grouping without `limit`, or the split's per-call `limit`) and could not be
        split further. A top-N query, one that passes `limit=` without `split`, gets
        the N rows it asked for: it is never marked truncated. Identical queries in
        flight at once share one request.

        Args:
            entity: `"pageview"` or `"event"`; it decides which `aggregates` are
                allowed (`PageviewAggregate` or `EventAggregate` in
                `fathom_async.types`, checked by type checkers too).
            timezone: deprecated by Fathom's newest API description, where reports
                use the site's own timezone. If given, it must be the site's zone:
                the client uses it for DST-safe splitting, for the cache's closed
                ranges and to label dates.
            split: run a long range as several calls (see `plan()`, which tells the
                cost first): hour grouping over 7 days, or more periods than
                `limit` (1000 if not given). A call that still comes back full is
                halved and run again; one that cannot be halved (a single period)
                sets `.truncated`. Rows are merged oldest range first with
                `sort_by="timestamp:asc"`, newest first unsorted or with
                `"timestamp:desc"` (as one call answers), and across calls by the
                field of any other `sort_by`. Give `timezone=` (the
                site's) so that no range is cut inside a DST change.
            cache: False skips the client's `report_cache` for this call.
            max_age: accept a cached answer only up to this many seconds old, and
                keep the fresh one at least that long.

        Raises:
            ValidationError: before any request, for a query the API would refuse
                with a 400 (an aggregate of the other entity, an unknown grouping,
                hour grouping over 7 days without `split`, a `sort_by` on a field not
                asked for, a limit over 1000, bad filters): a report call is one of
                ten a minute, too dear to spend on a 400.
            NotFoundError: the site or event does not exist, or the token cannot
                read it (the API does not say which).
            BadRequestError: a query the API refused anyway (say a lapsed subscription).
            UnprocessableEntityError: groupings the API cannot combine (422).
            AcquireTimeoutError: no slot of the reports bucket came within
                `acquire_timeout`; nothing was sent.
            APIResponseError: the answer was not a list of rows.
        """
        plan = aggregation_plan(
            entity=entity, aggregates=aggregates, site_id=site_id, entity_id=entity_id,
            entity_name=entity_name, date_grouping=date_grouping,
            field_grouping=field_grouping, sort_by=sort_by, timezone=timezone,
            date_from=date_from, date_to=date_to, limit=limit, filters=filters, split=split,
        )
        check_bool("cache", cache)
        max_age = check_max_age(max_age)

        def rebuild(first: datetime, last: datetime) -> ApiRequest:
            return aggregation_request(
                entity=entity, aggregates=aggregates, site_id=site_id, entity_id=entity_id,
                entity_name=entity_name, date_grouping=date_grouping,
                field_grouping=field_grouping, sort_by=sort_by, timezone=timezone,
                date_from=first, date_to=last, limit=plan.limit, filters=filters,
            )

        return await run_aggregation(
            self._client,
            plan,
            _read_rows(self._client._converter),
            rebuild=rebuild if split else None,
            cache=cache,
            max_age=max_age,
            # Unsorted date-grouped answers come newest first, call by call.
            descending=sort_by == "timestamp:desc"
            or (sort_by is None and date_grouping is not None),
            columns=_columns(aggregates, date_grouping, field_grouping),
            zone_name=timezone,
            order_by=_order_by(sort_by),
            limit_given=limit is not None,
        )

    @overload
    def plan(
        self,
        *,
        entity: Literal["pageview"],
        aggregates: PageviewAggregate | Sequence[PageviewAggregate],
        site_id: str | None = None,
        entity_id: str | None = None,
        entity_name: str | None = None,
        date_grouping: DateGrouping | None = None,
        field_grouping: FieldGrouping | Sequence[FieldGrouping] | None = None,
        sort_by: str | None = None,
        timezone: str | None = None,
        date_from: datetime | date | str | None = None,
        date_to: datetime | date | str | None = None,
        limit: int | None = None,
        filters: Iterable[Filter | Mapping[str, str]] | None = None,
    ) -> ReportPlan: ...

    @overload
    def plan(
        self,
        *,
        entity: Literal["event"],
        aggregates: EventAggregate | Sequence[EventAggregate],
        site_id: str | None = None,
        entity_id: str | None = None,
        entity_name: str | None = None,
        date_grouping: DateGrouping | None = None,
        field_grouping: FieldGrouping | Sequence[FieldGrouping] | None = None,
        sort_by: str | None = None,
        timezone: str | None = None,
        date_from: datetime | date | str | None = None,
        date_to: datetime | date | str | None = None,
        limit: int | None = None,
        filters: Iterable[Filter | Mapping[str, str]] | None = None,
    ) -> ReportPlan: ...

    def plan(
        self,
        *,
        entity: Entity,
        aggregates: str | Sequence[str],
        site_id: str | None = None,
        entity_id: str | None = None,
        entity_name: str | None = None,
        date_grouping: DateGrouping | None = None,
        field_grouping: str | Sequence[str] | None = None,
        sort_by: str | None = None,
        timezone: str | None = None,
        date_from: datetime | date | str | None = None,
        date_to: datetime | date | str | None = None,
        limit: int | None = None,
        filters: Iterable[Filter | Mapping[str, str]] | None = None,
    ) -> ReportPlan:
        """What `query(..., split=True)` would send (`GET /aggregations`), sending nothing.

        `plan.calls` is the number of requests (each one of the ten a minute),
        `plan.ranges` their date ranges. Validates the query like `query()` does.

        Raises:
            ValidationError: for a query `query()` would refuse, so the plan of a
                query is never one the API answers with a 400. Never anything else:
                planning does no I/O.
        """
        return aggregation_plan(
            entity=entity, aggregates=aggregates, site_id=site_id, entity_id=entity_id,
            entity_name=entity_name, date_grouping=date_grouping,
            field_grouping=field_grouping, sort_by=sort_by, timezone=timezone,
            date_from=date_from, date_to=date_to, limit=limit, filters=filters,
        )
