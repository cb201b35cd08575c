"""Every example response in the documents and every real sample in FACTS.md parses."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from fathom_async import (
    Account,
    AggregationRow,
    APIResponseError,
    CurrentVisitors,
    Deleted,
    Event,
    Milestone,
    Site,
    TokenInfo,
    Wiped,
)
from fathom_async._converter import get_converter, parse_date, parse_timestamp

SAMPLES = Path(__file__).parent / "samples"
strict = get_converter(strict=True)
lenient = get_converter(strict=False)


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("account.json", Account),
        ("site.json", Site),
        ("site_created.json", Site),
        ("site_updated.json", Site),
        ("site_deleted.json", Deleted),
        ("site_wiped.json", Wiped),
        ("event_v1.json", Event),
        ("event_created_v1.json", Event),
        ("event_deleted.json", Deleted),
        ("event_wiped.json", Wiped),
        ("event.json", Event),
        ("event_created.json", Event),
        ("event_updated.json", Event),
        ("event_deleted_current.json", Deleted),
        ("current_visitors_documented.json", CurrentVisitors),
        ("current_visitors_seen.json", CurrentVisitors),
        ("current_visitors_simple.json", CurrentVisitors),
    ],
)
def test_document_samples_parse_strictly(name: str, model: type[Any]) -> None:
    data = sample(name)
    obj = strict.structure(data, model)
    assert obj.raw == data


@pytest.mark.parametrize("name", ["sites_list.json", "events_list.json", "events_list_v1.json"])
def test_list_samples_parse_strictly(name: str) -> None:
    data = sample(name)
    model: type[Site | Event] = Site if name.startswith("sites") else Event
    items: tuple[Site | Event, ...] = strict.structure_many(data["data"], model)
    assert len(items) == len(data["data"])
    assert items[0].id == data["data"][0]["id"]


def test_site_fields_are_typed() -> None:
    site = strict.structure(sample("site.json"), Site)
    assert site == Site(
        id="CDBUGS",
        name="Bugs Bunny Portfolio",
        sharing="none",
        created_at=datetime(2020, 7, 27, 12, 1, 1, tzinfo=timezone.utc),
    )


def test_event_currency_is_none_on_get_and_set_on_create() -> None:
    assert strict.structure(sample("event.json"), Event).currency is None
    assert strict.structure(sample("event_created.json"), Event).currency == "dollar"


@pytest.mark.parametrize(
    "name", ["aggregation_seen.json", "aggregation_seen_year.json"]
)
def test_real_aggregation_rows_have_int_numbers(name: str) -> None:
    rows = strict.structure_many(sample(name), AggregationRow)
    assert all(isinstance(row.pageviews, int) for row in rows)
    assert rows[0].pageviews == int(sample(name)[0]["pageviews"])


def test_year_grouped_rows_keep_their_date_and_dict_form() -> None:
    rows = strict.structure_many(sample("aggregation_seen_year.json"), AggregationRow)
    assert [row.to_dict() for row in rows] == [
        {"pageviews": 647, "date": "2023"},
        {"pageviews": 492, "date": "2022"},
    ]
    assert rows[0]["pageviews"] == 647


def test_documented_aggregation_wrapper_rows_parse() -> None:
    rows = strict.structure_many(sample("aggregation_documented.json")["data"], AggregationRow)
    assert rows[0].browser == "Chrome"
    assert rows[0].device_type == "Desktop"
    assert rows[-1].pageviews == 300


def test_aggregation_floats_and_unrequested_fields() -> None:
    row = lenient.structure(
        {"avg_duration": "12.5", "bounce_rate": "0.25", "value": "1999"}, AggregationRow
    )
    assert row.avg_duration == 12.5
    assert row.bounce_rate == 0.25
    assert row.value == 1999
    assert row.pageviews is None


def test_row_repr_shows_only_what_was_sent() -> None:
    row = lenient.structure({"pageviews": "3", "pathname": "/"}, AggregationRow)
    assert repr(row) == "AggregationRow(pageviews=3, pathname='/')"


def test_current_visitors_mixed_types_become_ints() -> None:
    now = strict.structure(sample("current_visitors_seen.json"), CurrentVisitors)
    assert now.total == 1
    assert now.content[0].total == 1
    assert now.referrers == ()


def test_unknown_fields_are_ignored_leniently_and_refused_strictly() -> None:
    data = dict(sample("site.json"), brand_new_field=True)
    assert lenient.structure(data, Site).raw["brand_new_field"] is True
    with pytest.raises(APIResponseError, match="brand_new_field"):
        strict.structure(data, Site)


def test_unknown_aggregation_fields_stay_in_to_dict() -> None:
    row = lenient.structure({"pageviews": "1", "new_metric": "7"}, AggregationRow)
    assert row.to_dict() == {"pageviews": 1, "new_metric": "7"}


@pytest.mark.parametrize(
    ("data", "model"),
    [
        ({"pageviews": "many"}, AggregationRow),
        ({"pageviews": "1.5"}, AggregationRow),
        ({"pageviews": True}, AggregationRow),
        ({"pageviews": [1]}, AggregationRow),
        ({"avg_duration": "nan"}, AggregationRow),
        ({"avg_duration": {}}, AggregationRow),
        ({"avg_duration": False}, AggregationRow),
        ({"id": "X", "name": "n", "created_at": "yesterday"}, Site),
        ({"id": "X", "name": "n", "created_at": 12.5j if False else []}, Site),
        ({"id": "X"}, Site),
        ({"id": ["X"], "name": "n", "created_at": "2024-01-01 00:00:00"}, Site),
        ({"id": "X", "name": "n", "created_at": "2024-01-01 00:00:00", "multi_domain": "maybe"},
         Site),
        ({"id": "X", "name": "n", "milestone_date": 20240101}, Milestone),
        ("not an object", Site),
        (["not", "an", "object"], Account),
        ({"name": "t", "abilities": 5}, TokenInfo),
        ({"deleted": True, "id": 1.5}, Deleted),
    ],
)
def test_malformed_bodies_raise_api_response_error(data: Any, model: type[Any]) -> None:
    with pytest.raises(APIResponseError) as info:
        lenient.structure(data, model)
    assert model.__name__ in str(info.value)


def test_structure_many_needs_a_list() -> None:
    with pytest.raises(APIResponseError, match="expected a list"):
        lenient.structure_many({"data": []}, Site)


def test_numbers_as_whole_floats_and_padded_strings() -> None:
    row = lenient.structure({"pageviews": 12.0, "visits": " 7 ", "uniques": "3.0"}, AggregationRow)
    assert (row.pageviews, row.visits, row.uniques) == (12, 7, 3)
    assert lenient.structure({"pageviews": 5.5 * 2}, AggregationRow).pageviews == 11


def test_booleans_accept_the_api_spellings() -> None:
    base = {"id": "X", "name": "n", "created_at": "2024-01-01 00:00:00"}
    for wire, expected in [(True, True), ("false", False), (1, True), ("0", False)]:
        assert lenient.structure({**base, "multi_domain": wire}, Site).multi_domain is expected


def test_ids_sent_as_numbers_become_strings_where_the_model_says_str() -> None:
    site = lenient.structure({"id": 123, "name": "n", "created_at": "2024-01-01 00:00:00"}, Site)
    assert site.id == "123"
    deleted = lenient.structure({"deleted": "true", "id": "7"}, Deleted)
    assert deleted.id == "7"
    assert lenient.structure({"deleted": True, "id": 7}, Deleted).id == 7


def test_token_info_reads_lists_and_laravel_strings() -> None:
    info = lenient.structure({"name": "CI", "abilities": '["read:CDBUGS","manage:X"]'}, TokenInfo)
    assert info.abilities == ("read:CDBUGS", "manage:X")
    info = strict.structure(
        {"name": "CI", "abilities": ["*"], "last_used_at": 1700000000}, TokenInfo
    )
    assert info.last_used_at == datetime.fromtimestamp(1700000000, tz=timezone.utc)


def test_milestone_dates_are_dates() -> None:
    milestone = strict.structure(
        {
            "id": "9b2f6d8e-0000-4000-8000-000000000000",
            "object": "milestone",
            "name": "Launch",
            "milestone_date": "2024-03-01",
            "site_id": "CDBUGS",
            "created_at": "2024-03-01 10:00:00",
        },
        Milestone,
    )
    assert milestone.milestone_date == date(2024, 3, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-07-27 12:01:01", datetime(2020, 7, 27, 12, 1, 1, tzinfo=timezone.utc)),
        ("2020-07-27T12:01:01Z", datetime(2020, 7, 27, 12, 1, 1, tzinfo=timezone.utc)),
        ("2020-07-27T14:01:01+02:00", datetime(2020, 7, 27, 12, 1, 1, tzinfo=timezone.utc)),
        ("2020-07-27", datetime(2020, 7, 27, tzinfo=timezone.utc)),
        ("2020-07-27 12:01:01.250000", datetime(2020, 7, 27, 12, 1, 1, 250000, timezone.utc)),
    ],
)
def test_timestamps_become_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is timezone.utc


def test_parse_date_accepts_a_timestamp_too() -> None:
    assert parse_date("2024-01-02") == date(2024, 1, 2)
    assert parse_date("2024-01-02 23:00:00") == date(2024, 1, 2)


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("account.json", Account), ("site.json", Site), ("site_created.json", Site),
        ("site_wiped.json", Wiped), ("event.json", Event),
        ("event_v1.json", Event), ("event_created.json", Event),
    ],
)
def test_the_generated_path_builds_what_cattrs_builds(name: str, model: type[Any]) -> None:
    """The fast path fills a mutable twin and turns it into the model: same object."""
    data = sample(name)
    fast = strict.structure(data, model)
    slow = strict._conv.structure(data, model)
    assert type(fast) is model
    assert fast == slow
    assert hash(fast) == hash(slow)
    assert repr(fast) == repr(slow)
    assert fast.raw is data
    with pytest.raises(AttributeError):  # still frozen
        fast.raw = {}
    assert strict._fast[model] is not None  # the generated path did run
