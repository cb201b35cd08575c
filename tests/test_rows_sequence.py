"""`AggregationRows` as an immutable sequence over columns: rows made when touched.

Whatever is asked of it, it answers as the list of the converter's rows would,
and it makes a row only when that row is looked at.
"""

from __future__ import annotations

import copy
import pickle
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fathom_async import AggregationRow, AggregationRows
from fathom_async._converter import get_converter
from fathom_async._rows import BLOCK, Table, structure_table

COLUMNS = ("pageviews", "avg_duration", "pathname")


def wire(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"pageviews": str(n % 7), "avg_duration": f"{n}.5", "pathname": f"/{n}"}
            for n in range(start, start + count)]


def table_rows(data: list[dict[str, Any]], **terms: Any) -> AggregationRows:
    table = structure_table(data, get_converter(False))
    assert table is not None
    return AggregationRows._from_table(table, **terms)


def converter_rows(data: list[dict[str, Any]]) -> list[AggregationRow]:
    return list(get_converter(False).structure_many(data, AggregationRow))


def made(rows: AggregationRows) -> int:
    """How many of its rows have been made so far."""
    return sum(rows._flags)


def portraits(rows: Sequence[AggregationRow]) -> list[tuple[Any, ...]]:
    return [(type(row), row, list(row.raw.items()), list(row.to_dict().items()))
            for row in rows]


def test_indexing_makes_that_row_once() -> None:
    rows = table_rows(wire(3 * BLOCK))
    assert made(rows) == 0
    assert rows[5] is rows[5]
    assert rows[-1] is rows[3 * BLOCK - 1]
    assert rows[-3 * BLOCK] is rows[0]
    assert made(rows) == 3
    assert rows[5] == converter_rows(wire(3 * BLOCK))[5]
    for bad in (3 * BLOCK, -3 * BLOCK - 1):
        with pytest.raises(IndexError):
            rows[bad]
    with pytest.raises(TypeError):
        rows["pathname"]  # type: ignore[call-overload]


def test_iteration_makes_every_row_and_keeps_the_ones_handed_out() -> None:
    data = wire(2 * BLOCK + 7)
    rows = table_rows(data)
    fifth, last = rows[5], rows[-1]
    listed = list(rows)
    assert made(rows) == len(rows)
    assert listed[5] is fifth
    assert listed[-1] is last
    assert portraits(listed) == portraits(converter_rows(data))
    assert all(a is b for a, b in zip(rows, listed, strict=True))  # from the list now


def test_reversed_walks_blocks_from_the_end() -> None:
    data = wire(BLOCK + 3)
    rows = table_rows(data)
    walk = reversed(rows)
    assert next(walk) == converter_rows(data)[-1]
    assert made(rows) == 3  # only the last block so far
    assert portraits([rows[-1], *walk]) == portraits(converter_rows(data)[::-1])
    assert list(reversed(rows)) == converter_rows(data)[::-1]  # all made: the list's


def test_in_index_and_count_work_like_a_list() -> None:
    data = wire(BLOCK + 20)
    rows, expected = table_rows(data), converter_rows(data)
    target = expected[BLOCK + 3]
    assert target in rows
    assert AggregationRow(pageviews=99) not in rows
    assert "not a row" not in rows  # type: ignore[comparison-overlap]
    assert rows.index(target) == BLOCK + 3
    assert rows.index(expected[0]) == 0
    assert rows.index(expected[10], 5, 20) == 10
    assert rows.index(expected[-1], -3) == len(rows) - 1
    with pytest.raises(ValueError, match="is not in"):
        rows.index(expected[0], 1)
    with pytest.raises(ValueError, match="is not in"):
        rows.index(expected[10], 0, 10)
    assert rows.count(target) == expected.count(target) == 1
    assert rows.count(AggregationRow(pageviews=99)) == 0


def test_a_slice_is_rows_with_the_same_terms_and_makes_no_row() -> None:
    data = wire(3 * BLOCK)
    rows = table_rows(data, columns=COLUMNS, timezone="UTC", truncated=True)
    kept = rows[600]
    part = rows[550:1000]
    assert isinstance(part, AggregationRows)
    assert (part.columns, part.timezone, part.truncated) == (COLUMNS, "UTC", True)
    assert made(part) == 1  # the row made before
    assert part[50] is kept
    assert len(part) == 450
    expected = converter_rows(data)
    assert portraits(part) == portraits(expected[550:1000])
    assert portraits(rows[::-7]) == portraits(expected[::-7])
    assert portraits(rows[10:-10:3][2:5]) == portraits(expected[10:-10:3][2:5])
    assert rows[5:5] == []
    assert rows[5:5].to_dicts() == []
    assert list(rows[5:5].to_pandas().columns) == list(COLUMNS)


def test_equality_is_elementwise_with_any_sequence_of_rows() -> None:
    data = wire(4)
    rows, expected = table_rows(data), converter_rows(data)
    assert rows == expected
    assert expected == rows
    assert rows == tuple(expected)
    assert rows == AggregationRows(expected)
    assert rows != expected[:3]
    assert rows != [*expected[:3], AggregationRow(pageviews=1)]
    assert rows != {"pageviews": 1}
    assert rows != "abcd"
    assert AggregationRows() == []
    with pytest.raises(TypeError, match="unhashable"):
        hash(rows)


def test_it_is_an_immutable_sequence_not_a_list() -> None:
    rows = table_rows(wire(3))
    assert isinstance(rows, Sequence)
    assert not isinstance(rows, list)
    assert type(list(rows)) is list
    assert len(rows) == 3
    assert rows
    assert not AggregationRows()
    with pytest.raises(TypeError):
        rows[0] = AggregationRow()  # type: ignore[index]
    assert not hasattr(rows, "append")


def test_the_repr_shows_the_first_rows_and_makes_only_those() -> None:
    small = table_rows([{"pageviews": "1"}, {"pageviews": "2"}])
    assert repr(small) == (
        "<AggregationRows 2 rows: [AggregationRow(pageviews=1), AggregationRow(pageviews=2)]>"
    )
    assert repr(AggregationRows(truncated=True)) == "<AggregationRows 0 rows truncated: []>"
    big = table_rows([{"pageviews": "1"}] * 100_000)
    text = repr(big)
    assert text.startswith("<AggregationRows 100000 rows: [AggregationRow(pageviews=1), ")
    assert text.endswith("AggregationRow(pageviews=1), ...]>")
    assert text.count("AggregationRow(") == 5
    assert made(big) == 5


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trips_columns_and_terms(protocol: int) -> None:
    data = wire(BLOCK + 5)
    rows = table_rows(data, columns=COLUMNS, timezone="Europe/Berlin", truncated=True)
    first = rows[0]
    back = pickle.loads(pickle.dumps(rows, protocol))
    assert type(back) is AggregationRows
    assert (back.columns, back.timezone, back.truncated) == (COLUMNS, "Europe/Berlin", True)
    assert back._table is not None  # still columns
    assert back[0] == first
    assert back[0].raw is back._table.raws[0]  # one dict, as before
    assert back[1].raw is back._table.raws[1]
    assert portraits(back) == portraits(converter_rows(data))
    assert back.to_dicts() == rows.to_dicts()
    made_rows = AggregationRows(converter_rows(data[:3]), columns=COLUMNS)
    assert pickle.loads(pickle.dumps(made_rows, protocol)) == made_rows


def test_copies_are_equal_and_keep_their_terms() -> None:
    data = wire(10)
    rows = table_rows(data, columns=COLUMNS, timezone="UTC", truncated=True)
    for twin in (copy.copy(rows), copy.deepcopy(rows)):
        assert type(twin) is AggregationRows
        assert (twin.columns, twin.timezone, twin.truncated) == (COLUMNS, "UTC", True)
        assert portraits(twin) == portraits(converter_rows(data))
        assert twin.to_dicts() == rows.to_dicts()
    deep = copy.deepcopy(rows)
    assert deep._table is not rows._table
    assert deep[0] is not rows[0]
    assert deep[0] == rows[0]


# -- merging the calls of a split query ---------------------------------------------------

SORTABLE = ["pageviews", "avg_duration", "pathname"]


@st.composite
def chunk_lists(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """The answers of a split query: one shape, some empty, values often tied.

    Rows after a chunk's first may have their keys in another order.
    """
    keys = draw(st.lists(st.sampled_from(SORTABLE), min_size=1, max_size=3, unique=True))
    value = {
        "pageviews": st.integers(0, 3).map(str),
        "avg_duration": st.sampled_from(["0.5", "1", "1.0", "2.25"]),
        "pathname": st.sampled_from(["/", "/a", "/b"]),
    }
    row = st.tuples(*(value[key] for key in keys)).map(lambda v: dict(zip(keys, v, strict=True)))
    chunks = draw(st.lists(st.lists(row, max_size=8), min_size=1, max_size=5))
    if draw(st.booleans()):
        chunks = [[dict(reversed(r.items())) if n % 2 else r for n, r in enumerate(chunk)]
                  for chunk in chunks]
    return chunks


def merge(
    parts: list[AggregationRows], order_by: tuple[str, bool] | None
) -> AggregationRows:
    merged = AggregationRows._concat(parts, columns=("pageviews",), timezone="UTC",
                                     truncated=True)
    return merged if order_by is None else merged._sorted(*order_by)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=chunk_lists(),
    order_by=st.none() | st.tuples(st.sampled_from(SORTABLE), st.booleans()),
)
def test_merging_columns_gives_the_rows_merging_rows_gives(
    chunks: list[list[dict[str, Any]]], order_by: tuple[str, bool] | None
) -> None:
    columns = merge([table_rows(c) if c else AggregationRows() for c in chunks], order_by)
    rows = merge([AggregationRows(converter_rows(c)) for c in chunks], order_by)
    if any(chunks):
        assert columns._table is not None
        assert made(columns) == 0
    assert (columns.columns, columns.timezone, columns.truncated) == (
        ("pageviews",), "UTC", True)
    assert portraits(columns) == portraits(rows)
    assert [list(d.items()) for d in columns.to_dicts()] == [
        list(d.items()) for d in rows.to_dicts()]
    wire = [item for chunk in chunks for item in chunk]
    assert sorted(map(id, (row.raw for row in columns))) == sorted(map(id, wire))


def test_tables_typed_one_way_and_sent_as_typed_the_other_merge() -> None:
    first = [{"pageviews": "2", "avg_duration": 1.5, "pathname": "/a"}] * 3
    second = [{"pageviews": 3, "avg_duration": "0.5", "pathname": "/b"}] * 2
    parts = [table_rows(first), table_rows(second)]
    merged = AggregationRows._concat(parts, columns=(), timezone=None, truncated=False)
    assert merged._table is not None
    assert merged._table.typed[:2] == ((2, 2, 2, 3, 3), (1.5, 1.5, 1.5, 0.5, 0.5))
    assert merged._table.typed[2] is None
    assert portraits(merged) == portraits(converter_rows(first + second))
    assert merged.to_dicts() == [row.to_dict() for row in converter_rows(first + second)]
    assert [row.pathname for row in merged._sorted("avg_duration", False)] == ["/b"] * 2 + [
        "/a"] * 3


def test_rows_of_different_shapes_merge_as_rows() -> None:
    first = table_rows([{"pageviews": "2", "pathname": "/a"}])
    second = table_rows([{"pathname": "/b", "pageviews": "1"}])  # the same keys, reordered
    made_rows = AggregationRows([AggregationRow(pageviews=3, raw={"pageviews": "3"})])
    for parts in ([first, second], [first, made_rows]):
        merged = AggregationRows._concat(parts, columns=(), timezone=None, truncated=False)
        assert merged._table is None
        assert merged == [row for part in parts for row in part]
    mixed = AggregationRows._concat([first, second], columns=(), timezone=None,
                                    truncated=False)
    assert list(mixed._sorted("pageviews", False)[0].raw) == ["pathname", "pageviews"]


def test_a_sort_puts_rows_without_the_field_last_and_keeps_ties_in_order() -> None:
    rows = AggregationRows([
        AggregationRow(pageviews=1, pathname="/a"), AggregationRow(pathname="/none"),
        AggregationRow(pageviews=2, pathname="/b"), AggregationRow(pageviews=1, pathname="/c"),
    ])
    assert [r.pathname for r in rows._sorted("pageviews", True)] == ["/b", "/a", "/c", "/none"]
    assert [r.pathname for r in rows._sorted("pageviews", False)] == ["/a", "/c", "/b", "/none"]
    table = table_rows([{"pathname": "/x"}, {"pathname": "/y"}])
    assert table._sorted("pageviews", True) == table  # nobody has it: order kept


def test_threads_iterating_one_result_get_one_object_per_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = table_rows(wire(BLOCK * 8))
    making = Table.rows

    def slow_rows(table: Table, start: int, stop: int) -> list[AggregationRow]:
        made = making(table, start, stop)
        time.sleep(0)  # hand the GIL to another thread between making and storing
        return made

    monkeypatch.setattr(Table, "rows", slow_rows)
    seen: list[list[AggregationRow]] = []
    start = threading.Barrier(4)

    def walk(backwards: bool) -> None:
        start.wait()
        walked = list(reversed(rows)) if backwards else list(rows)
        seen.append(walked[::-1] if backwards else walked)

    threads = [threading.Thread(target=walk, args=(n % 2 == 1,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4
    for walked in seen:
        assert all(a is b for a, b in zip(walked, seen[0], strict=True))
    assert all(rows[i] is seen[0][i] for i in range(len(rows)))
