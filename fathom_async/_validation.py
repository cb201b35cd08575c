"""Argument checks, run before any request is built.

Each check either returns the value as the API wants it or raises `ValidationError`
naming the field, the value and what is allowed. Nothing here rewrites what the user
gave into something else: a value is accepted as it is, or refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, tzinfo
from typing import TypeVar
from zoneinfo import ZoneInfoNotFoundError

from ._dates import parse_report_time, whole_day, zone
from ._exceptions import ValidationError

__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_name",
    "check_page_args",
    "check_report_time",
    "check_milestone_date",
]

T = TypeVar("T")

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def check_name(field: str, value: object, max_length: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, value, "a string")
    if not value.strip():
        raise ValidationError(field, value, "a non-blank string")
    if len(value) > max_length:
        raise ValidationError(field, value, f"at most {max_length} characters")
    if any(ch in value for ch in "\x00\r\n"):
        raise ValidationError(field, value, "a single line without NUL characters")
    return value


def check_choice(field: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(field, value, f"one of {', '.join(allowed)}")
    return value


def check_bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, value, "True or False")
    return value


def check_int(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, value, f"an int from {low} to {high}")
    if not low <= value <= high:
        raise ValidationError(field, value, f"an int from {low} to {high}")
    return value


def check_page_args(
    limit: object, starting_after: object, ending_before: object
) -> tuple[int, str | None, str | None]:
    """A list call's page size and cursor; both cursors at once make no sense."""
    size = check_int("limit", limit, 1, 100)
    if starting_after is not None and ending_before is not None:
        raise ValidationError(
            "ending_before", ending_before, "None when starting_after is given (one cursor)"
        )
    for field, cursor in (("starting_after", starting_after), ("ending_before", ending_before)):
        if cursor is not None and (not isinstance(cursor, str) or not cursor.strip()):
            raise ValidationError(field, cursor, "an object id (a non-blank string)")
    return size, starting_after, ending_before  # type: ignore[return-value]


def check_milestone_date(field: str, value: object) -> str:
    """A milestone date as the API wants it: `YYYY-MM-DD` (a `date` or that string)."""
    if isinstance(value, datetime):
        raise ValidationError(field, value, "a date (not a datetime) or 'YYYY-MM-DD'")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    raise ValidationError(field, value, "a date or a 'YYYY-MM-DD' string")


def check_report_time(field: str, value: object, *, end: bool, tz: str | None) -> datetime:
    """A report bound as a naive wall-clock datetime in the report's timezone.

    Reports are computed in the site's timezone (or `timezone=`), so a naive datetime
    or `YYYY-MM-DD HH:MM:SS` string is taken as that wall clock. A `date` or a
    `YYYY-MM-DD` string means the whole day: 00:00:00 as a start, 23:59:59 as an end.
    An aware datetime is refused unless `timezone=` says which wall clock to convert
    it to, because we cannot know the site's timezone without a request.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(microsecond=0)
        if tz is None:
            raise ValidationError(
                field,
                value,
                "a naive datetime in the site's timezone, or an aware one with timezone=...",
            )
        return value.astimezone(_zone(tz)).replace(tzinfo=None, microsecond=0)
    if isinstance(value, date):
        return whole_day(value, end=end)
    if isinstance(value, str):
        moment = parse_report_time(value, end=end)
        if moment is not None:
            return moment
    raise ValidationError(
        field, value, "a datetime, a date, 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"
    )


def _zone(name: str) -> tzinfo:
    try:
        return zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
        raise ValidationError(
            "timezone", name, "a TZ database name such as 'Europe/Berlin'"
        ) from None


def check_timezone(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("timezone", value, "a TZ database name such as 'Europe/Berlin'")
    _zone(value)
    return value
