"""The fast row structurer agrees with the cattrs converter: same values, same errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fathom_async import AggregationRow, APIResponseError
from fathom_async._converter import get_converter
from fathom_async._rows import _FIELDS, structure_rows

INTS = ["visits", "uniques", "pageviews", "conversions", "unique_conversions", "value"]
FLOATS = ["avg_duration", "bounce_rate"]
STRS = ["date", "pathname", "browser", "country_code", "utm_source"]

wire_int = st.one_of(
    st.integers(-10**6, 10**12).map(str),
    st.integers(-10**6, 10**12),
    st.sampled_from(["12.0", " 7 ", "1.5", "", "many", "nan", "1_000"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
wire_float = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10**6, 10**6),
    st.sampled_from(["0.25", " 1e3 ", "inf", "-nan", "x", "1e400"]),
    st.booleans(),
    st.none(),
)
wire_str = st.one_of(st.text(max_size=8), st.integers(0, 99), st.none(), st.just([1]))


def values_for(name: str) -> st.SearchStrategy[Any]:
    if name in INTS:
        return wire_int
    if name in FLOATS:
        return wire_float
    return wire_str


@st.composite
def payloads(draw: st.DrawFn) -> list[Any]:
    """Rows of one shape, mostly clean, sometimes broken in one place."""
    keys = draw(st.lists(st.sampled_from(INTS + FLOATS + STRS + ["new_metric"]),
                         min_size=1, max_size=6, unique=True))
    clean = {
        **{k: st.integers(0, 10**9).map(str) for k in INTS},
        **{k: st.floats(0, 1e6, allow_nan=False).map(repr) for k in FLOATS},
        **{k: st.text(max_size=6) for k in [*STRS, "new_metric"]},
    }
    count = draw(st.integers(1, 30))
    rows: list[Any] = [{k: draw(clean[k]) for k in keys} for _ in range(count)]
    mess = draw(st.integers(0, 5))
    index = draw(st.integers(0, count - 1))
    if mess == 1:
        key = draw(st.sampled_from(keys))
        rows[index][key] = draw(values_for(key) if key in _FIELDS else wire_str)
    elif mess == 2:
        del rows[index][keys[0]]
    elif mess == 3:
        rows[index]["utm_term" if "utm_term" not in keys else "ref"] = "x"
    elif mess == 4:
        rows[index] = draw(st.sampled_from(["row", 5, None, ["a"]]))
    return rows


def outcome(function: Any, *args: Any) -> Any:
    try:
        rows = function(*args)
    except APIResponseError as exc:
        return ("error", str(exc))
    return ("rows", [(row, dict(row.raw), type(row)) for row in rows])


@pytest.mark.parametrize("strict", [True, False])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=payloads())
def test_fast_rows_equal_the_converter(strict: bool, data: list[Any]) -> None:
    converter = get_converter(strict)
    slow = outcome(lambda items: list(converter.structure_many(items, AggregationRow)), data)
    fast = outcome(structure_rows, data, converter)
    assert fast == slow


def test_rows_are_real_frozen_aggregation_rows() -> None:
    rows = structure_rows([{"pageviews": "3", "pathname": "/"}] * 600, get_converter(True))
    assert len(rows) == 600  # more than one block
    row = rows[599]
    assert type(row) is AggregationRow
    assert row == AggregationRow(pageviews=3, pathname="/")
    assert hash(row) == hash(AggregationRow(pageviews=3, pathname="/"))
    assert repr(row) == "AggregationRow(pageviews=3, pathname='/')"
    assert row.raw == {"pageviews": "3", "pathname": "/"}
    with pytest.raises(AttributeError):
        row.pageviews = 4  # type: ignore[misc]


def test_documented_integers_and_floats_take_the_fast_path() -> None:
    rows = structure_rows([{"pageviews": 3, "bounce_rate": 0.5, "avg_duration": 2}],
                          get_converter(True))
    assert (rows[0].pageviews, rows[0].bounce_rate, rows[0].avg_duration) == (3, 0.5, 2.0)
    assert isinstance(rows[0].avg_duration, float)


@pytest.mark.parametrize(
    "data",
    [
        [{"pageviews": "many"}],
        [{"pageviews": "1"}, {"pageviews": True}],
        [{"avg_duration": "nan"}],
        [{"avg_duration": "1e400"}],
        [{"pathname": ["/"]}],
        [{"pageviews": "1"}, "not a row"],
        {"pageviews": "1"},
    ],
)
def test_malformed_rows_raise_the_converters_error(data: Any) -> None:
    with pytest.raises(APIResponseError, match="AggregationRow"):
        structure_rows(data, get_converter(False))


def test_strict_refuses_unknown_fields_and_lenient_keeps_them() -> None:
    data = [{"pageviews": "1", "new_metric": "7"}]
    with pytest.raises(APIResponseError, match="new_metric"):
        structure_rows(data, get_converter(True))
    row = structure_rows(data, get_converter(False))[0]
    assert row.to_dict() == {"pageviews": 1, "new_metric": "7"}
    assert structure_rows([{"pageviews": "1", "raw": "x"}], get_converter(False))[0].pageviews == 1
