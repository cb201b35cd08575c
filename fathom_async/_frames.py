"""Aggregation results as tables: plain dicts, pandas and polars DataFrames.

`AggregationRows` is the list `aggregations.query()` returns; it only adds ways
out. pandas and polars are optional extras, imported when a conversion asks for
them, never at import time.

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

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ._exceptions import APIResponseError
from ._models import AggregationRow
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


class AggregationRows(list[AggregationRow]):
    """The rows of an aggregation: a plain list, plus conversions to tables.

    `columns` are the fields the query asked for (so an empty result still has
    its columns); `timezone` is the `timezone=` of the query, if any; `truncated`
    is True when a call came back with exactly `limit` rows, so rows may be
    missing (see `aggregations.query(split=True)`).
    """

    columns: tuple[str, ...]
    timezone: str | None
    truncated: bool

    def __init__(
        self,
        rows: Iterable[AggregationRow] = (),
        *,
        columns: Iterable[str] = (),
        timezone: str | None = None,
        truncated: bool = False,
    ) -> None:
        super().__init__(rows)
        self.columns = tuple(columns)
        self.timezone = timezone
        self.truncated = truncated

    def __repr__(self) -> str:
        flag = " truncated" if self.truncated else ""
        return f"<AggregationRows {len(self)} rows{flag}: {list.__repr__(self)}>"

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per row: the fields the API sent, typed (`AggregationRow.to_dict`)."""
        return [row.to_dict() for row in self]

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

    def _columns(self) -> dict[str, list[Any]]:
        names = list(self.columns)
        seen = set(names)
        for row in self:
            for key in row.raw:
                if key not in seen:
                    seen.add(key)
                    names.append(key)
        dicts = self.to_dicts()
        return {name: [d.get(name) for d in dicts] for name in names}

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


def _instants(values: list[Any], zone_name: str) -> list[int | None]:
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
