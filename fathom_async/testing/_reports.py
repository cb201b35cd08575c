"""Aggregations and current visitors, validated as the API does and computed in SQL.

Aggregates (pageview rows carry per-visit flags set when the traffic was stored):

- `pageviews` = number of pageviews; `visits` = pageviews that start a visit
  (`is_entry`); `uniques` = first views of a pathname within a visit (`is_unique`);
- `avg_duration` = total seconds on pages / visits, 2 decimals;
- `bounce_rate` = bounced visits / visits, a fraction with 4 decimals;
- `conversions` = completions; `unique_conversions` = first completion of the event
  in a visit; `value` = sum of values in cents.

Everything but the two ratios is a sum over rows, so the sum over any grouping
equals the ungrouped total, and `is X` plus `is not X` is the whole (no NULLs are
stored: missing dimensions are empty strings).

Date groups (in the report's timezone): hour `"2023-04-05 13:00:00"`, day
`"2023-04-05"`, month `"2023-04"`, year `"2023"`; only periods with data appear.
`is like` / `is not like` take `*` or `%` as "any run of characters"; a value without
either matches as a substring; matching ignores ASCII case (SQL LIKE). `matching` /
`not matching` are Python regular expressions searched in the value (case-sensitive).

Every number in the answer is a string, as the real API sends them.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._errors import ApiError

__all__ = [
    "AggregationQuery",
    "Filter",
    "current_visitors",
    "install_functions",
    "parse_aggregation",
    "run_aggregation",
]

Entity = Literal["pageview", "event"]

PAGEVIEW_AGGREGATES = {
    "visits": "COALESCE(SUM(is_entry), 0)",
    "uniques": "COALESCE(SUM(is_unique), 0)",
    "pageviews": "COUNT(*)",
    "avg_duration": "ROUND(COALESCE(SUM(duration) * 1.0 / NULLIF(SUM(is_entry), 0), 0), 2)",
    "bounce_rate": "ROUND(COALESCE(SUM(bounce) * 1.0 / NULLIF(SUM(is_entry), 0), 0), 4)",
}
EVENT_AGGREGATES = {
    "conversions": "COUNT(*)",
    "unique_conversions": "COALESCE(SUM(is_unique), 0)",
    "value": "COALESCE(SUM(value), 0)",
}
_DECIMALS = {"avg_duration": 2, "bounce_rate": 4}

GROUPABLE = (
    "hostname",
    "pathname",
    "entry_page",
    "exit_page",
    "referrer_hostname",
    "referrer_pathname",
    "referrer_source",
    "browser",
    "country_code",
    "city",
    "state",
    "region",
    "device_type",
    "operating_system",
    "utm_campaign",
    "utm_content",
    "utm_medium",
    "utm_source",
    "utm_term",
    "keyword",
    "ref",
)
FILTERABLE = (*(f for f in GROUPABLE if f != "keyword"), "domain")
PAGEVIEW_ONLY = frozenset({"entry_page", "exit_page"})
EXACT_ONLY = frozenset(
    {"device_type", "operating_system", "browser", "country_code", "city", "state", "region"}
)
OPERATORS = ("is", "is not", "is like", "is not like", "matching", "not matching")

_DATE_FORMATS = {
    "hour": "%Y-%m-%d %H:00:00",
    "day": "%Y-%m-%d",
    "month": "%Y-%m",
    "year": "%Y",
}
_TIMESTAMP = "%Y-%m-%d %H:%M:%S"
_DAY = "%Y-%m-%d"
_HOUR_GROUPING_SPAN = timedelta(days=7)
_INDEXED_SPAN = 31 * 86_400


@dataclass(frozen=True)
class Filter:
    property: str
    operator: str
    value: str


@dataclass(frozen=True)
class AggregationQuery:
    """A validated aggregation request; `entity_id`/`entity_name` still unresolved."""

    entity: Entity
    entity_id: str | None
    site_id: str | None
    entity_name: str | None
    aggregates: tuple[str, ...]
    date_grouping: str | None = None
    field_grouping: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    sort_by: tuple[str, str] | None = None
    limit: int | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    timezone: str | None = None


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _parse_timestamp(params: Mapping[str, str], name: str) -> datetime | None:
    """A bound as the API reads it: `Y-m-d H:i:s`, or a bare `Y-m-d` as that midnight.

    Callers of the live API send bare dates in both bounds and get answers (FACTS.md).
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    for layout in (_TIMESTAMP, _DAY):
        try:
            return datetime.strptime(raw, layout)
        except ValueError:
            continue
    raise ApiError.invalid(name, f"The {name} field must match the format Y-m-d H:i:s.")


def _parse_filters(raw: str, entity: Entity) -> tuple[Filter, ...]:
    try:
        decoded = json.loads(raw)
    except ValueError:
        raise ApiError.invalid(
            "filters", "The filters field must be a valid JSON string."
        ) from None
    if not isinstance(decoded, list):
        raise ApiError.invalid("filters", "The filters field must be a JSON array.")
    filters = []
    for index, item in enumerate(decoded):
        if not isinstance(item, dict) or not {"property", "operator", "value"} <= item.keys():
            raise ApiError.invalid(
                f"filters.{index}", "Each filter needs a property, an operator and a value."
            )
        prop, operator, value = item["property"], item["operator"], item["value"]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ApiError.invalid(f"filters.{index}.value", "The value must be a string.")
        if prop == "keyword":
            raise ApiError(400, "You cannot filter by keyword")
        if prop not in FILTERABLE:
            raise ApiError.invalid(
                f"filters.{index}.property", f"The selected property {prop!r} is invalid."
            )
        if operator not in OPERATORS:
            raise ApiError.invalid(
                f"filters.{index}.operator", f"The selected operator {operator!r} is invalid."
            )
        if prop in EXACT_ONLY and operator not in ("is", "is not"):
            raise ApiError.invalid(
                f"filters.{index}.operator",
                f"The {prop} property only supports the 'is' and 'is not' operators.",
            )
        if entity == "event" and prop in PAGEVIEW_ONLY:
            raise ApiError(422, f"You cannot filter events by {prop}")
        text = str(value)
        if operator in ("matching", "not matching"):
            try:
                re.compile(text)
            except re.error:
                raise ApiError.invalid(
                    f"filters.{index}.value", "The value is not a valid regular expression."
                ) from None
        filters.append(Filter(prop, operator, text))
    return tuple(filters)


def parse_aggregation(params: Mapping[str, str]) -> AggregationQuery:
    """Validate the query string of GET /aggregations (400 and 422 as the API answers)."""
    raw_entity = params.get("entity", "")
    if raw_entity not in ("pageview", "event"):
        message = (
            "The entity field is required." if not raw_entity else "The selected entity is invalid."
        )
        raise ApiError.invalid("entity", message)
    entity: Entity = "pageview" if raw_entity == "pageview" else "event"
    entity_id = params.get("entity_id") or None
    site_id = params.get("site_id") or None
    entity_name = params.get("entity_name") or None
    if entity_id is None and site_id is None:
        raise ApiError.invalid("entity_id", "The entity id field is required.")
    if entity == "event" and entity_id is None and entity_name is None:
        raise ApiError.invalid(
            "entity_name", "The entity name field is required when entity id is not present."
        )

    own, other = (
        (PAGEVIEW_AGGREGATES, EVENT_AGGREGATES)
        if entity == "pageview"
        else (EVENT_AGGREGATES, PAGEVIEW_AGGREGATES)
    )
    aggregates = _split(params.get("aggregates", ""))
    if not aggregates:
        raise ApiError.invalid("aggregates", "The aggregates field is required.")
    for aggregate in aggregates:
        if aggregate in other:
            raise ApiError(422, f"The {aggregate} aggregate is not available for {entity}s")
        if aggregate not in own:
            raise ApiError.invalid("aggregates", f"The aggregate {aggregate!r} is invalid.")
    if len(set(aggregates)) != len(aggregates):
        raise ApiError.invalid("aggregates", "The aggregates field has a duplicate value.")

    date_grouping = params.get("date_grouping") or None
    if date_grouping is not None and date_grouping not in _DATE_FORMATS:
        raise ApiError.invalid("date_grouping", "The selected date grouping is invalid.")

    field_grouping = _split(params.get("field_grouping", ""))
    for name in field_grouping:
        if name == "domain":
            raise ApiError(400, "You cannot group by domain")
        if name not in GROUPABLE:
            raise ApiError.invalid("field_grouping", f"The field grouping {name!r} is invalid.")
        if entity == "event" and name in PAGEVIEW_ONLY:
            raise ApiError(422, f"You cannot group events by {name}")
    if len(set(field_grouping)) != len(field_grouping):
        raise ApiError.invalid("field_grouping", "The field grouping has a duplicate value.")

    filters = _parse_filters(params["filters"], entity) if params.get("filters") else ()

    sort_by = None
    if params.get("sort_by"):
        field, _, direction = params["sort_by"].partition(":")
        sortable = {*aggregates, *field_grouping, *(("timestamp",) if date_grouping else ())}
        if field not in sortable or direction not in ("asc", "desc"):
            raise ApiError.invalid(
                "sort_by",
                "The sort by field must be field:asc or field:desc, with a field you asked for.",
            )
        sort_by = (field, direction)

    limit: int | None = 500 if field_grouping else None
    if params.get("limit"):
        try:
            limit = int(params["limit"])
        except ValueError:
            raise ApiError.invalid("limit", "The limit must be an integer.") from None
        if not 1 <= limit <= 1000:
            raise ApiError.invalid("limit", "The limit must be between 1 and 1000.")

    date_from = _parse_timestamp(params, "date_from")
    date_to = _parse_timestamp(params, "date_to")
    if date_from is not None and date_to is not None and date_from > date_to:
        raise ApiError.invalid("date_from", "The date from must be a date before date to.")

    tz = params.get("timezone") or None
    if tz is not None:
        _zone(tz)

    return AggregationQuery(
        entity=entity,
        entity_id=entity_id,
        site_id=site_id,
        entity_name=entity_name,
        aggregates=aggregates,
        date_grouping=date_grouping,
        field_grouping=field_grouping,
        filters=filters,
        sort_by=sort_by,
        limit=limit,
        date_from=date_from,
        date_to=date_to,
        timezone=tz,
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: too long for a path
        raise ApiError.invalid("timezone", "The timezone must be a valid zone.") from None


def _to_epoch(local: datetime, zone: ZoneInfo) -> int:
    return int(local.replace(tzinfo=zone).timestamp())


@functools.lru_cache(maxsize=65_536)
def _offset(zone_name: str, hour: int) -> int:
    """Seconds to add to a UTC time in this UTC hour to get the zone's local time."""
    moment = datetime.fromtimestamp(hour * 3600, timezone.utc).astimezone(ZoneInfo(zone_name))
    offset = moment.utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _local_epoch(ts: int, zone_name: str) -> int:
    return ts + _offset(zone_name, ts // 3600)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: str) -> bool:
    return _compiled(pattern).search(value) is not None


def install_functions(db: sqlite3.Connection) -> None:
    """Register the SQL functions reports use: REGEXP and fathom_local_epoch."""
    db.create_function("regexp", 2, _regexp, deterministic=True)
    db.create_function("fathom_local_epoch", 2, _local_epoch, deterministic=True)


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("_", "\\_")
    pattern = escaped.replace("*", "%")
    return pattern if "%" in pattern else f"%{pattern}%"


def _filter_sql(item: Filter) -> tuple[str, str]:
    column = item.property
    if item.operator == "is":
        return f"{column} = ?", item.value
    if item.operator == "is not":
        return f"{column} != ?", item.value
    if item.operator == "is like":
        return f"{column} LIKE ? ESCAPE '\\'", _like_pattern(item.value)
    if item.operator == "is not like":
        return f"{column} NOT LIKE ? ESCAPE '\\'", _like_pattern(item.value)
    if item.operator == "matching":
        return f"{column} REGEXP ?", item.value
    return f"NOT ({column} REGEXP ?)", item.value


def run_aggregation(
    db: sqlite3.Connection,
    query: AggregationQuery,
    *,
    site_id: str,
    event_ids: tuple[str, ...],
    zone_name: str,
    now: float,
) -> list[dict[str, str]]:
    """Answer a validated query for one site (or these events of it).

    `zone_name` is the report's timezone: `date_from`/`date_to` are read in it and
    dates are grouped in it. `now` (UNIX time) is the default `date_to`.
    """
    zone = _zone(zone_name)
    date_to = _to_epoch(query.date_to, zone) if query.date_to is not None else int(now)
    date_from = _to_epoch(query.date_from, zone) if query.date_from is not None else None
    if query.date_grouping == "hour" and (
        date_from is None or date_to - date_from > _HOUR_GROUPING_SPAN.total_seconds()
    ):
        raise ApiError(400, "Hour grouping is only available for ranges of up to 7 days")

    table, aggregate_sql = (
        ("pageviews", PAGEVIEW_AGGREGATES)
        if query.entity == "pageview"
        else ("completions", EVENT_AGGREGATES)
    )
    where: list[str] = []
    params: list[object] = []
    if query.entity == "pageview":
        # Reading most of a site's rows through the (site_id, ts) index costs a lookup
        # per row; a plain scan is faster then, so the index is only offered to the
        # planner for short ranges (a unary + hides a column from it).
        narrow = date_from is not None and date_to - date_from <= _INDEXED_SPAN
        where.append("site_id = ?" if narrow else "+site_id = ?")
        params.append(site_id)
    else:
        where.append(f"event_id IN ({', '.join('?' * len(event_ids)) or 'NULL'})")
        params.extend(event_ids)
    where.append("ts <= ?")
    params.append(date_to)
    if date_from is not None:
        where.append("ts >= ?")
        params.append(date_from)
    for item in query.filters:
        clause, value = _filter_sql(item)
        where.append(clause)
        params.append(value)

    select = [f"{aggregate_sql[name]} AS {name}" for name in query.aggregates]
    select.extend(query.field_grouping)
    group = list(query.field_grouping)
    select_params: list[object] = []
    if query.date_grouping is not None:
        moment = "ts" if zone_name == "UTC" else "fathom_local_epoch(ts, ?)"
        if zone_name != "UTC":
            select_params.append(zone_name)
        select.append(
            f"strftime('{_DATE_FORMATS[query.date_grouping]}', {moment}, 'unixepoch') AS date"
        )
        group.insert(0, "date")

    order: list[str] = []
    if query.sort_by is not None:
        field, direction = query.sort_by
        order.append(f"{'date' if field == 'timestamp' else field} {direction.upper()}")
    if query.date_grouping is not None:
        order.append("date DESC")  # newest first when unsorted
    order.extend(f"{name} ASC" for name in query.field_grouping)

    sql = f"SELECT {', '.join(select)} FROM {table} WHERE {' AND '.join(where)}"
    if group:
        sql += f" GROUP BY {', '.join(group)}"
    if order:
        sql += f" ORDER BY {', '.join(order)}"
    if query.limit is not None:
        sql += " LIMIT ?"
        params.append(query.limit)

    cursor = db.execute(sql, [*select_params, *params])
    names = [description[0] for description in cursor.description]
    return [_format_row(names, row) for row in cursor]


def _format_row(names: list[str], row: tuple[object, ...]) -> dict[str, str]:
    formatted = {}
    for name, value in zip(names, row, strict=True):
        if name in _DECIMALS:
            formatted[name] = f"{float(value):.{_DECIMALS[name]}f}"  # type: ignore[arg-type]
        else:
            formatted[name] = str(value)
    return formatted


_LIVE_SECONDS = 300
_SESSION_LOOKBACK = 3600
_TOP = 150


def current_visitors(
    db: sqlite3.Connection, site_id: str, *, now: float, detailed: bool
) -> dict[str, object]:
    """Visits with a pageview in the last five minutes; with `detailed`, where they are
    (their latest page) and where they came from (their entry referrer), top 150 each.

    The top-level total is a number and the nested totals strings, as observed.
    """
    since, until = int(now) - _LIVE_SECONDS, int(now)
    live = (
        "SELECT session_id, MAX(ts) AS last_ts, hostname, pathname FROM pageviews"
        " WHERE site_id = ? AND ts > ? AND ts <= ? GROUP BY session_id"
    )
    (total,) = db.execute(f"SELECT COUNT(*) FROM ({live})", (site_id, since, until)).fetchone()
    if not detailed:
        return {"total": total}
    content = db.execute(
        f"SELECT hostname, pathname, COUNT(*) AS total FROM ({live})"
        " GROUP BY hostname, pathname ORDER BY total DESC, hostname, pathname LIMIT ?",
        (site_id, since, until, _TOP),
    ).fetchall()
    referrers = db.execute(
        "SELECT referrer_hostname, referrer_pathname, COUNT(DISTINCT session_id) AS total"
        " FROM pageviews WHERE site_id = ? AND ts > ? AND ts <= ? AND is_entry = 1"
        " AND referrer_hostname != ''"
        " AND session_id IN (SELECT session_id FROM pageviews"
        "  WHERE site_id = ? AND ts > ? AND ts <= ?)"
        " GROUP BY referrer_hostname, referrer_pathname"
        " ORDER BY total DESC, referrer_hostname, referrer_pathname LIMIT ?",
        (site_id, since - _SESSION_LOOKBACK, until, site_id, since, until, _TOP),
    ).fetchall()
    return {
        "total": total,
        "content": [
            {"hostname": hostname, "pathname": pathname, "total": str(count)}
            for hostname, pathname, count in content
        ],
        "referrers": [
            {"referrer_hostname": host, "referrer_pathname": path, "total": str(count)}
            for host, path, count in referrers
        ],
    }
