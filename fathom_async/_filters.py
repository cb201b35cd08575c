"""Report filters: typed objects that serialise to the JSON string the API wants.

The API takes `filters` as a JSON-encoded string of `{property, operator, value}`
objects (FACTS.md). Building it by hand invites typos the server answers with a bare
400; a `Filter` checks the property, the operator and the value when it is made.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._exceptions import ValidationError
from ._types import EXACT_ONLY_PROPERTIES, FILTER_PROPERTIES, OPERATORS, FilterOperator

__all__ = ["Filter", "encode_filters"]

_SUGGEST = {"country": "country_code", "device": "device_type", "os": "operating_system"}


def _check_property(_: Any, __: Any, value: Any) -> None:
    if not isinstance(value, str) or value not in FILTER_PROPERTIES:
        hint = _SUGGEST.get(value) if isinstance(value, str) else None
        allowed = f"did you mean {hint!r}?" if hint else f"one of {', '.join(FILTER_PROPERTIES)}"
        raise ValidationError("filters.property", value, allowed)


def _check_operator(instance: Filter, _: Any, value: Any) -> None:
    if not isinstance(value, str) or value not in OPERATORS:
        raise ValidationError("filters.operator", value, f"one of {', '.join(OPERATORS)}")
    if instance.property in EXACT_ONLY_PROPERTIES and value not in ("is", "is not"):
        raise ValidationError(
            "filters.operator", value, f"'is' or 'is not' for property {instance.property!r}"
        )


def _check_value(instance: Filter, _: Any, value: Any) -> None:
    if not isinstance(value, str):
        raise ValidationError("filters.value", value, "a string (the API compares text)")
    # `referrer_hostname is ""` means direct traffic; a pattern must say something.
    if not value and instance.operator not in ("is", "is not"):
        raise ValidationError(
            "filters.value", value, f"a non-empty string for operator {instance.operator!r}"
        )


@attrs.frozen
class Filter:
    """One report filter: `Filter("pathname", "is", "/pricing")`.

    Operators: `is`, `is not`, `is like`, `is not like` (wildcards), `matching`,
    `not matching` (regular expressions). Device type, operating system, browser,
    country code, city, state and region take only `is` / `is not`.
    """

    property: str = attrs.field(validator=_check_property)
    operator: FilterOperator = attrs.field(validator=_check_operator)
    value: str = attrs.field(validator=_check_value)

    def to_dict(self) -> dict[str, str]:
        """The filter as the API's JSON object: `{"property", "operator", "value"}`."""
        return {"property": self.property, "operator": self.operator, "value": self.value}


def _as_filter(item: object) -> Filter:
    if isinstance(item, Filter):
        return item
    if isinstance(item, Mapping):
        keys = set(item)
        if keys != {"property", "operator", "value"}:
            raise ValidationError("filters", dict(item), "keys property, operator and value")
        return Filter(item["property"], item["operator"], item["value"])
    raise ValidationError("filters", item, "Filter objects (or dicts with the same keys)")


def encode_filters(filters: Iterable[Filter | Mapping[str, str]]) -> str:
    """Validate filters and encode them as the API's JSON string."""
    if isinstance(filters, (str, bytes, Mapping)):
        raise ValidationError("filters", filters, "a list of Filter objects")
    items = [_as_filter(item).to_dict() for item in filters]
    if not items:
        raise ValidationError("filters", items, "at least one filter, or None for no filter")
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)
