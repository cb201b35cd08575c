"""The closed sets the API takes, as `Literal` types you can name in your own code.

The SDK's signatures use these aliases, so a type checker catches a misspelt value
at the call: `aggregations.query(entity="pageview", aggregates=["uniqes"])` fails
`mypy` before it costs one of the ten report calls a minute. Import them when your
own functions pass such values along (a parameter typed
`Sequence[PageviewAggregate]`, a constant typed `list[FieldGrouping]`), so the
check survives the trip: a value widened to `str` is refused by the SDK's overloads.

`typing.get_args(Currency)` lists the values of an alias. The SDK checks the same
sets at run time, so code without a type checker still gets a `ValidationError`
before any request. This module only defines types: it must never import the rest
of the package, so anything may import it.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "Bucket",
    "Currency",
    "DateGrouping",
    "Entity",
    "EventAggregate",
    "FieldGrouping",
    "FilterOperator",
    "MultiDomainOption",
    "PageviewAggregate",
    "Priority",
    "Sharing",
]

Entity = Literal["pageview", "event"]
"""What an aggregation counts: `"pageview"` (a site's traffic) or `"event"` (one event's
conversions)."""

PageviewAggregate = Literal["visits", "uniques", "pageviews", "avg_duration", "bounce_rate"]
"""The numbers a pageview aggregation can return (`entity="pageview"`).

`avg_duration` is in seconds and `bounce_rate` a fraction; both come back as floats,
the others as ints.
"""

EventAggregate = Literal["conversions", "unique_conversions", "value"]
"""The numbers an event aggregation can return (`entity="event"`); `value` is in cents."""

DateGrouping = Literal["hour", "day", "month", "year"]
"""The period each aggregation row covers (`date_grouping=`).

The API allows `"hour"` only for ranges of at most 7 days.
"""

FieldGrouping = Literal[
    "hostname", "pathname", "entry_page", "exit_page", "referrer_hostname",
    "referrer_pathname", "referrer_source", "browser", "country_code", "city", "state",
    "region", "device_type", "operating_system", "utm_campaign", "utm_content",
    "utm_medium", "utm_source", "utm_term", "keyword", "ref", "q", "s",
]
"""The fields an aggregation can group by (`field_grouping=`), one row per value.

`q` and `s` are from the older documentation's list. Every field but `keyword` can
also be filtered on (see `fathom_async.Filter`), as can `domain`, which cannot be
grouped by.
"""

FilterOperator = Literal["is", "is not", "is like", "is not like", "matching", "not matching"]
"""How a `fathom_async.Filter` compares its property with its value.

`is like` / `is not like` take wildcards, `matching` / `not matching` regular
expressions. `device_type`, `operating_system`, `browser`, `country_code`, `city`,
`state` and `region` take only `is` and `is not`.
"""

Sharing = Literal["none", "private", "public"]
"""Who can see a site's dashboard: nobody but you, anyone with the share password
(`"private"`), or everyone."""

MultiDomainOption = Literal["combined", "separate"]
"""How a site tracked on several domains reports them: as one, or apart."""

Currency = Literal[
    "dollar", "pound", "euro", "yuan", "peso", "shekel", "yen", "won", "hryvnia",
    "franc", "rupee", "integer", "none",
]
"""The currency of the value attached to an event's completions; the API's default is
`"dollar"`."""

Priority = Literal["interactive", "bulk"]
"""A call's place in the rate limiter's queues.

`"interactive"` calls (the default) are granted slots before waiting `"bulk"` ones
(a bulk call that has waited long enough goes first), so an export run
`with_options(priority="bulk")` yields to a dashboard sharing the same budget.
"""

Bucket = Literal["entity", "reports"]
"""The two rate-limit budgets: `"entity"` (account, token, sites, events, milestones;
2000 requests an hour) and `"reports"` (aggregations and current visitors; 10 a
minute)."""
