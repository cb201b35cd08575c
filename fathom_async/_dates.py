"""Report dates: reading bounds, the 7-day hour rule, and cutting ranges into calls.

Report bounds are naive datetimes on the site's wall clock (or the query's
`timezone=`), as the API reads `date_from`/`date_to`. This module is the one place
that parses and formats them, decides whether an hour-grouped range keeps the
API's 7-day rule (`hour_range_fits`, used both to refuse a query and to split
one, so the two can never disagree) and cuts long ranges on period boundaries
(`split_range`, `halve_range`).

Everything here is pure arithmetic: it never reads the clock (callers pass "now"),
never raises `ValidationError` (callers name the field) and never does I/O.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

__all__ = [
    "MAX_HOUR_SPAN",
    "TIME_FORMAT",
    "halve_range",
    "hour_range_fits",
    "parse_report_time",
    "site_now",
    "split_range",
    "whole_day",
    "zone",
]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The API answers 400 to hour grouping over a longer range, counted (as the
# emulator counts it) in elapsed time in the report's zone.
MAX_HOUR_SPAN = timedelta(days=7)
# Without the report's zone, the site's clock reads at least UTC - 12 h (no zone
# lies further west).
_WESTMOST = timedelta(hours=12)
_SECOND = timedelta(seconds=1)
_LAST_SECOND = timedelta(hours=23, minutes=59, seconds=59)
# ASCII digits only: `\d` would let other scripts' digits through to strptime.
_DAY_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")


# -- reading bounds ------------------------------------------------------------------


def zone(name: str) -> tzinfo:
    """The tzinfo of a TZ database name ("UTC" in any case needs no tz database).

    Raises what `ZoneInfo` raises for a name it cannot load: `ZoneInfoNotFoundError`,
    `ValueError` (not a zone name) or `OSError` (too long for a path).
    """
    if name.upper() == "UTC":
        return timezone.utc
    return ZoneInfo(name)


def whole_day(day: date, *, end: bool) -> datetime:
    """A day as a report bound: its first second as a start, its last as an end."""
    moment = datetime(day.year, day.month, day.day)
    return moment + _LAST_SECOND if end else moment


def parse_report_time(text: str, *, end: bool) -> datetime | None:
    """A bound written as text, or None when the text is not one.

    `YYYY-MM-DD HH:MM:SS` is that second on the wall clock; `YYYY-MM-DD` is the
    whole day, exactly like a `date` value (see `whole_day`). Nothing else is read:
    no other separators, no zone, no impossible dates (`2024-02-30`).
    """
    try:
        if _TIME_TEXT.fullmatch(text):
            return datetime.strptime(text, TIME_FORMAT)
        if _DAY_TEXT.fullmatch(text):
            return whole_day(date.fromisoformat(text), end=end)
    except ValueError:
        pass
    return None


def site_now(now: datetime, zone_name: str | None) -> datetime:
    """`now` (aware, or naive UTC) on the report's wall clock, naive.

    With the report's zone that clock is known; without it, this is the earliest
    any site's clock can read (UTC - 12 h), so a range that is too long even then
    is too long on every clock.
    """
    utc_now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now
    if zone_name is None:
        return utc_now.astimezone(timezone.utc).replace(tzinfo=None) - _WESTMOST
    return utc_now.astimezone(zone(zone_name)).replace(tzinfo=None)


# -- the hour rule -------------------------------------------------------------------


def _elapsed(start: datetime, end: datetime, where: tzinfo | None) -> timedelta:
    """Time that passes from `start` to `end` (wall clock in `where`; None: plain)."""
    if where is None:
        return end - start
    # A wall time a DST change repeats or skips is read by its `fold`: 0 (the first
    # reading) for every bound parsed from a query, as the emulator reads it.
    return end.replace(tzinfo=where).astimezone(timezone.utc) - start.replace(
        tzinfo=where
    ).astimezone(timezone.utc)


def _hour_fits(start: datetime, end: datetime, where: tzinfo | None) -> bool:
    return _elapsed(start, end, where) <= MAX_HOUR_SPAN


def hour_range_fits(start: datetime, end: datetime, zone_name: str | None) -> bool:
    """Whether [start, end] (wall clock) may be hour-grouped in one call.

    At most 7 days elapse in the report's zone: a week across a DST fall-back
    lasts 7 days and an hour and does not fit, one across a spring change lasts
    7 days less an hour and does. Without a zone, the wall clock counts.
    """
    return _hour_fits(start, end, zone(zone_name) if zone_name is not None else None)


# -- periods -------------------------------------------------------------------------


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


def _unclear(moment: datetime, where: tzinfo | None) -> bool:
    """A wall-clock time that a DST change skips or repeats in `where`."""
    if where is None:
        return False
    early = moment.replace(tzinfo=where, fold=0)
    late = moment.replace(tzinfo=where, fold=1)
    return early.utcoffset() != late.utcoffset()


# -- splitting -----------------------------------------------------------------------


def _fits(start: datetime, end: datetime, grouping: str, limit: int, where: tzinfo | None) -> bool:
    if grouping == "hour" and not _hour_fits(start, end, where):
        return False
    return _periods(start, end, grouping) <= limit


def _clear_cut(start: datetime, cut: datetime, grouping: str, where: tzinfo | None) -> datetime:
    """`cut`, moved back by whole periods off a time a DST change skips or repeats.

    The API would have to guess which instant we meant there, and could drop or
    double an hour. Returns `cut` itself when no earlier period start will do.
    """
    candidate = cut
    while candidate > start and (
        _unclear(candidate, where) or _unclear(candidate - _SECOND, where)
    ):
        candidate = _add(candidate, grouping, -1)
    return candidate if candidate > start else cut


def _boundary(start: datetime, grouping: str, limit: int, where: tzinfo | None) -> datetime:
    """Where the first sub-range of a split starting at `start` should end (exclusive)."""
    step = min(limit, 168) if grouping == "hour" else limit
    boundary = _add(_floor(start, grouping), grouping, step)
    if grouping == "hour":
        while boundary - _SECOND > start and not _hour_fits(start, boundary - _SECOND, where):
            boundary = _add(boundary, grouping, -1)
    return _clear_cut(start, boundary, grouping, where)


def split_range(
    start: datetime,
    end: datetime,
    grouping: str,
    limit: int,
    timezone_name: str | None = None,
) -> list[tuple[datetime, datetime]]:
    """Consecutive [from, to] ranges (wall clock, inclusive, 1 s apart) covering [start, end].

    Each range is valid for one call: for hour grouping it keeps the 7-day rule
    (`hour_range_fits`, the check every request passes); for every grouping at
    most `limit` periods. Ranges after the first start on a period boundary, so no
    period's row is split between two calls, and never at a wall-clock time a DST
    change skips or repeats.
    """
    where = zone(timezone_name) if timezone_name is not None else None
    ranges: list[tuple[datetime, datetime]] = []
    while not _fits(start, end, grouping, limit, where):
        boundary = _boundary(start, grouping, limit, where)
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
    where = zone(timezone_name) if timezone_name is not None else None
    middle = _clear_cut(start, _add(_floor(start, grouping), grouping, periods // 2), grouping,
                        where)
    return (start, middle - _SECOND), (middle, end)
