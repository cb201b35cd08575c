"""Aggregation rows read column by column, and `AggregationRow`s made from the columns.

A report can hold tens of thousands of rows, and making that many attrs objects is
most of the cost of reading one. Every row of one response has the same keys (the
aggregates, `date` and the field groupings asked for), so a response is read into a
`Table`: per key, the wire values picked out in C loops (`map(itemgetter)`) and
converted once per column (`map(int, ...)`). Rows are made only when someone asks
for them, a block at a time, by a function generated once per shape that fills the
slots with straight-line attribute stores, no per-field dispatch left.

What this module must never do is disagree with the converter. The table takes only
the plain cases it can prove identical (a list of exact `dict` rows with the same
keys in the same order, numbers as `str` or `int`, strings as `str`); for anything
else, including every malformed row, `structure_table` answers None and the caller
hands the rows to `Converter.structure_many`, so values and `APIResponseError`s are
the converter's own. Unknown keys are kept (in `raw`, with their wire values) as the
lenient converter keeps them, and left to the converter (to fail) when it is strict.
Everything that can fail is checked while the table is built, so making rows later
cannot.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import attrs

from ._converter import Converter
from ._models import AggregationRow

__all__ = ["BLOCK", "Table", "concat_tables", "structure_table"]

_HINTS = typing.get_type_hints(AggregationRow)
# Each field's type without its None: int, float or str.
_FIELDS: dict[str, type] = {
    field.name: next(t for t in typing.get_args(_HINTS[field.name]) if t is not type(None))
    for field in attrs.fields(AggregationRow)
    if field.name != "raw"
}
_join = "".join
_INT = frozenset({int})
_FLOAT = frozenset({float})
_DICT = frozenset({dict})


class _Fallback(Exception):
    """The table cannot vouch for this input; the converter takes over."""


def _all_str(column: list[Any]) -> bool:
    # join() checks each item is a str, in C, several times faster than collecting
    # the types; it accepts str subclasses, which the converter's hooks accept too.
    try:
        _join(column)
    except TypeError:
        return False
    return True


def _ints(column: list[Any]) -> list[Any]:
    if _all_str(column):
        try:
            return list(map(int, column))
        except ValueError:  # "12.0" and the like: the converter's rules decide
            raise _Fallback from None
    if set(map(type, column)) == _INT:
        return column
    raise _Fallback


def _floats(column: list[Any]) -> list[Any]:
    if _all_str(column) or set(map(type, column)) == _INT:
        try:
            values = list(map(float, column))
        except (ValueError, OverflowError):
            raise _Fallback from None
    elif set(map(type, column)) == _FLOAT:
        values = column
    else:
        raise _Fallback
    total = sum(values)
    if total - total != 0.0:  # a NaN or an infinity somewhere (or a sum that overflowed)
        raise _Fallback
    return values


def _strs(column: list[Any]) -> list[Any]:
    if _all_str(column):
        return column
    raise _Fallback


_CONVERTERS: dict[type, Callable[[list[Any]], list[Any]]] = {
    int: _ints,
    float: _floats,
    str: _strs,
}

# Rows are read a block at a time, column by column, in C loops (map): a block of
# dicts is small enough to stay in the CPU cache while each of its keys is picked.
# Rows are made in blocks too: one call of a generated function per block.
BLOCK = 512


Column = tuple[Any, ...]


@typing.final
class Table:
    """Aggregation rows of one shape, column by column; immutable once built.

    `keys` are the rows' keys in wire order. Per key, `wire` holds the values as
    sent (so that a row's `raw` can be rebuilt) and `typed` the values as
    `AggregationRow` holds them; where conversion changed nothing (strings, numbers
    sent as ints, keys the SDK does not know) the two are one tuple, kept once.
    Columns are tuples, not lists: a tuple of strings and numbers is dropped from
    the garbage collector's watch, so holding a large table costs the collector
    nothing (a list would have every value visited by each full collection).
    Slicing, reordering and concatenating give new tables.
    """

    __slots__ = ("keys", "same", "typed", "wire")

    def __init__(
        self, keys: tuple[str, ...], typed: tuple[Column, ...], wire: tuple[Column, ...]
    ) -> None:
        self.keys = keys
        self.typed = typed
        self.wire = wire
        # Part of the shape a row maker is generated for: shared columns are read once.
        self.same = tuple(t is w for t, w in zip(typed, wire, strict=True))

    def __len__(self) -> int:
        return len(self.wire[0])

    def column(self, key: str) -> Column:
        """The typed values of `key`: the wire values for a key the SDK does not
        know, None for every row when the rows lack the key."""
        if key in self.keys:
            return self.typed[self.keys.index(key)]
        return (None,) * len(self)

    def rows(self, start: int, stop: int) -> list[AggregationRow]:
        """New `AggregationRow`s for rows `start` to `stop - 1`."""
        return _maker(self.keys, self.same)(self.typed, self.wire, start, stop)

    def take(self, selector: slice | Sequence[int]) -> Table:
        """The rows a slice or a list of indexes picks, in that order."""
        if isinstance(selector, slice):
            return self._map(lambda column: column[selector])
        return self._map(lambda column: tuple(map(column.__getitem__, selector)))

    def _map(self, pick: Callable[[Column], Column]) -> Table:
        """A table of `pick(column)` for each column, a shared column picked once."""
        wire = tuple(map(pick, self.wire))
        typed = tuple(
            w if same else pick(t) for t, w, same in zip(self.typed, wire, self.same, strict=True)
        )
        return Table(self.keys, typed, wire)


def concat_tables(tables: Sequence[Table]) -> Table | None:
    """The tables' rows one after another; None when they differ in shape."""
    keys = tables[0].keys
    if any(table.keys != keys for table in tables):
        return None
    if len(tables) == 1:
        return tables[0]  # immutable: shared, not copied
    wire = tuple(
        tuple(chain.from_iterable(parts)) for parts in zip(*(t.wire for t in tables), strict=True)
    )
    typed = tuple(
        w if all(t.same[index] for t in tables)
        else tuple(chain.from_iterable(t.typed[index] for t in tables))
        for index, w in enumerate(wire)
    )
    return Table(keys, typed, wire)


@functools.lru_cache(maxsize=256)
def _reader(
    keys: tuple[str, ...], strict: bool
) -> tuple[Callable[[list[Any]], list[Any]] | None, ...] | None:
    """Per key, the converter of its column (None: kept as sent); None: never a table."""
    unknown = [key for key in keys if key not in _FIELDS]
    if unknown and (strict or "raw" in unknown):
        return None  # strict refuses them; a "raw" key is the converter's business
    if len(unknown) == len(keys):
        return None  # nothing we know: rare enough to leave to the converter
    return tuple(_CONVERTERS[_FIELDS[key]] if key in _FIELDS else None for key in keys)


def structure_table(items: Any, converter: Converter) -> Table | None:
    """Decoded JSON rows -> a `Table`, or None when only `converter` may read them.

    None does not mean the rows are bad: the caller hands them to the converter,
    which builds them or raises its own `APIResponseError`.
    """
    if type(items) is not list or not items or type(items[0]) is not dict:
        return None
    keys = tuple(items[0])
    converters = _reader(keys, converter.strict)
    # One shape: the same keys in the same order, so `raw` comes back in wire order.
    if converters is None or set(map(type, items)) != _DICT or set(map(tuple, items)) != {keys}:
        return None
    getters = [itemgetter(key) for key in keys]
    wire: list[list[Any]] = [[] for _ in keys]
    typed: list[list[Any]] = [[] for _ in keys]
    converted = [False] * len(keys)  # whether any block's typed values are new ones
    try:
        for start in range(0, len(items), BLOCK):
            block = items[start:start + BLOCK]
            for index, get in enumerate(getters):
                values = list(map(get, block))
                wire[index] += values
                convert = converters[index]
                result = values if convert is None else convert(values)
                if result is not values and not converted[index]:
                    converted[index] = True
                    typed[index] = wire[index][:start]  # the blocks before: typed as sent
                if converted[index]:
                    typed[index] += result
    except _Fallback:
        return None
    wire_columns = tuple(map(tuple, wire))
    return Table(
        keys,
        tuple(
            tuple(column) if changed else same
            for column, same, changed in zip(typed, wire_columns, converted, strict=True)
        ),
        wire_columns,
    )


class _Blank(AggregationRow):
    """A row being filled in: the same slots, but plain attribute stores.

    `AggregationRow` is frozen, so every store goes through `object.__setattr__`, a
    call. With the frozen hooks put back to object's own, `row.visits = v` becomes
    the interpreter's direct slot store. Before anyone sees it, each row becomes an
    `AggregationRow` by `__class__` assignment (same layout: this class adds no
    slots), so the result is exactly the frozen class, indistinguishable from one
    built by `__init__`.
    """

    __slots__ = ()
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__


def _source(keys: tuple[str, ...], same: tuple[bool, ...]) -> str:
    """Python source of a row maker; only our own field names go in it.

    Keys the SDK does not know come from the response: they reach the code as
    values (`KEYS`), never as text.
    """
    known = [index for index, key in enumerate(keys) if key in _FIELDS]
    converted = [index for index in known if not same[index]]
    wire = "".join(f"r{index}, " for index in range(len(keys)))
    typed = "".join(f"v{index}, " for index in converted)
    raw = ", ".join(f"k{index}: r{index}" for index in range(len(keys)))
    lines = [
        "def make(typed, wire, start, stop):",
        f"    {''.join(f'k{index}, ' for index in range(len(keys)))}= KEYS",
        *(f"    w{index} = wire[{index}][start:stop]" for index in range(len(keys))),
        *(f"    t{index} = typed[{index}][start:stop]" for index in converted),
        "    rows = []",
        "    append = rows.append",
        f"    for row, {wire}{typed}in zip(map(new, repeat(Blank)), "
        + "".join(f"w{index}, " for index in range(len(keys)))
        + "".join(f"t{index}, " for index in converted)
        + "):",
        *(
            f"        row.{keys[index]} = {'v' if index in converted else 'r'}{index}"
            for index in known
        ),
        *(f"        row.{name} = None" for name in _FIELDS if name not in keys),
        f"        row.raw = {{{raw}}}",
        "        row.__class__ = Row",
        "        append(row)",
        "    return rows",
    ]
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=256)
def _maker(
    keys: tuple[str, ...], same: tuple[bool, ...]
) -> Callable[[tuple[Column, ...], tuple[Column, ...], int, int], list[AggregationRow]]:
    """The row maker for tables of this shape (keys, and which columns are shared)."""
    namespace: dict[str, Any] = {
        "KEYS": keys,
        "new": object.__new__,
        "repeat": repeat,
        "zip": zip,
        "Blank": _Blank,
        "Row": AggregationRow,
    }
    label = ",".join(key for key in keys if key in _FIELDS)  # response keys never reach it
    exec(compile(_source(keys, same), f"<fathom_async rows {label}>", "exec"), namespace)
    function: Callable[
        [tuple[Column, ...], tuple[Column, ...], int, int], list[AggregationRow]
    ] = namespace["make"]
    return function
