"""Aggregation results as dicts, pandas and polars DataFrames, with proper dtypes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import polars as pl
import pytest
from aioresponses import aioresponses

from fathom_async import AggregationRow, AggregationRows, APIResponseError, FathomClient
from fathom_async._converter import get_converter
from fathom_async._rows import structure_table
from tests.conftest import url

BERLIN = ZoneInfo("Europe/Berlin")


def rows(data: list[Any], **kwargs: Any) -> AggregationRows:
    table = structure_table(data, get_converter(True))
    assert table is not None
    return AggregationRows._from_table(table, **kwargs)


HOURLY = [
    {"visits": "3", "pageviews": "10", "avg_duration": "12.5", "bounce_rate": "0.25",
     "date": "2024-10-27 02:00:00", "pathname": "/"},
    {"visits": "4", "pageviews": "11", "avg_duration": "1", "bounce_rate": "0",
     "date": "2024-10-27 03:00:00", "pathname": "/blog"},
]
COLUMNS = ("visits", "pageviews", "avg_duration", "bounce_rate", "date", "pathname")


def test_pandas_dtypes() -> None:
    frame = rows(HOURLY, columns=COLUMNS).to_pandas(timezone="Europe/Berlin")
    assert list(frame.columns) == list(COLUMNS)
    assert frame["visits"].dtype == "int64"
    assert frame["pageviews"].dtype == "int64"
    assert frame["avg_duration"].dtype == "float64"
    assert frame["bounce_rate"].dtype == "float64"
    assert isinstance(frame["date"].dtype, pd.DatetimeTZDtype)
    assert str(frame["date"].dtype.tz) == "Europe/Berlin"
    assert pd.api.types.is_string_dtype(frame["pathname"])
    # the repeated 02:00 of the autumn change is read as its first occurrence (CEST)
    assert frame["date"][0] == pd.Timestamp(datetime(2024, 10, 27, 2, tzinfo=BERLIN))
    assert frame["date"][0].utcoffset().total_seconds() == 7200
    assert frame["date"][1].utcoffset().total_seconds() == 3600
    assert frame["pageviews"].tolist() == [10, 11]


def test_polars_dtypes() -> None:
    frame = rows(HOURLY, columns=COLUMNS).to_polars(timezone="Europe/Berlin")
    assert frame.columns == list(COLUMNS)
    assert frame.schema["visits"] == pl.Int64
    assert frame.schema["avg_duration"] == pl.Float64
    assert frame.schema["date"] == pl.Datetime("us", "Europe/Berlin")
    assert frame.schema["pathname"] == pl.String
    assert frame["date"].to_list()[0] == datetime(2024, 10, 27, 2, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2023", datetime(2023, 1, 1)),
        ("2023-04", datetime(2023, 4, 1)),
        ("2023-04-05", datetime(2023, 4, 5)),
        ("2023-04-05 13:00:00", datetime(2023, 4, 5, 13)),
        ("2023-04-05T13:00:00", datetime(2023, 4, 5, 13)),
    ],
)
def test_every_date_format_is_the_start_of_its_period(wire: str, expected: datetime) -> None:
    table = rows([{"pageviews": "1", "date": wire}])
    assert table.to_pandas(timezone="America/New_York")["date"][0] == pd.Timestamp(
        expected.replace(tzinfo=ZoneInfo("America/New_York"))
    )
    assert table.to_polars(timezone="UTC")["date"][0] == expected.replace(
        tzinfo=ZoneInfo("UTC")
    )


def test_the_query_timezone_is_the_default_and_without_one_dates_stay_naive() -> None:
    table = rows([{"pageviews": "1", "date": "2024-01-01"}], timezone="Asia/Tokyo")
    dtype = table.to_pandas()["date"].dtype
    assert isinstance(dtype, pd.DatetimeTZDtype)
    assert str(dtype.tz) == "Asia/Tokyo"
    assert table.to_polars(timezone="UTC")["date"].dtype == pl.Datetime("us", "UTC")
    unzoned = rows([{"pageviews": "1", "date": "2024-03-05 13:00:00"}])
    naive = unzoned.to_pandas()["date"]
    assert naive.dtype == "datetime64[us]" or str(naive.dtype).startswith("datetime64[")
    assert naive.dt.tz is None
    assert str(naive.iloc[0]) == "2024-03-05 13:00:00"  # the wall-clock time, unlabelled
    polars_naive = unzoned.to_polars()["date"]
    assert polars_naive.dtype == pl.Datetime("us")
    assert str(polars_naive[0]) == "2024-03-05 13:00:00"
    # no date column: no zone needed
    assert rows([{"pageviews": "1"}]).to_pandas()["pageviews"].tolist() == [1]


def test_an_empty_result_keeps_its_columns_and_dtypes() -> None:
    empty = AggregationRows(columns=("pageviews", "bounce_rate", "date", "pathname"))
    frame = empty.to_pandas(timezone="UTC")
    assert list(frame.columns) == ["pageviews", "bounce_rate", "date", "pathname"]
    assert frame["pageviews"].dtype == "int64"
    assert frame["bounce_rate"].dtype == "float64"
    assert isinstance(frame["date"].dtype, pd.DatetimeTZDtype)
    polars_frame = empty.to_polars(timezone="UTC")
    assert polars_frame.schema["pageviews"] == pl.Int64
    assert polars_frame.height == 0


def test_missing_values_become_nulls() -> None:
    table = AggregationRows(
        [AggregationRow(pageviews=1, raw={"pageviews": "1"}),
         AggregationRow(bounce_rate=0.5, date="2024", pathname="/",
                        raw={"bounce_rate": "0.5", "date": "2024", "pathname": "/"})],
        columns=("pageviews",),
    )
    frame = table.to_pandas(timezone="UTC")
    assert str(frame["pageviews"].dtype) == "Int64"
    assert frame["pageviews"].isna().tolist() == [False, True]
    assert frame["bounce_rate"].isna().tolist() == [True, False]
    assert frame["date"].isna().tolist() == [True, False]
    polars_frame = table.to_polars(timezone="UTC")
    assert polars_frame["pageviews"].to_list() == [1, None]
    assert polars_frame["pathname"].to_list() == [None, "/"]


def test_unknown_fields_keep_their_wire_values() -> None:
    table = AggregationRows(
        get_converter(False).structure_many([{"pageviews": "1", "new_metric": "7"}],
                                            AggregationRow)
    )
    assert table.to_dicts() == [{"pageviews": 1, "new_metric": "7"}]
    assert table.to_pandas()["new_metric"].tolist() == ["7"]
    odd = AggregationRows([AggregationRow(pageviews=1, raw={"pageviews": "1", "extra": [1]})])
    assert odd.to_polars()["extra"].dtype == pl.Object


def test_an_unreadable_date_is_an_api_response_error() -> None:
    with pytest.raises(APIResponseError, match="unreadable date"):
        rows([{"pageviews": "1", "date": "yesterday"}]).to_pandas(timezone="UTC")
    bad = AggregationRows([AggregationRow(date=5, raw={"date": 5})])  # type: ignore[arg-type]
    with pytest.raises(APIResponseError, match="unreadable date"):
        bad.to_polars(timezone="UTC")


def test_missing_extras_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(ImportError, match=r"fathom-async\[pandas\]"):
        rows([{"pageviews": "1"}]).to_pandas()
    with pytest.raises(ImportError, match=r"fathom-async\[polars\]"):
        rows([{"pageviews": "1"}]).to_polars()


MIXED = [
    {"visits": "3", "avg_duration": "12.5", "date": "2024-03-31 02:00:00",
     "new_metric": [1], "pathname": "/"},
    {"visits": "4", "avg_duration": "1", "date": "2024-03-31 03:00:00",
     "new_metric": "7", "pathname": "/blog"},
]


@pytest.mark.parametrize("columns", [(), COLUMNS, ("pageviews", "city")])
def test_columns_convert_as_the_rows_they_hold(columns: tuple[str, ...]) -> None:
    table = structure_table(MIXED, get_converter(False))
    assert table is not None
    from_columns = AggregationRows._from_table(table, columns=columns, timezone="Europe/Berlin")
    from_rows = AggregationRows(get_converter(False).structure_many(MIXED, AggregationRow),
                                columns=columns, timezone="Europe/Berlin")
    assert from_columns.to_dicts() == from_rows.to_dicts()
    assert [list(d) for d in from_columns.to_dicts()] == [list(d) for d in from_rows.to_dicts()]
    pd.testing.assert_frame_equal(from_columns.to_pandas(), from_rows.to_pandas())
    polars_columns, polars_rows = from_columns.to_polars(), from_rows.to_polars()
    assert polars_columns.schema == polars_rows.schema
    # (an Object column never equals itself in polars: compare it as Python values)
    assert polars_columns.rows() == polars_rows.rows()
    assert polars_columns.drop("new_metric").equals(polars_rows.drop("new_metric"))
    assert not any(from_columns._flags)  # no row was made for any of it


async def test_query_results_convert(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "647", "date": "2023"},
                                           {"pageviews": "492", "date": "2022"}])
    result = await fathom.aggregations.query(
        entity="pageview", site_id="CDBUGS", aggregates="pageviews", date_grouping="year",
        timezone="Europe/Berlin",
    )
    assert result[0].pageviews == 647
    assert result.to_dicts() == [{"pageviews": 647, "date": "2023"},
                                 {"pageviews": 492, "date": "2022"}]
    assert result.to_pandas()["date"][1] == pd.Timestamp(datetime(2022, 1, 1, tzinfo=BERLIN))
    assert result.to_polars().columns == ["pageviews", "date"]
    assert "2 rows" in repr(result)
