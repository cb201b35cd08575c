"""`/aggregations`: Fathom's flexible report, validated before it costs a request.

Reports share the 10-per-minute bucket, so a query the API would refuse with a 400
must be refused here instead, for free. The answer in practice is a bare JSON array
whose numbers are strings (FACTS.md); the documented list wrapper is accepted too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone

from .._exceptions import APIResponseError, ValidationError
from .._filters import Filter, encode_filters
from .._models import AggregationRow
from .._protocol import ApiRequest, encode_id, join_csv
from .._types import AGGREGATES, DATE_GROUPINGS, ENTITIES, FIELD_GROUPINGS, DateGrouping, Entity
from .._validation import check_choice, check_int, check_report_time, check_timezone
from ._base import Resource

__all__ = ["AggregationsResource", "aggregation_request"]

MAX_HOUR_RANGE = timedelta(days=7)
# The site's local "now" can be at most 14 h ahead of UTC.
_LOCAL_NOW_SLACK = timedelta(hours=14)
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


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
    aggregates: Sequence[str] | str,
    site_id: str | None = None,
    entity_id: str | None = None,
    entity_name: str | None = None,
    date_grouping: DateGrouping | None = None,
    field_grouping: Sequence[str] | str | None = None,
    sort_by: str | None = None,
    timezone: str | None = None,
    date_from: datetime | date | str | None = None,
    date_to: datetime | date | str | None = None,
    limit: int | None = None,
    filters: Iterable[Filter | Mapping[str, str]] | None = None,
    now: datetime | None = None,
) -> ApiRequest:
    """Validate an aggregation query and describe its request (pure; no I/O)."""
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
        query.append(("date_from", start.strftime(_TIME_FORMAT)))
    if date_to is not None:
        end = check_report_time("date_to", date_to, end=True, tz=timezone)
        query.append(("date_to", end.strftime(_TIME_FORMAT)))
    if start is not None and end is not None and start > end:
        raise ValidationError("date_to", date_to, f"not before date_from ({start:{_TIME_FORMAT}})")
    if date_grouping == "hour":
        _check_hour_range(start, end, now)
    if limit is not None:
        query.append(("limit", str(check_int("limit", limit, 1, 1000))))
    return ApiRequest("GET", "/aggregations", "reports", query=tuple(query))


def _check_hour_range(start: datetime | None, end: datetime | None, now: datetime | None) -> None:
    if start is None:
        raise ValidationError(
            "date_from", None, "a start within 7 days of date_to for hour grouping"
        )
    if end is None:
        utc_now = now or datetime.now(dt_timezone.utc)
        end = utc_now.replace(tzinfo=None) - _LOCAL_NOW_SLACK
        if end - start <= MAX_HOUR_RANGE:
            return
    if end - start > MAX_HOUR_RANGE:
        raise ValidationError(
            "date_grouping", "hour", "day, month or year for ranges over 7 days (API rule)"
        )


class AggregationsResource(Resource):
    async def query(
        self,
        *,
        entity: Entity,
        aggregates: Sequence[str] | str,
        site_id: str | None = None,
        entity_id: str | None = None,
        entity_name: str | None = None,
        date_grouping: DateGrouping | None = None,
        field_grouping: Sequence[str] | str | None = None,
        sort_by: str | None = None,
        timezone: str | None = None,
        date_from: datetime | date | str | None = None,
        date_to: datetime | date | str | None = None,
        limit: int | None = None,
        filters: Iterable[Filter | Mapping[str, str]] | None = None,
    ) -> list[AggregationRow]:
        """Run an aggregation and return its rows, numbers typed.

        Pageview reports name the site (`site_id`); event reports name the site and
        the event (`site_id` + `entity_name`, or the event's `entity_id`). Dates are
        wall-clock times in the site's timezone: naive datetimes, `date`s (a whole
        day) or `YYYY-MM-DD HH:MM:SS` strings.
        """
        request = aggregation_request(
            entity=entity,
            aggregates=aggregates,
            site_id=site_id,
            entity_id=entity_id,
            entity_name=entity_name,
            date_grouping=date_grouping,
            field_grouping=field_grouping,
            sort_by=sort_by,
            timezone=timezone,
            date_from=date_from,
            date_to=date_to,
            limit=limit,
            filters=filters,
        )
        data = await self._client._request(request)
        if isinstance(data, Mapping) and isinstance(data.get("data"), list):
            data = data["data"]  # the documented wrapper; the live API sends a bare array
        if not isinstance(data, list):
            raise APIResponseError("expected a list of aggregation rows", body=data)
        return list(self._client._converter.structure_many(data, AggregationRow))
