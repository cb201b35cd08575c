"""What the API returns, as plain frozen attrs classes.

The classes hold typed values only; turning wire JSON into them (numbers sent as
strings, zone-less timestamps, unknown fields) is the converter's job, never theirs.
Every model keeps the decoded JSON it came from in `.raw`, so a field the API added
last week is still reachable before this SDK learns its name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any, Generic, TypeVar

import attrs

__all__ = [
    "Account",
    "AggregationRow",
    "CurrentPage",
    "CurrentReferrer",
    "CurrentVisitors",
    "Deleted",
    "Event",
    "Milestone",
    "Page",
    "Site",
    "TokenInfo",
    "Wiped",
]

T = TypeVar("T")

_EMPTY: Mapping[str, Any] = {}


def _raw() -> Any:
    return attrs.field(default=_EMPTY, eq=False, repr=False, kw_only=True)


@attrs.frozen
class Account:
    """The account that owns the token (`GET /account`)."""

    id: int
    name: str
    object: str = "account"
    email: str | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen
class TokenInfo:
    """What the API says about the token in use (`GET /token`); never the secret."""

    name: str | None = None
    abilities: tuple[str, ...] = ()
    id: int | str | None = None
    object: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen
class Site:
    """A site: the thing a tracking code points at.

    `created_at` is always set: every answer that carries a site (list, get, create,
    update) includes it, so one without it is refused as malformed.
    """

    id: str
    name: str
    created_at: datetime
    object: str = "site"
    sharing: str | None = None
    timezone: str | None = None
    multi_domain: bool | None = None
    multi_domain_option: str | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen
class Event:
    """An event (goal). `currency` is None on list and get responses (the API's choice).

    `id` may be None: the newest API drops it in favour of calls by name.
    """

    name: str
    id: str | None = None
    object: str = "event"
    site_id: str | None = None
    currency: str | None = None
    created_at: datetime | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen
class Milestone:
    """A dated annotation on a site's graphs; `id` is a UUID string."""

    id: str
    name: str
    milestone_date: date
    object: str = "milestone"
    site_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen
class Deleted:
    """The answer to a delete: `deleted` is True when the object is gone."""

    deleted: bool
    id: str | int | None = None
    object: str | None = None
    name: str | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen
class Wiped:
    """The answer a wipe gave before Fathom retired it (it now answers 410)."""

    wiped: bool
    id: str | None = None
    object: str | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen(repr=False)
class AggregationRow:
    """One row of an aggregation.

    Only the aggregates and groupings you asked for are set; the rest stay None.
    `to_dict()` gives exactly the fields the API sent, with their typed values.
    Numbers become int (counts, `value` in cents) or float (`avg_duration`,
    `bounce_rate`) whatever the wire said; `date` stays the API's string because its
    format depends on the grouping.
    """

    visits: int | None = None
    uniques: int | None = None
    pageviews: int | None = None
    avg_duration: float | None = None
    bounce_rate: float | None = None
    conversions: int | None = None
    unique_conversions: int | None = None
    value: int | None = None
    date: str | None = None
    hostname: str | None = None
    pathname: str | None = None
    entry_page: str | None = None
    exit_page: str | None = None
    referrer_hostname: str | None = None
    referrer_pathname: str | None = None
    referrer_source: str | None = None
    browser: str | None = None
    country_code: str | None = None
    city: str | None = None
    state: str | None = None
    region: str | None = None
    device_type: str | None = None
    operating_system: str | None = None
    utm_campaign: str | None = None
    utm_content: str | None = None
    utm_medium: str | None = None
    utm_source: str | None = None
    utm_term: str | None = None
    keyword: str | None = None
    ref: str | None = None
    q: str | None = None
    s: str | None = None
    raw: Mapping[str, Any] = _raw()

    def to_dict(self) -> dict[str, Any]:
        """The fields the API sent, typed; unknown fields keep their wire value."""
        return {
            key: getattr(self, key) if key in _ROW_FIELDS else value
            for key, value in self.raw.items()
        }

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in _ROW_ORDER
            if getattr(self, name) is not None
        )
        return f"AggregationRow({shown})"


_ROW_ORDER = tuple(f.name for f in attrs.fields(AggregationRow) if f.name != "raw")
_ROW_FIELDS = frozenset(_ROW_ORDER)


@attrs.frozen
class CurrentPage:
    """A page being viewed right now."""

    total: int
    pathname: str | None = None
    hostname: str | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen
class CurrentReferrer:
    """A referrer of the current visitors."""

    total: int
    referrer_hostname: str | None = None
    referrer_pathname: str | None = None
    raw: Mapping[str, Any] = _raw()


@attrs.frozen
class CurrentVisitors:
    """Current visitors; `content` and `referrers` are filled only when detailed."""

    total: int
    content: tuple[CurrentPage, ...] = ()
    referrers: tuple[CurrentReferrer, ...] = ()
    raw: Mapping[str, Any] = _raw()


@attrs.frozen
class Page(Generic[T]):
    """One page of a list: the items, and whether more lie beyond them."""

    data: tuple[T, ...]
    has_more: bool
    url: str | None = None
    object: str = "list"
    raw: Mapping[str, Any] = _raw()

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
