"""Aggregation rows structured fast: one specialised function per query shape.

A report can hold tens of thousands of rows, and the cattrs converter spends most
of its time on per-field dispatch. Every row of one response has the same keys
(the aggregates, `date` and the field groupings asked for), so for each set of keys
we generate, once, a function for exactly that shape: per block of rows it picks
and converts each column in C loops (`map(int, ...)`), then fills the rows' slots
with straight-line attribute stores, no per-field dispatch left.

What this module must never do is disagree with the converter. The fast path takes
only the plain cases it can prove identical (exact `dict` rows of one shape, numbers
as `str` or `int`, strings as `str`); anything else, including every malformed row,
is handed whole to `Converter.structure_many`, so values and `APIResponseError`s
are the converter's own. Unknown keys are ignored like the lenient converter does,
and handed over (to fail) when the converter is strict.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from itertools import repeat
from operator import itemgetter
from typing import Any

import attrs

from ._converter import Converter
from ._models import AggregationRow

__all__ = ["structure_rows"]

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


class _Fallback(Exception):
    """The fast path cannot vouch for this input; the converter takes over."""


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


# Values are converted a block at a time, column by column, in C loops (map), and
# then stored row by row; a block is small enough to stay in the CPU cache.
_BLOCK = 512


def _source(known: list[tuple[int, str]], unset: list[str]) -> str:
    """Python source of a structure function; only our own field names go in it."""
    values = "".join(f", v{index}" for index, _ in known)
    columns = "".join(f", c{index}" for index, _ in known)
    lines = [
        "def structure(items):",
        "    if set(map(type, items)) != DICT or set(map(len, items)) != WIDTH:",
        "        raise Fallback",
        "    rows = []",
        "    append = rows.append",
        "    for start in range(0, len(items), BLOCK):",
        "        block = items[start:start + BLOCK]",
        "        try:",
        *(f"            c{index} = list(map(get{index}, block))" for index, _ in known),
        "        except KeyError:",
        "            raise Fallback from None",
        *(f"        c{index} = convert{index}(c{index})" for index, _ in known),
        f"        for row, raw{values} in zip(map(new, repeat(Blank)), block{columns}):",
        *(f"            row.{name} = v{index}" for index, name in known),
        *(f"            row.{name} = None" for name in unset),
        "            row.raw = raw",
        "            row.__class__ = Row",
        "            append(row)",
        "    return rows",
    ]
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=256)
def _shape_function(
    keys: tuple[str, ...], strict: bool
) -> Callable[[list[Any]], list[AggregationRow]] | None:
    """The structure function for rows with exactly these keys (None: never fast)."""
    unknown = [key for key in keys if key not in _FIELDS]
    if unknown and (strict or "raw" in unknown):
        return None  # strict refuses them; a "raw" key is the converter's business
    known = [(index, key) for index, key in enumerate(keys) if key in _FIELDS]
    if not known:
        return None  # nothing we know: rare enough to leave to the converter
    namespace: dict[str, Any] = {
        "DICT": {dict},
        "WIDTH": {len(keys)},
        "BLOCK": _BLOCK,
        "Fallback": _Fallback,
        "new": object.__new__,
        "repeat": repeat,
        "zip": zip,
        "Blank": _Blank,
        "Row": AggregationRow,
    }
    for index, key in known:
        namespace[f"get{index}"] = itemgetter(key)
        namespace[f"convert{index}"] = _CONVERTERS[_FIELDS[key]]
    source = _source(known, [name for name in _FIELDS if name not in keys])
    label = ",".join(key for _, key in known)  # response keys never reach the source
    exec(compile(source, f"<fathom_async rows {label}>", "exec"), namespace)
    function: Callable[[list[Any]], list[AggregationRow]] = namespace["structure"]
    return function


def structure_rows(items: Any, converter: Converter) -> list[AggregationRow]:
    """Decoded JSON rows -> `AggregationRow`s, exactly as `converter` would build them."""
    if type(items) is list and items and type(items[0]) is dict:
        function = _shape_function(tuple(items[0]), converter.strict)
        if function is not None:
            try:
                return function(items)
            except _Fallback:
                pass
    return list(converter.structure_many(items, AggregationRow))
