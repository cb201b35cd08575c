"""The closed sets of the API, as Literal types and the runtime tuples that check them.

One place for every enum, so validation, models and docs agree.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "BUCKETS",
    "NOT_GIVEN",
    "PRIORITIES",
    "Bucket",
    "Currency",
    "DateGrouping",
    "Entity",
    "EventAggregate",
    "FieldGrouping",
    "FilterOperator",
    "MultiDomainOption",
    "NotGiven",
    "PageviewAggregate",
    "Priority",
    "Sharing",
]

#: The two rate-limit buckets: entity calls, and reports (aggregations, current visitors).
Bucket = Literal["entity", "reports"]
#: A call's place in the limiter's queues.
Priority = Literal["interactive", "bulk"]
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)
PRIORITIES: tuple[Priority, ...] = get_args(Priority)


class NotGiven:
    """Marks an argument the caller left out, so that `None` can still mean "clear it"."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()

Sharing = Literal["none", "private", "public"]
MultiDomainOption = Literal["combined", "separate"]
Currency = Literal[
    "dollar", "pound", "euro", "yuan", "peso", "shekel", "yen", "won", "hryvnia",
    "franc", "rupee", "integer", "none",
]
Entity = Literal["pageview", "event"]
PageviewAggregate = Literal["visits", "uniques", "pageviews", "avg_duration", "bounce_rate"]
EventAggregate = Literal["conversions", "unique_conversions", "value"]
DateGrouping = Literal["hour", "day", "month", "year"]
FieldGrouping = Literal[
    "hostname", "pathname", "entry_page", "exit_page", "referrer_hostname",
    "referrer_pathname", "referrer_source", "browser", "country_code", "city", "state",
    "region", "device_type", "operating_system", "utm_campaign", "utm_content",
    "utm_medium", "utm_source", "utm_term", "keyword", "ref", "q", "s",
]
FilterOperator = Literal["is", "is not", "is like", "is not like", "matching", "not matching"]

SHARING: Final[tuple[str, ...]] = get_args(Sharing)
MULTI_DOMAIN_OPTIONS: Final[tuple[str, ...]] = get_args(MultiDomainOption)
CURRENCIES: Final[tuple[str, ...]] = get_args(Currency)
ENTITIES: Final[tuple[str, ...]] = get_args(Entity)
AGGREGATES: Final[dict[str, tuple[str, ...]]] = {
    "pageview": get_args(PageviewAggregate),
    "event": get_args(EventAggregate),
}
DATE_GROUPINGS: Final[tuple[str, ...]] = get_args(DateGrouping)
FIELD_GROUPINGS: Final[tuple[str, ...]] = get_args(FieldGrouping)
OPERATORS: Final[tuple[str, ...]] = get_args(FilterOperator)
# `keyword` can be grouped but not filtered; `domain` filtered but not grouped.
FILTER_PROPERTIES: Final[tuple[str, ...]] = (
    *(p for p in FIELD_GROUPINGS if p != "keyword"),
    "domain",
)
# These properties take only exact matches.
EXACT_ONLY_PROPERTIES: Final[frozenset[str]] = frozenset(
    {"device_type", "operating_system", "browser", "country_code", "city", "state", "region"}
)
