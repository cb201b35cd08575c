"""The runtime side of the API's closed sets: the tuples that check them, and NOT_GIVEN.

The `Literal` aliases themselves live in the public `fathom_async.types` (one
definition, documented there); the tuples here are read from them, so validation,
models and docs agree.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from .types import (
    Bucket,
    Currency,
    DateGrouping,
    Entity,
    EventAggregate,
    FieldGrouping,
    FilterOperator,
    MultiDomainOption,
    PageviewAggregate,
    Priority,
    Sharing,
)

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
"""The default of arguments that may be left out: `update(name=...)` sends only what
was given, while `None` can still mean "clear it"."""

SHARING: Final[tuple[Sharing, ...]] = get_args(Sharing)
MULTI_DOMAIN_OPTIONS: Final[tuple[MultiDomainOption, ...]] = get_args(MultiDomainOption)
CURRENCIES: Final[tuple[Currency, ...]] = get_args(Currency)
ENTITIES: Final[tuple[Entity, ...]] = get_args(Entity)
PAGEVIEW_AGGREGATES: Final[tuple[PageviewAggregate, ...]] = get_args(PageviewAggregate)
EVENT_AGGREGATES: Final[tuple[EventAggregate, ...]] = get_args(EventAggregate)
AGGREGATES: Final[dict[str, tuple[str, ...]]] = {
    "pageview": PAGEVIEW_AGGREGATES,
    "event": EVENT_AGGREGATES,
}
DATE_GROUPINGS: Final[tuple[DateGrouping, ...]] = get_args(DateGrouping)
FIELD_GROUPINGS: Final[tuple[FieldGrouping, ...]] = get_args(FieldGrouping)
OPERATORS: Final[tuple[FilterOperator, ...]] = get_args(FilterOperator)
# `keyword` can be grouped but not filtered; `domain` filtered but not grouped.
FILTER_PROPERTIES: Final[tuple[str, ...]] = (
    *(p for p in FIELD_GROUPINGS if p != "keyword"),
    "domain",
)
# These properties take only exact matches.
EXACT_ONLY_PROPERTIES: Final[frozenset[str]] = frozenset(
    {"device_type", "operating_system", "browser", "country_code", "city", "state", "region"}
)
