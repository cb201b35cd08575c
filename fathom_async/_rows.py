"""Aggregation rows read column by column, and `AggregationRow`s made from the columns.

A report can hold tens of thousands of rows, and making that many attrs objects is
most of the cost of reading one. Every row of one response has the same keys (the
aggregates, `date` and the field groupings asked for), so a response is read into a
`Table`: each key's values picked out in C loops (`itemgetter`, `zip`), checked and
converted once per column (`map(int, ...)`). Rows are made only when someone asks
for them, a block at a time, by a function generated once per shape that fills the
slots with straight-line attribute stores, no per-field dispatch left.

The table keeps the decoded row dicts, and each made row's `raw` is its dict: the
same object `Converter.structure` gives it, so in the row's own wire order (rows
may order their keys differently) and with nothing rebuilt per row. A dict holding
only strings and numbers is never tracked by the garbage collector, so keeping
them costs its collections nothing, and a made row is one allocation, not two.
Only the columns conversion changes (numbers sent as strings) are kept besides;
strings, numbers sent as they are typed, and keys the SDK does not know are read
from the dicts when a row or a column asks for them.

What this module must never do is disagree with the converter. The table takes only
the plain cases it can prove identical (a list of exact `dict` rows with the same
keys, numbers as `str` or `int`, strings as `str`); for anything else, including
every malformed row, `structure_table` answers None and the caller hands the rows
to `Converter.structure_many`, so values and `APIResponseError`s are the
converter's own. Unknown keys are kept (in `raw`, with their wire values) as the
lenient converter keeps them, and left to the converter (to fail) when it is strict.
Everything that can fail is checked while the table is built (every known field's
column, kept or not), so making rows later cannot.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import attrs

from ._converter import Converter, blank_class
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


def _all_str(column: Sequence[Any]) -> bool:
    # join() checks each item is a str, in C, several times faster than collecting
    # the types; it accepts str subclasses, which the converter's hooks accept too.
    try:
        _join(column)
    except TypeError:
        return False
    return True


def _ints(column: Sequence[Any]) -> Sequence[Any]:
    if _all_str(column):
        try:
            return list(map(int, column))
        except ValueError:  # "12.0" and the like: the converter's rules decide
            raise _Fallback from None
    if set(map(type, column)) == _INT:
        return column
    raise _Fallback


def _floats(column: Sequence[Any]) -> Sequence[Any]:
    values: Sequence[Any]
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


def _strs(column: Sequence[Any]) -> Sequence[Any]:
    if _all_str(column):
        return column
    raise _Fallback


_CONVERTERS: dict[type, Callable[[Sequence[Any]], Sequence[Any]]] = {
    int: _ints,
    float: _floats,
    str: _strs,
}

# Rows are read a block at a time, in C loops (map, zip): a block of dicts is small
# enough to stay in the CPU cache while its values are picked.
# Rows are made in blocks too: one call of a generated function per block.
BLOCK = 512


Column = tuple[Any, ...]
Rows = Sequence[dict[str, Any]]


@typing.final
class Table:
    """Aggregation rows of one shape, column by column; immutable once built.

    `keys` are the rows' keys, in the first row's order (other rows may order the
    same keys differently). `raws` are the decoded row dicts themselves (the list
    the response was decoded to, handed over): each made row's `raw` is its dict.
    `typed` holds, per key, the values as `AggregationRow` holds them where
    conversion changed them (numbers sent as strings, ints for a float field),
    else None: those values are the wire values, read from `raws` when wanted
    (`column`). Typed columns are tuples, not lists: a tuple of numbers is dropped
    from the garbage collector's watch after one collection, and the dicts (of
    strings and numbers) are never watched, so a held table costs a full
    collection one visit per row, for the list of dicts (a list of values would
    have every value visited). Slicing, reordering and concatenating give new
    tables.
    """

    __slots__ = ("keys", "raws", "typed")

    def __init__(
        self, keys: tuple[str, ...], raws: Rows, typed: tuple[Column | None, ...]
    ) -> None:
        self.keys = keys
        self.raws = raws
        self.typed = typed

    def __len__(self) -> int:
        return len(self.raws)

    def column(self, key: str) -> Column:
        """The typed values of `key` (see `columns`)."""
        return self.columns((key,))[0]

    def columns(self, keys: Sequence[str]) -> list[Column]:
        """The typed values of each of `keys`: the wire values for a key the SDK
        does not know, None for every row when the rows lack the key.

        Values not converted are read from the dicts, all such keys together, block
        by block, so that each dict is fetched into the CPU cache once for all.
        """
        where = {key: index for index, key in enumerate(self.keys)}
        read = [
            key for key in dict.fromkeys(keys)
            if key in where and self.typed[where[key]] is None
        ]
        getters = list(map(itemgetter, read))
        values: list[list[Any]] = [[] for _ in read]
        for start in range(0, len(self) if read else 0, BLOCK):
            block = self.raws[start:start + BLOCK]
            for column, get in zip(values, getters, strict=True):
                column += map(get, block)
        found = dict(zip(read, map(tuple, values), strict=True))

        def pick(key: str) -> Column:
            if key in found:
                return found[key]
            typed = self.typed[where[key]] if key in where else None
            return typed if typed is not None else (None,) * len(self)

        return [pick(key) for key in keys]

    def rows(self, start: int, stop: int) -> list[AggregationRow]:
        """New `AggregationRow`s for rows `start` to `stop - 1`."""
        shape = tuple(column is not None for column in self.typed)
        return _maker(self.keys, shape)(self.raws, self.typed, start, stop)

    def take(self, selector: slice | Sequence[int]) -> Table:
        """The rows a slice or a list of indexes picks, in that order."""
        if isinstance(selector, slice):
            return Table(
                self.keys,
                self.raws[selector],
                tuple(None if column is None else column[selector] for column in self.typed),
            )
        return Table(
            self.keys,
            tuple(map(self.raws.__getitem__, selector)),
            tuple(
                None if column is None else tuple(map(column.__getitem__, selector))
                for column in self.typed
            ),
        )


def concat_tables(tables: Sequence[Table]) -> Table | None:
    """The tables' rows one after another; None when they differ in shape."""
    keys = tables[0].keys
    if any(table.keys != keys for table in tables):
        return None
    if len(tables) == 1:
        return tables[0]  # immutable: shared, not copied
    raws = tuple(chain.from_iterable(table.raws for table in tables))
    typed = tuple(
        None if all(table.typed[index] is None for table in tables)
        else tuple(chain.from_iterable(table.column(key) for table in tables))
        for index, key in enumerate(keys)
    )
    return Table(keys, raws, typed)


@functools.lru_cache(maxsize=256)
def _reader(
    keys: tuple[str, ...], strict: bool
) -> tuple[Callable[[Sequence[Any]], Sequence[Any]] | None, ...] | None:
    """Per key, the checker and converter of its column (None: a key the SDK does not
    know, only looked for); None: never a table."""
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
    if converters is None:
        return None
    width = {len(keys)}
    split = _splitter(keys)
    # Per key, the typed values once conversion has changed any, block by block
    # (None: the values are read from the dicts when wanted, as sent).
    typed: list[list[Sequence[Any]] | None] = [None] * len(keys)
    try:
        for start in range(0, len(items), BLOCK):
            block = items[start:start + BLOCK]
            # One shape: as many keys in every row, and every row has each of them
            # (`split` raises KeyError otherwise), in whatever order: each row's
            # `raw` is its own dict, so keeps its own order.
            if set(map(type, block)) != _DICT or set(map(len, block)) != width:
                return None
            for index, values in enumerate(split(block)):
                convert = converters[index]
                if convert is None:
                    continue
                result = convert(values)  # checked even where nothing is kept
                parts = typed[index]
                if parts is not None:
                    parts.append(result)
                elif result is not values:
                    # The first block conversion changes: the blocks before were
                    # typed as sent.
                    parts = [tuple(map(itemgetter(keys[index]), items[:start])), result]
                    typed[index] = parts
    except (_Fallback, KeyError):
        return None
    return Table(
        keys,
        items,  # handed over: the caller keeps no use for it
        tuple(None if parts is None else tuple(chain.from_iterable(parts)) for parts in typed),
    )


def _splitter(keys: tuple[str, ...]) -> Callable[[Rows], Sequence[Column]]:
    """A function of a block of rows -> its columns, one per key (KeyError: a row
    lacks one). Each row's values are picked at once, while its dict is in the
    CPU cache, and the rows' tuples turned into columns (`zip`), all in C loops."""
    if len(keys) == 1:
        get = itemgetter(keys[0])
        return lambda block: (tuple(map(get, block)),)
    get_all = itemgetter(*keys)
    return lambda block: list(zip(*map(get_all, block), strict=True))


# A row being filled in: `AggregationRow`'s mutable twin (`_converter.blank_class`,
# the one mechanism every flat model uses), plain slot stores, then `__class__`
# assignment makes it exactly the frozen class, as `__init__` would have built it.
_Blank = blank_class(AggregationRow)
assert _Blank is not None  # AggregationRow's __init__ only stores its fields


def _source(keys: tuple[str, ...], kept: tuple[bool, ...]) -> str:
    """Python source of a row maker; only our own field names go in it.

    A field with a typed column is read from it; any other field the row has is
    read from the row's dict, by a key that reaches the code as a value (`READ`),
    never as text: response keys never reach the source.
    """
    known = [index for index, key in enumerate(keys) if key in _FIELDS]
    converted = [index for index in known if kept[index]]
    read = [index for index in known if not kept[index]]
    lines = [
        "def make(raws, typed, start, stop):",
        *([f"    {''.join(f'k{index}, ' for index in read)}= READ"] if read else []),
        *(f"    t{index} = typed[{index}][start:stop]" for index in converted),
        "    raws = raws[start:stop]",
        "    rows = list(map(new, repeat(Blank, len(raws))))",
        "    for raw, row, "
        + "".join(f"v{index}, " for index in converted)
        + "in zip(raws, rows, "
        + "".join(f"t{index}, " for index in converted)
        + "):",
        *(
            f"        row.{keys[index]} = v{index}"
            if kept[index]
            else f"        row.{keys[index]} = raw[k{index}]"
            for index in known
        ),
        *(f"        row.{name} = None" for name in _FIELDS if name not in keys),
        "        row.raw = raw",
        "        row.__class__ = Row",
        "    return rows",
    ]
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=256)
def _maker(
    keys: tuple[str, ...], kept: tuple[bool, ...]
) -> Callable[[Rows, tuple[Column | None, ...], int, int], list[AggregationRow]]:
    """The row maker for tables of this shape (keys, and which have typed columns)."""
    namespace: dict[str, Any] = {
        "READ": tuple(
            key for key, typed in zip(keys, kept, strict=True) if key in _FIELDS and not typed
        ),
        "new": object.__new__,
        "repeat": repeat,
        "len": len,
        "list": list,
        "map": map,
        "zip": zip,
        "Blank": _Blank,
        "Row": AggregationRow,
    }
    label = ",".join(key for key in keys if key in _FIELDS)  # response keys never reach it
    exec(compile(_source(keys, kept), f"<fathom_async rows {label}>", "exec"), namespace)
    function: Callable[
        [Rows, tuple[Column | None, ...], int, int], list[AggregationRow]
    ] = namespace["make"]
    return function
