"""Aggregation results: an immutable sequence of rows kept as columns, and ways out.

`AggregationRows` is what `aggregations.query()` returns. Underneath it is, for any
answer `_rows` can vouch for, a `Table`: the decoded row dicts, each field checked
and converted once per column (the converted columns kept beside the dicts). Its
`AggregationRow`s are made when first touched (indexing, iterating, `in`), a block
at a time, each with its own decoded dict as `raw`, and kept, so the same index
gives the same object; slices, merges and sorts reorder the dicts and columns, and
`to_dicts()`, `to_pandas()` and `to_polars()` read them, without making a row
(columns that were not kept are read from the dicts, once per call). Other answers are
held as the converter built them. It is deliberately not a `list` subclass: C code
(`json.dumps`, `pickle`, `list.__eq__`) reads a list's items directly and would see
an empty or stale list. pandas and polars are optional extras, imported when a
conversion asks for them, never at import time.

Column types: counts (`visits`, `pageviews`, `value`, ...) are 64-bit ints,
`avg_duration` and `bounce_rate` 64-bit floats, the field groupings strings, and
`date` a timezone-aware datetime in the site's timezone. The API sends `date` as
wall-clock text whose format depends on the grouping (`"2023"`, `"2023-04"`,
`"2023-04-05"`, `"2023-04-05 13:00:00"`): each becomes the start of its period in
that zone. A wall-clock time that a DST change repeats is read as its first
occurrence, and one it skips with the offset from before the change (`fold=0`).
The timezone is the `timezone=` you give the conversion, else the one the query
was made with; the site's own zone is `(await fathom.sites.get(site_id)).timezone`.
"""

from __future__ import annotations

import operator
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any, SupportsIndex, cast, overload

from ._exceptions import APIResponseError
from ._models import AggregationRow
from ._rows import BLOCK, Table, concat_tables
from ._validation import check_timezone

if TYPE_CHECKING:
    import pandas
    import polars

__all__ = ["AggregationRows"]

INT_COLUMNS = frozenset(
    {"visits", "uniques", "pageviews", "conversions", "unique_conversions", "value"}
)
FLOAT_COLUMNS = frozenset({"avg_duration", "bounce_rate"})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
# Rows are made under one lock, so that threads iterating one result at once still
# get one object per row (`rows[i] is rows[i]` everywhere); a block at a time, and a
# lock the pickled result need not carry.
_MAKING = threading.Lock()
_REPR_ROWS = 5  # a repr shows this many rows, then "..."


class AggregationRows(Sequence[AggregationRow]):
    """The rows of an aggregation: an immutable sequence, plus conversions to tables.

    Index it, slice it (a slice is an `AggregationRows` too), iterate it, compare
    it with a list of rows; it is not a list (`list(rows)` for a list). Each
    `AggregationRow` is made when first touched and then kept: `rows[0] is rows[0]`.

    `columns` are the fields the query asked for (so an empty result still has
    its columns); `timezone` is the `timezone=` of the query, if any; `truncated`
    is True when a call came back with exactly `limit` rows, so rows may be
    missing (see `aggregations.query(split=True)`).
    """

    __slots__ = ("_flags", "_made", "_table", "columns", "timezone", "truncated")
    # Equal to a list of the same rows, so unhashable like one.
    __hash__ = None  # type: ignore[assignment]

    columns: tuple[str, ...]
    timezone: str | None
    truncated: bool
    # `_made[i]` is row i once made (else None) and `_flags[i]` says whether it is:
    # a bytearray is scanned in C (`0 in flags`), where comparing rows with None
    # would call `AggregationRow.__eq__` for each. Without a table every row is made.
    _table: Table | None
    _made: list[AggregationRow | None]
    _flags: bytearray

    def __init__(
        self,
        rows: Iterable[AggregationRow] = (),
        *,
        columns: Iterable[str] = (),
        timezone: str | None = None,
        truncated: bool = False,
    ) -> None:
        made: list[AggregationRow | None] = list(rows)
        self._set(None, made, bytearray(b"\x01") * len(made), columns, timezone, truncated)

    @classmethod
    def _from_table(
        cls,
        table: Table,
        *,
        columns: Iterable[str] = (),
        timezone: str | None = None,
        truncated: bool = False,
    ) -> AggregationRows:
        """Rows read as columns (`_rows.structure_table`), none made yet."""
        rows = cls.__new__(cls)
        size = len(table)
        rows._set(table, [None] * size, bytearray(size), columns, timezone, truncated)
        return rows

    def _set(
        self,
        table: Table | None,
        made: list[AggregationRow | None],
        flags: bytearray,
        columns: Iterable[str],
        timezone: str | None,
        truncated: bool,
    ) -> None:
        self._table = table
        self._made = made
        self._flags = flags
        self.columns = tuple(columns)
        self.timezone = timezone
        self.truncated = truncated

    def _pick(self, selector: slice | list[int]) -> AggregationRows:
        """The rows a slice or a list of indexes picks: columns picked, no row made."""
        if isinstance(selector, slice):
            made, flags = self._made[selector], self._flags[selector]
        else:
            made = list(map(self._made.__getitem__, selector))
            flags = bytearray(map(self._flags.__getitem__, selector))
        rows = type(self).__new__(type(self))
        table = None if self._table is None else self._table.take(selector)
        rows._set(table, made, flags, self.columns, self.timezone, self.truncated)
        return rows

    def _made_between(self, start: int, stop: int) -> list[AggregationRow]:
        """Rows `start` to `stop - 1`, each made (and kept) on first use."""
        made, flags, table = self._made, self._flags, self._table
        if table is not None and flags.count(0, start, stop):
            with _MAKING:  # checked again: another thread may have made them meanwhile
                missing = flags.count(0, start, stop)
                if missing:
                    fresh = table.rows(start, stop)
                    if missing < stop - start:  # rows handed out stay the same objects
                        fresh = [
                            new if old is None else old
                            for old, new in zip(made[start:stop], fresh, strict=True)
                        ]
                    made[start:stop] = fresh
                    flags[start:stop] = b"\x01" * (stop - start)
                    return fresh  # the rows just stored: no second copy
        return cast("list[AggregationRow]", made[start:stop])

    def _blocks(self, starts: Iterable[int], *, backwards: bool) -> Iterator[AggregationRow]:
        """The rows block by block, each made when its block is reached: a loop that
        stops early has made only the blocks it went through."""
        size = len(self._made)
        for start in starts:
            rows = self._made_between(start, min(start + BLOCK, size))
            yield from reversed(rows) if backwards else rows

    def __len__(self) -> int:
        return len(self._made)

    @overload
    def __getitem__(self, index: SupportsIndex) -> AggregationRow: ...

    @overload
    def __getitem__(self, index: slice) -> AggregationRows: ...

    def __getitem__(self, index: SupportsIndex | slice) -> AggregationRow | AggregationRows:
        if isinstance(index, slice):
            return self._pick(index)
        position = operator.index(index)
        size = len(self._made)
        if position < 0:
            position += size
        if not 0 <= position < size:
            raise IndexError("AggregationRows index out of range")
        row = self._made[position]
        if row is None:
            row = self._made_between(position, position + 1)[0]
        return row

    def __iter__(self) -> Iterator[AggregationRow]:
        if 0 not in self._flags:  # every row made: the list's own iterator
            return iter(cast("list[AggregationRow]", self._made))
        return self._blocks(range(0, len(self._made), BLOCK), backwards=False)

    def __reversed__(self) -> Iterator[AggregationRow]:
        if 0 not in self._flags:
            return reversed(cast("list[AggregationRow]", self._made))
        return self._blocks(reversed(range(0, len(self._made), BLOCK)), backwards=True)

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """The first position of `value` from `start` (before `stop`), as `list.index`."""
        first, last, _ = slice(start, stop).indices(len(self))
        for block in range(first, last, BLOCK):
            rows = self._made_between(block, min(block + BLOCK, last))
            for offset, row in enumerate(rows):
                if row is value or row == value:
                    return block + offset
        raise ValueError(f"{value!r} is not in AggregationRows")

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of equal rows, as a list is (`rows == [row, ...]`)."""
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(map(operator.eq, self, other))

    def __repr__(self) -> str:
        flag = " truncated" if self.truncated else ""
        shown = ", ".join(map(repr, self._made_between(0, min(len(self), _REPR_ROWS))))
        more = ", ..." if len(self) > _REPR_ROWS else ""
        return f"<AggregationRows {len(self)} rows{flag}: [{shown}{more}]>"

    @classmethod
    def _concat(
        cls,
        parts: Sequence[AggregationRows],
        *,
        columns: Iterable[str],
        timezone: str | None,
        truncated: bool,
    ) -> AggregationRows:
        """The parts' rows one after another, with these terms.

        Tables of one shape are joined column by column; otherwise the rows are
        made and joined. Empty parts count for nothing (an empty answer has no
        shape to disagree with).
        """
        parts = [part for part in parts if part]
        tables = [part._table for part in parts if part._table is not None]
        table = concat_tables(tables) if tables and len(tables) == len(parts) else None
        if table is None:
            rows = chain.from_iterable(parts)
            return cls(rows, columns=columns, timezone=timezone, truncated=truncated)
        merged = cls.__new__(cls)
        made = list(chain.from_iterable(part._made for part in parts))
        flags = bytearray().join(part._flags for part in parts)
        merged._set(table, made, flags, columns, timezone, truncated)
        return merged

    def _sorted(self, field: str, reverse: bool) -> AggregationRows:
        """Stably sorted by `field`, rows without a value last; no row made for it."""
        values = (
            self._table.column(field)
            if self._table is not None
            else [getattr(row, field) for row in self]
        )
        present = [index for index, value in enumerate(values) if value is not None]
        present.sort(key=values.__getitem__, reverse=reverse)
        return self._pick(present + [index for index, value in enumerate(values) if value is None])

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per row: the fields the API sent, typed (`AggregationRow.to_dict`)."""
        table = self._table
        if table is None:
            return [row.to_dict() for row in self]
        # Each row's dict copied (in its own key order), then its converted values
        # put in place of the wire ones, all in C loops.
        dicts = list(map(dict, table.raws))
        for key, column in zip(table.keys, table.typed, strict=True):
            if column is not None:
                deque(map(operator.setitem, dicts, repeat(key), column), maxlen=0)
        return dicts

    def to_pandas(self, timezone: str | None = None) -> pandas.DataFrame:
        """A pandas DataFrame (needs the `pandas` extra); `date` in `timezone`.

        `timezone` defaults to the query's `timezone=`; with neither, `date` holds
        naive wall-clock datetimes (the site's clock, as the API reports them).
        """
        try:
            import pandas as pd
        except ImportError:
            raise _missing("pandas") from None
        data: dict[str, Any] = {}
        for name, values in self._columns().items():
            if name in INT_COLUMNS:
                data[name] = pd.array(values, dtype="int64" if None not in values else "Int64")
            elif name in FLOAT_COLUMNS:
                data[name] = pd.array(
                    [float("nan") if v is None else v for v in values], dtype="float64"
                )
            elif name == "date":
                zone = self._zone(timezone)
                moments = pd.to_datetime(
                    pd.array(_instants(values, zone or "UTC"), dtype="Int64"), unit="us", utc=True
                )
                # Without a zone the wall-clock times stay naive rather than mislabelled.
                data[name] = moments.tz_convert(zone) if zone else moments.tz_localize(None)
            else:
                data[name] = pd.Series(values, dtype=object if None in values else None)
        frame: pd.DataFrame = pd.DataFrame(data, index=pd.RangeIndex(len(self)))
        return frame

    def to_polars(self, timezone: str | None = None) -> polars.DataFrame:
        """A polars DataFrame (needs the `polars` extra); `date` as in `to_pandas()`."""
        try:
            import polars as pl
        except ImportError:
            raise _missing("polars") from None
        series = []
        for name, values in self._columns().items():
            if name in INT_COLUMNS:
                series.append(pl.Series(name, values, dtype=pl.Int64))
            elif name in FLOAT_COLUMNS:
                series.append(pl.Series(name, values, dtype=pl.Float64))
            elif name == "date":
                zone = self._zone(timezone)
                instants = pl.Series(name, _instants(values, zone or "UTC"), dtype=pl.Int64)
                series.append(
                    instants.cast(pl.Datetime("us", "UTC")).dt.convert_time_zone(zone)
                    if zone else instants.cast(pl.Datetime("us"))
                )
            elif all(value is None or isinstance(value, str) for value in values):
                series.append(pl.Series(name, values, dtype=pl.String))
            else:  # a field the SDK does not know yet: whatever the API sent
                series.append(pl.Series(name, values, dtype=pl.Object))
        return pl.DataFrame(series)

    def _columns(self) -> dict[str, Sequence[Any]]:
        """Each column a table shows: the fields asked for, then any other the API sent.

        Columns are the table's own (not copies): the conversions only read them.
        """
        table = self._table
        if table is not None:
            names = tuple(dict.fromkeys([*self.columns, *table.keys]))
            return dict(zip(names, table.columns(names), strict=True))
        seen = dict.fromkeys(self.columns)
        for row in self:
            seen.update(dict.fromkeys(row.raw))
        dicts = self.to_dicts()
        return {name: [d.get(name) for d in dicts] for name in seen}

    def _zone(self, timezone: str | None) -> str | None:
        """The zone of the `date` column: the argument, else the query's, else None.

        The API reports dates on the site's wall clock. Knowing the zone, `date`
        becomes timezone-aware; not knowing it, it stays naive (that wall-clock
        time) rather than being labelled with a zone it may not be in.
        """
        zone = timezone if timezone is not None else self.timezone
        return None if zone is None else check_timezone(zone)


def _missing(module: str) -> ImportError:
    return ImportError(f"to_{module}() needs {module}: pip install 'fathom-async[{module}]'")


def _instants(values: Sequence[Any], zone_name: str) -> list[int | None]:
    """Wall-clock period starts in `zone_name` -> microseconds since the epoch (UTC)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(zone_name) if zone_name.upper() != "UTC" else timezone.utc
    known: dict[str, int] = {}  # a report repeats each date once per group
    result: list[int | None] = []
    for value in values:
        if value is None:
            result.append(None)
            continue
        instant = known.get(value)
        if instant is None:
            instant = known[value] = _instant(value, zone)
        result.append(instant)
    return result


def _instant(value: object, zone: Any) -> int:
    if not isinstance(value, str):
        raise APIResponseError(f"unreadable date {value!r} in an aggregation row", body=value)
    text = value.strip()
    if len(text) == 4:  # year grouping
        text += "-01-01"
    elif len(text) == 7:  # month grouping
        text += "-01"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise APIResponseError(
            f"unreadable date {value!r} in an aggregation row", body=value
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return (moment - _EPOCH) // _MICROSECOND
