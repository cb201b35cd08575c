"""What to export, described as data, and the date arithmetic of its chunks.

An `ExportSpec` is everything that decides which rows an export produces. Its
fingerprint is written to the manifest, so a resumed export can prove it is the same
export (and a changed one is refused instead of mixing two plans in one directory).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, Literal, get_args

import attrs

from .._exceptions import ValidationError
from .._types import (
    DATE_GROUPINGS,
    EVENT_AGGREGATES,
    FIELD_GROUPINGS,
    PAGEVIEW_AGGREGATES,
    DateGrouping,
    EventAggregate,
    FieldGrouping,
    PageviewAggregate,
)

__all__ = ["ExportEntity", "ExportFormat", "ExportSpec"]

ExportEntity = Literal["sites", "events", "milestones", "pageviews", "event_conversions"]
"""What an export writes: the three entity lists, and the two report series
(pageviews per site, conversions per event)."""
ExportFormat = Literal["jsonl", "csv", "parquet"]
"""The data files' format (`parquet` needs the `parquet` extra)."""
ENTITIES: tuple[ExportEntity, ...] = get_args(ExportEntity)
FORMATS: tuple[str, ...] = get_args(ExportFormat)
# The API allows hour grouping over at most 7 days, measured in the site's timezone:
# a week of wall-clock days that crosses a DST change lasts 7 days and an hour. Six
# days leave room for any DST shift.
MAX_HOUR_DAYS = 6


def _names(
    field: str, value: Sequence[str], allowed: Sequence[str], *, empty: bool
) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValidationError(field, value, "a list of names, not one string")
    items = tuple(value)
    if not items and not empty:
        raise ValidationError(field, items, f"at least one of {', '.join(allowed)}")
    for item in items:
        if item not in allowed:
            raise ValidationError(field, item, f"one of {', '.join(allowed)}")
    if len(set(items)) != len(items):
        raise ValidationError(field, items, "each name once")
    return items


# One converter per field type: the attrs plugin types `__init__` from the converter's
# argument, and cannot read a generic one.
def _entities(value: Sequence[ExportEntity]) -> tuple[ExportEntity, ...]:
    return tuple(value)


def _pageview_aggregates(value: Sequence[PageviewAggregate]) -> tuple[PageviewAggregate, ...]:
    return tuple(value)


def _event_aggregates(value: Sequence[EventAggregate]) -> tuple[EventAggregate, ...]:
    return tuple(value)


def _groupings(value: Sequence[FieldGrouping]) -> tuple[FieldGrouping, ...]:
    return tuple(value)


def _optional_sites(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen
class ExportSpec:
    """Which rows to export. Dates are whole days in each site's timezone, inclusive.

    `sites=None` exports every site the token can see. `entities` picks the parts:
    the site list, each site's events and milestones, pageview aggregations
    (`pageview_aggregates` grouped by `granularity` and `pageview_grouping`) and
    event aggregations (one series per event name).
    """

    date_from: date
    date_to: date
    sites: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_sites)
    entities: tuple[ExportEntity, ...] = attrs.field(default=ENTITIES, converter=_entities)
    granularity: DateGrouping = "day"
    pageview_aggregates: tuple[PageviewAggregate, ...] = attrs.field(
        default=PAGEVIEW_AGGREGATES, converter=_pageview_aggregates
    )
    pageview_grouping: tuple[FieldGrouping, ...] = attrs.field(
        default=("pathname",), converter=_groupings
    )
    event_aggregates: tuple[EventAggregate, ...] = attrs.field(
        default=EVENT_AGGREGATES, converter=_event_aggregates
    )
    event_grouping: tuple[FieldGrouping, ...] = attrs.field(default=(), converter=_groupings)
    format: ExportFormat = "jsonl"

    def __attrs_post_init__(self) -> None:
        for field in ("date_from", "date_to"):
            value = getattr(self, field)
            if not isinstance(value, date) or hasattr(value, "hour"):
                raise ValidationError(field, value, "a date (whole days)")
        if self.date_to < self.date_from:
            raise ValidationError("date_to", self.date_to, "not before date_from")
        if self.sites is not None and (
            not self.sites or any(not isinstance(s, str) or not s.strip() for s in self.sites)
        ):
            raise ValidationError("sites", self.sites, "None (all sites) or site ids")
        _names("entities", self.entities, ENTITIES, empty=False)
        if self.granularity not in DATE_GROUPINGS:
            raise ValidationError("granularity", self.granularity, ", ".join(DATE_GROUPINGS))
        _names("pageview_aggregates", self.pageview_aggregates, PAGEVIEW_AGGREGATES,
               empty=False)
        _names("event_aggregates", self.event_aggregates, EVENT_AGGREGATES, empty=False)
        _names("pageview_grouping", self.pageview_grouping, FIELD_GROUPINGS, empty=True)
        _names("event_grouping", self.event_grouping, FIELD_GROUPINGS, empty=True)
        if self.format not in FORMATS:
            raise ValidationError("format", self.format, f"one of {', '.join(FORMATS)}")

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON data, as the manifest stores and compares it."""
        data = attrs.asdict(self, recurse=False)
        data["date_from"] = self.date_from.isoformat()
        data["date_to"] = self.date_to.isoformat()
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in data.items()}

    @property
    def fingerprint(self) -> str:
        """A short hash of everything that decides the rows (not where they go)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- date units -----------------------------------------------------------------------


def align(day: date, granularity: str) -> date:
    """The start of the unit holding `day` (hours are chunked by whole days)."""
    if granularity == "month":
        return day.replace(day=1)
    if granularity == "year":
        return day.replace(month=1, day=1)
    return day


def add_units(day: date, count: int, granularity: str) -> date:
    """`count` units after the (aligned) `day`."""
    if granularity == "month":
        months = day.year * 12 + day.month - 1 + count
        return date(months // 12, months % 12 + 1, 1)
    if granularity == "year":
        return date(day.year + count, 1, 1)
    return day + timedelta(days=count)


def units_in(start: date, end: date, granularity: str) -> int:
    """How many units the half-open range [start, end) touches."""
    count, cursor = 0, align(start, granularity)
    if granularity in ("day", "hour"):
        return (end - start).days
    while cursor < end:
        count += 1
        cursor = add_units(cursor, 1, granularity)
    return count


def chunk_end(start: date, units: int, end: date, granularity: str) -> date:
    """The end of a chunk of `units` units from `start`, on a unit boundary, within `end`."""
    if granularity == "hour":
        units = min(units, MAX_HOUR_DAYS)
    boundary = add_units(align(start, granularity), max(units, 1), granularity)
    return min(boundary, end)


def unit_start(value: object, granularity: str) -> date | None:
    """The first day of the unit a report row's `date` names, or None if unreadable.

    Rows name their period as `2024-03-04 13:00:00`, `2024-03-04`, `2024-03` or `2024`.
    """
    if not isinstance(value, str):
        return None
    try:
        if len(value) >= 10:
            return align(date.fromisoformat(value[:10]), granularity)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        if len(value) == 4:
            return date(int(value), 1, 1)
    except ValueError:
        pass
    return None
