"""Aggregation queries are validated before they cost one of ten requests a minute."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fathom_async import Filter, ValidationError
from fathom_async._filters import encode_filters
from fathom_async._resources.aggregations import aggregation_request

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=timezone.utc)


def params(**kwargs: Any) -> dict[str, str]:
    kwargs.setdefault("entity", "pageview")
    kwargs.setdefault("site_id", "CDBUGS")
    kwargs.setdefault("aggregates", ["pageviews"])
    request = aggregation_request(now=NOW, **kwargs)
    assert request.bucket == "reports"
    assert request.path == "/aggregations"
    return dict(request.query)


def test_minimal_pageview_query() -> None:
    assert params() == {"entity": "pageview", "entity_id": "CDBUGS", "aggregates": "pageviews"}


def test_entity_id_alone_works_for_pageviews_and_must_match_site_id() -> None:
    assert params(site_id=None, entity_id="CDBUGS")["entity_id"] == "CDBUGS"
    assert params(site_id="CDBUGS", entity_id="CDBUGS")["entity_id"] == "CDBUGS"


def test_hour_grouping_within_seven_days_is_fine() -> None:
    query = params(date_grouping="hour", date_from="2024-06-01 00:00:00",
                   date_to="2024-06-08 00:00:00", sort_by="timestamp:asc")
    assert query["date_grouping"] == "hour"
    assert query["sort_by"] == "timestamp:asc"
    # open-ended but recent enough
    assert params(date_grouping="hour", date_from=datetime(2024, 6, 10))["date_from"] == (
        "2024-06-10 00:00:00"
    )


def test_aware_datetimes_convert_only_with_a_timezone() -> None:
    start = datetime(2024, 6, 1, 22, 0, tzinfo=timezone.utc)
    query = params(date_from=start, timezone="Europe/Berlin")
    assert query["date_from"] == "2024-06-02 00:00:00"
    assert query["timezone"] == "Europe/Berlin"
    berlin = datetime(2024, 6, 2, 0, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert params(date_from=berlin, timezone="UTC")["date_from"] == "2024-06-01 22:00:00"


def test_a_date_means_the_whole_day() -> None:
    query = params(date_from=date(2024, 1, 1), date_to=date(2024, 1, 31))
    assert (query["date_from"], query["date_to"]) == ("2024-01-01 00:00:00",
                                                      "2024-01-31 23:59:59")


@pytest.mark.parametrize(
    ("day", "zone"), [(date(2024, 2, 29), None), (date(2026, 11, 1), "America/New_York")]
)
def test_a_date_string_is_the_same_whole_day_as_a_date(day: date, zone: str | None) -> None:
    text = day.isoformat()
    assert params(date_from=text, date_to=text, timezone=zone) == params(
        date_from=day, date_to=day, timezone=zone
    )
    query = params(date_from=text, date_to=text)
    assert (query["date_from"], query["date_to"]) == (f"{text} 00:00:00", f"{text} 23:59:59")


def test_filters_serialise_to_the_api_json_string() -> None:
    encoded = encode_filters([
        Filter("pathname", "is like", "/blog*"),
        {"property": "country_code", "operator": "is", "value": "NL"},
        Filter("referrer_hostname", "matching", r"^https://(www\.)?google\."),
    ])
    assert encoded == (
        '[{"property":"pathname","operator":"is like","value":"/blog*"},'
        '{"property":"country_code","operator":"is","value":"NL"},'
        '{"property":"referrer_hostname","operator":"matching",'
        '"value":"^https://(www\\\\.)?google\\\\."}]'
    )


def test_unicode_filter_values_are_kept_as_given() -> None:
    assert "Zürich" in encode_filters([Filter("city", "is", "Zürich")])


BAD_QUERIES: list[tuple[dict[str, Any], str]] = [
    ({"entity": "session"}, "entity"),
    ({"entity": "pageview", "site_id": None}, "site_id"),
    ({"site_id": "CDBUGS", "entity_id": "OTHER"}, "entity_id"),
    ({"entity_name": "Signed up"}, "entity_name"),
    ({"site_id": "../x/"*100}, "site_id"),
    ({"aggregates": []}, "aggregates"),
    ({"aggregates": ["conversions"]}, "aggregates"),
    ({"aggregates": ["pageviews", "pageviews"]}, "aggregates"),
    ({"aggregates": "pageviews,visits"}, "aggregates"),
    ({"entity": "event", "aggregates": ["pageviews"], "entity_id": "E", "site_id": None},
     "aggregates"),
    ({"entity": "event", "aggregates": ["conversions"]}, "entity_name"),
    ({"entity": "event", "aggregates": ["conversions"], "site_id": None, "entity_name": "x"},
     "site_id"),
    ({"entity": "event", "aggregates": ["conversions"], "entity_name": " "}, "entity_name"),
    ({"entity": "event", "aggregates": ["conversions"], "entity_id": "E", "entity_name": "x"},
     "entity_name"),
    ({"date_grouping": "week"}, "date_grouping"),
    ({"field_grouping": ["domain"]}, "field_grouping"),
    ({"field_grouping": ["pathname", "nope"]}, "field_grouping"),
    ({"sort_by": "pageviews"}, "sort_by"),
    ({"sort_by": "pageviews:up"}, "sort_by"),
    ({"sort_by": "visits:desc"}, "sort_by"),
    ({"sort_by": "timestamp:desc"}, "sort_by"),
    ({"sort_by": 5}, "sort_by"),
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"limit": "10"}, "limit"),
    ({"limit": 10.0}, "limit"),
    ({"timezone": "Nowhere/Else"}, "timezone"),
    ({"timezone": ""}, "timezone"),
    ({"date_from": "2024-1-01"}, "date_from"),
    ({"date_from": "2024-02-30"}, "date_from"),
    ({"date_from": "20240101"}, "date_from"),
    ({"date_from": "2024-01-01T00:00:00"}, "date_from"),
    ({"date_from": "2024-01-01 00:00"}, "date_from"),
    ({"date_from": " 2024-01-01"}, "date_from"),
    ({"date_to": "2024-01-01\n"}, "date_to"),
    ({"date_to": "\u0662\u0660\u0662\u0664-01-01"}, "date_to"),  # Arabic-Indic digits
    ({"date_from": "2024-02-30 00:00:00"}, "date_from"),
    ({"date_from": 1704067200}, "date_from"),
    ({"date_to": "yesterday"}, "date_to"),
    ({"date_from": datetime(2024, 1, 1, tzinfo=timezone.utc)}, "date_from"),
    ({"date_from": date(2024, 2, 1), "date_to": date(2024, 1, 1)}, "date_to"),
    ({"date_grouping": "hour"}, "date_from"),
    ({"date_grouping": "hour", "date_from": date(2024, 6, 1), "date_to": date(2024, 6, 8)},
     "date_grouping"),
    ({"date_grouping": "hour", "date_from": date(2024, 1, 1)}, "date_grouping"),
    ({"filters": [Filter("pathname", "is", "/")] and [{"property": "pathname"}]}, "filters"),
    ({"filters": []}, "filters"),
    ({"filters": "pathname is /"}, "filters"),
    ({"filters": [("pathname", "is", "/")]}, "filters"),
    ({"filters": [{"property": "keyword", "operator": "is", "value": "x"}]},
     "filters.property"),
    ({"filters": [{"property": "country", "operator": "is", "value": "UK"}]},
     "filters.property"),
    ({"filters": [{"property": "browser", "operator": "is like", "value": "Chr*"}]},
     "filters.operator"),
    ({"filters": [{"property": "pathname", "operator": "contains", "value": "x"}]},
     "filters.operator"),
    ({"filters": [{"property": "pathname", "operator": "is", "value": 5}]}, "filters.value"),
    ({"filters": [{"property": "pathname", "operator": "is like", "value": ""}]},
     "filters.value"),
    ({"filters": [{"property": "pathname", "operator": "matching", "value": ""}]},
     "filters.value"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_QUERIES)
def test_bad_queries_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        params(**kwargs)
    assert info.value.field == field
    assert field.split(".")[0] in str(info.value)


def test_country_suggests_country_code() -> None:
    with pytest.raises(ValidationError, match="country_code"):
        Filter("country", "is", "UK")


def test_exactly_seven_days_of_hours_is_allowed() -> None:
    start = datetime(2024, 6, 1)
    params(date_grouping="hour", date_from=start, date_to=start + timedelta(days=7))
    with pytest.raises(ValidationError):
        params(date_grouping="hour", date_from=start,
               date_to=start + timedelta(days=7, seconds=1))


# New York falls back on 2026-11-01 (02:00 happens twice): this wall-clock week
# lasts 7 days and an hour; the week of the spring change (2026-03-08) 7 days less one.
FALL_WEEK = {"date_grouping": "hour", "date_from": "2026-10-29 00:00:00",
             "date_to": "2026-11-05 00:00:00"}


def test_a_week_across_a_dst_fall_back_is_too_long_for_hours_in_that_zone() -> None:
    with pytest.raises(ValidationError) as info:
        params(**FALL_WEEK, timezone="America/New_York")
    assert info.value.field == "date_grouping"
    assert "elapsed" in str(info.value)
    shorter = params(**{**FALL_WEEK, "date_to": "2026-11-04 23:00:00"},
                     timezone="America/New_York")
    assert shorter["date_to"] == "2026-11-04 23:00:00"
    assert params(**FALL_WEEK)["date_grouping"] == "hour"  # no zone: the wall clock counts
    params(**FALL_WEEK, timezone="Europe/Berlin")  # no change there that week


def test_a_week_and_an_hour_across_the_spring_change_is_seven_days_elapsed() -> None:
    spring = {"date_grouping": "hour", "date_from": "2026-03-05 00:00:00",
              "date_to": "2026-03-12 01:00:00"}
    params(**spring, timezone="America/New_York")
    with pytest.raises(ValidationError):
        params(**spring)


def test_an_open_range_ends_now_on_the_site_clock() -> None:
    start = datetime(2024, 6, 8, 12)  # NOW is 2024-06-15 12:00 UTC
    with pytest.raises(ValidationError):  # 7 days and 2 hours on Berlin's clock
        params(date_grouping="hour", date_from=start, timezone="Europe/Berlin")
    params(date_grouping="hour", date_from=start + timedelta(hours=2), timezone="Europe/Berlin")
    params(date_grouping="hour", date_from=start, timezone="America/New_York")  # 6 d 20 h
    # no zone: only what is too long even on the westmost clock (UTC - 12 h) is refused
    params(date_grouping="hour", date_from=start - timedelta(hours=12))
    with pytest.raises(ValidationError):
        params(date_grouping="hour", date_from=start - timedelta(hours=12, seconds=1))


def test_the_hour_rule_can_be_left_to_a_splitting_plan() -> None:
    start = datetime(2024, 6, 1)
    request = aggregation_request(
        entity="pageview", site_id="CDBUGS", aggregates="pageviews", date_grouping="hour",
        date_from=start, date_to=start + timedelta(days=30), check_hour_range=False,
    )
    assert dict(request.query)["date_to"] == "2024-07-01 00:00:00"
    with pytest.raises(ValidationError):  # every other rule still holds
        aggregation_request(entity="pageview", site_id="CDBUGS", aggregates="pageviews",
                            date_grouping="hour", date_from=start + timedelta(days=1),
                            date_to=start, check_hour_range=False)


def test_an_empty_value_is_a_real_filter_for_exact_matches() -> None:
    # `referrer_hostname is ""`: visits without a referrer (direct traffic).
    query = params(filters=[Filter("referrer_hostname", "is", "")])
    assert query["filters"] == '[{"property":"referrer_hostname","operator":"is","value":""}]'
