"""Rows read as columns agree with the cattrs converter: same rows, same errors.

A row made from a `Table` must be indistinguishable from
`converter.structure(wire_dict, AggregationRow)`: same class, equal, same hash and
repr, `raw` the wire dict itself (so in the wire's key order), the same `to_dict()`.
Whatever the table cannot vouch for goes to the converter, errors included.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fathom_async import AggregationRow, AggregationRows, APIResponseError
from fathom_async._converter import Converter, get_converter
from fathom_async._resources.aggregations import _read_rows
from fathom_async._rows import _FIELDS, BLOCK, structure_table

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


def clean_values(name: str, as_number: bool) -> st.SearchStrategy[Any]:
    """What the live API sends (numbers as strings), or the documented numbers."""
    if name in INTS:
        return st.integers(0, 10**9) if as_number else st.integers(0, 10**9).map(str)
    if name in FLOATS:
        floats = st.floats(0, 1e6, allow_nan=False)
        return floats if as_number else floats.map(repr)
    return st.text(max_size=6)


@st.composite
def payloads(draw: st.DrawFn) -> list[Any]:
    """Rows of one shape, mostly clean, sometimes broken in one place.

    Rows repeat a few drawn ones, so that a payload can span several blocks.
    """
    keys = draw(st.lists(st.sampled_from(INTS + FLOATS + STRS + ["new_metric"]),
                         min_size=1, max_size=6, unique=True))
    as_number = draw(st.booleans())
    model = st.tuples(*(clean_values(k, as_number) for k in keys))
    models = draw(st.lists(model.map(lambda v: dict(zip(keys, v, strict=True))),
                           min_size=1, max_size=5))
    count = draw(st.integers(1, 30) | st.sampled_from([BLOCK, 2 * BLOCK + 3]))
    rows: list[Any] = [dict(models[n % len(models)]) for n in range(count)]
    mess = draw(st.integers(0, 8))
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
    elif mess == 5:  # the same keys in another order
        rows[index] = dict(reversed(rows[index].items()))
    elif mess == 6:
        for row in rows:
            row["raw"] = "x"
    elif mess == 7:  # as many keys, but one of them another
        value = rows[index].pop(draw(st.sampled_from(keys)))
        rows[index]["utm_term" if "utm_term" not in keys else "ref"] = value
    return rows


def portrait(row: AggregationRow) -> tuple[Any, ...]:
    """Everything a row shows, key order included."""
    return (type(row), row, hash(row), repr(row), list(row.raw.items()),
            list(row.to_dict().items()))


def converter_rows(data: list[Any]) -> list[AggregationRow]:
    return list(get_converter(False).structure_many(data, AggregationRow))


def converter_outcome(data: Any, converter: Converter) -> Any:
    try:
        rows = converter.structure_many(data, AggregationRow)
    except APIResponseError as exc:
        return ("error", str(exc))
    return ("rows", [portrait(row) for row in rows])


def read_outcome(data: Any, converter: Converter) -> Any:
    try:
        rows = _read_rows(converter)(data)
    except APIResponseError as exc:
        return ("error", str(exc))
    return ("rows", [portrait(row) for row in rows])


@pytest.mark.parametrize("strict", [True, False])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=payloads())
def test_rows_made_from_a_table_are_the_converters(strict: bool, data: list[Any]) -> None:
    converter = get_converter(strict)
    expected = converter_outcome(data, converter)
    table = structure_table(data, converter)
    if table is not None:  # the table never takes what the converter refuses
        assert expected[0] == "rows"
        made = table.rows(0, len(table))
        assert [portrait(row) for row in made] == expected[1]
        assert all(row.raw is item for row, item in zip(made, data, strict=True))
    assert read_outcome(data, converter) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=payloads(), seed=st.randoms(use_true_random=False))
def test_rows_made_in_any_order_are_the_converters(data: list[Any], seed: Any) -> None:
    converter = get_converter(False)
    expected = converter_outcome(data, converter)
    if expected[0] == "error":
        return
    rows = _read_rows(converter)(data)
    positions = list(range(len(rows)))
    seed.shuffle(positions)
    for position in positions[:20]:
        assert portrait(rows[position - len(rows)]) == expected[1][position]
    assert [portrait(row) for row in reversed(rows)] == expected[1][::-1]
    assert [portrait(row) for row in rows] == expected[1]
    assert all(row.raw is item for row, item in zip(rows, data, strict=True))
    dicts = rows.to_dicts()
    assert [list(d.items()) for d in dicts] == [fields[-1] for fields in expected[1]]


def test_rows_are_real_frozen_aggregation_rows() -> None:
    data = [{"pageviews": "3", "pathname": "/"}] * (BLOCK + 88)
    rows = _read_rows(get_converter(True))(data)
    assert len(rows) == BLOCK + 88  # more than one block
    row = rows[BLOCK + 87]
    assert type(row) is AggregationRow
    assert row == AggregationRow(pageviews=3, pathname="/")
    assert hash(row) == hash(AggregationRow(pageviews=3, pathname="/"))
    assert repr(row) == "AggregationRow(pageviews=3, pathname='/')"
    assert row.raw == {"pageviews": "3", "pathname": "/"}
    with pytest.raises(AttributeError):
        row.pageviews = 4  # type: ignore[misc]


def test_documented_integers_and_floats_are_read_as_columns() -> None:
    data = [{"pageviews": 3, "bounce_rate": 0.5, "avg_duration": 2}]
    table = structure_table(data, get_converter(True))
    assert table is not None
    row = table.rows(0, 1)[0]
    assert (row.pageviews, row.bounce_rate, row.avg_duration) == (3, 0.5, 2.0)
    assert isinstance(row.avg_duration, float)
    assert row.raw == data[0]


def test_only_columns_that_conversion_changes_are_kept() -> None:
    data = [{"pageviews": 3, "pathname": "/", "avg_duration": "2.5", "new_metric": "x"}] * 3
    table = structure_table(data, get_converter(False))
    assert table is not None
    assert table.raws is data  # the decoded dicts themselves, not copies
    assert table.typed == (None, None, (2.5,) * 3, None)  # the rest is read from the dicts
    assert table.column("pageviews") == (3,) * 3
    assert table.column("pathname") == ("/",) * 3
    assert table.column("new_metric") == ("x",) * 3
    assert table.column("city") == (None,) * 3
    assert table.column("avg_duration") is table.typed[2]
    names = ["city", "pathname", "avg_duration", "new_metric", "pageviews", "pathname"]
    assert table.columns(names) == [table.column(name) for name in names]
    assert table.columns([]) == []
    assert table.take(slice(0, 0)).columns(names) == [()] * len(names)


def test_a_held_table_is_not_watched_by_the_garbage_collector() -> None:
    # A full collection visits every tracked object alive. A table's tuples of
    # numbers, and the decoded dicts of strings and numbers, are not tracked
    # (the dicts never were; the tuples are dropped from its watch by a collection).
    data = [{"pageviews": str(n), "pathname": "/", "avg_duration": n} for n in range(10)]
    table = structure_table(data, get_converter(True))
    assert table is not None
    gc.collect()
    assert not any(map(gc.is_tracked, table.raws))
    assert not any(gc.is_tracked(column) for column in table.typed if column is not None)


def test_blocks_of_strings_then_numbers_keep_both_as_sent() -> None:
    data = [{"pageviews": 1}] * BLOCK + [{"pageviews": "2"}] * 3
    table = structure_table(data, get_converter(True))
    assert table is not None
    assert table.typed[0] == (1,) * BLOCK + (2,) * 3
    assert table.rows(BLOCK, BLOCK + 1)[0].raw == {"pageviews": "2"}
    assert table.rows(BLOCK - 1, BLOCK)[0].pageviews == 1


def test_a_rows_raw_is_its_decoded_dict() -> None:
    data = [{"pageviews": str(n), "pathname": f"/{n}", "new_metric": n}
            for n in range(BLOCK + 9)]
    rows = _read_rows(get_converter(False))(data)
    assert rows._table is not None
    assert all(rows[index].raw is data[index] for index in range(len(data)))
    assert rows[7:3:-2][1].raw is data[5]  # picked rows too


def test_rows_with_the_keys_in_another_order_are_read_as_columns() -> None:
    data = [{"pageviews": "1", "date": "2024", "pathname": "/"},
            {"date": "2023", "pathname": "/a", "pageviews": "2"},
            {"pathname": "/b", "pageviews": "3", "date": "2022"}] * (BLOCK // 2)
    rows = _read_rows(get_converter(True))(data)
    assert rows._table is not None
    assert rows[1].raw is data[1]
    assert list(rows[1].raw) == list(rows[1].to_dict()) == ["date", "pathname", "pageviews"]
    assert list(rows[-1].to_dict()) == ["pathname", "pageviews", "date"]
    assert rows[-1] == AggregationRow(pageviews=3, date="2022", pathname="/b")
    assert rows == converter_rows(data)
    dicts = rows.to_dicts()
    assert [list(d.items()) for d in dicts] == [list(row.to_dict().items()) for row in rows]
    assert list(dicts[2]) == ["pathname", "pageviews", "date"]
    assert rows.to_pandas().columns.tolist() == ["pageviews", "date", "pathname"]


@pytest.mark.parametrize(
    "data",
    [
        [{"pageviews": "1", "date": "2024"}, {"pageviews": "2", "pathname": "/"}],
        [{"pageviews": "1", "date": "2024"}] * BLOCK + [{"date": "2023", "browser": "x"}],
    ],
)
def test_rows_of_as_many_but_other_keys_go_to_the_converter(data: Any) -> None:
    assert structure_table(data, get_converter(False)) is None
    rows = _read_rows(get_converter(False))(data)
    assert rows._table is None
    assert rows == converter_rows(data)
    assert rows[-1].raw is data[-1]


@pytest.mark.parametrize(
    "data",
    [
        [{"pageviews": "many"}],
        [{"pageviews": "1"}, {"pageviews": True}],
        [{"avg_duration": "nan"}],
        [{"avg_duration": "fast"}],
        [{"avg_duration": "1e400"}],
        [{"pathname": ["/"]}],
        [{"pageviews": "1"}, "not a row"],
        [{"pageviews": "1"}] * BLOCK + [{"pageviews": "x"}],  # in a later block
    ],
)
def test_malformed_rows_raise_the_converters_error_at_once(data: Any) -> None:
    assert structure_table(data, get_converter(False)) is None
    with pytest.raises(APIResponseError, match="AggregationRow"):
        _read_rows(get_converter(False))(data)


@pytest.mark.parametrize("data", [{"pageviews": "1"}, "rows", None])
def test_a_body_that_is_not_a_list_is_refused(data: Any) -> None:
    assert structure_table(data, get_converter(False)) is None
    with pytest.raises(APIResponseError, match="expected a list of aggregation rows"):
        _read_rows(get_converter(False))(data)


def test_the_documented_wrapper_is_read_as_columns() -> None:
    rows = _read_rows(get_converter(True))({"object": "list", "data": [{"visits": "4"}]})
    assert rows == [AggregationRow(visits=4)]
    assert rows._table is not None


def test_strict_refuses_unknown_fields_and_lenient_keeps_them() -> None:
    data = [{"pageviews": "1", "new_metric": "7"}]
    assert structure_table(data, get_converter(True)) is None
    with pytest.raises(APIResponseError, match="new_metric"):
        _read_rows(get_converter(True))(data)
    rows = _read_rows(get_converter(False))(data)
    assert rows._table is not None
    assert rows[0].to_dict() == {"pageviews": 1, "new_metric": "7"}
    assert rows.to_dicts() == [{"pageviews": 1, "new_metric": "7"}]
    only_raw = [{"pageviews": "1", "raw": "x"}]
    assert structure_table(only_raw, get_converter(False)) is None  # the converter's business
    assert _read_rows(get_converter(False))(only_raw)[0].pageviews == 1


def test_rows_of_only_unknown_keys_go_to_the_converter() -> None:
    data = [{"new_metric": "7"}]
    assert structure_table(data, get_converter(False)) is None
    assert _read_rows(get_converter(False))(data) == [AggregationRow()]


def test_an_empty_answer_is_empty_rows() -> None:
    rows = _read_rows(get_converter(True))([])
    assert isinstance(rows, AggregationRows)
    assert rows == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=3),
    max_leaves=10,
)
row_keys = st.sampled_from([*INTS, *FLOATS, *STRS, "raw", "new_metric"]) | st.text(max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(st.dictionaries(row_keys, json_values, max_size=4), max_size=4) | json_values,
    strict=st.booleans(),
)
def test_any_json_reads_to_rows_or_the_converters_error(data: Any, strict: bool) -> None:
    try:
        rows = _read_rows(get_converter(strict))(data)
    except APIResponseError:
        return
    # everything can fail while reading; touching the rows afterwards cannot
    assert [*rows, *reversed(rows)] == [*rows, *list(rows)[::-1]]
    assert rows.to_dicts() == [row.to_dict() for row in rows]
    assert repr(rows).startswith(f"<AggregationRows {len(rows)} rows")
