"""Report dates: reading bounds, the 7-day hour rule, and "now" on the site's clock."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfoNotFoundError

import pytest

from fathom_async import ValidationError, _cli
from fathom_async._dates import (
    hour_range_fits,
    parse_report_time,
    site_now,
    whole_day,
    zone,
)
from fathom_async._validation import check_report_time

WEEK = timedelta(days=7)
H = timedelta(hours=1)
S = timedelta(seconds=1)


def test_a_timestamp_is_that_second_and_a_day_is_the_whole_day() -> None:
    assert parse_report_time("2026-05-01 13:14:15", end=False) == datetime(2026, 5, 1, 13, 14, 15)
    assert parse_report_time("2026-05-01 13:14:15", end=True) == datetime(2026, 5, 1, 13, 14, 15)
    assert parse_report_time("2026-05-01", end=False) == datetime(2026, 5, 1)
    assert parse_report_time("2026-05-01", end=True) == datetime(2026, 5, 1, 23, 59, 59)
    for end in (False, True):
        assert parse_report_time("2026-05-01", end=end) == whole_day(date(2026, 5, 1), end=end)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-5-01",
        "2026-05-1",
        "20260501",
        "2026-W18-5",  # date.fromisoformat reads these on 3.11; the API does not
        "2026-05-01T00:00:00",
        "2026-05-01 00:00",
        "2026-05-01 24:00:00",
        "2026-02-29",
        "2026-13-01",
        " 2026-05-01",
        "2026-05-01\n",
        "2026-05-01 00:00:00+00:00",
        "\u0662\u0660\u0662\u0666-05-01",  # Arabic-Indic digits match \d, not the API
        "yesterday",
    ],
)
def test_anything_else_is_not_a_bound(text: str) -> None:
    assert parse_report_time(text, end=False) is None
    assert parse_report_time(text, end=True) is None


def test_utc_needs_no_tz_database_and_unknown_names_raise() -> None:
    assert zone("UTC") is timezone.utc
    assert zone("utc") is timezone.utc
    with pytest.raises(ZoneInfoNotFoundError):  # callers name the field
        zone("Nowhere/Else")


# -- the hour rule --------------------------------------------------------------------


def test_without_a_zone_the_wall_clock_counts() -> None:
    start = datetime(2026, 10, 29)
    assert hour_range_fits(start, start + WEEK, None)
    assert not hour_range_fits(start, start + WEEK + S, None)


def test_a_week_across_the_fall_back_lasts_an_hour_longer() -> None:
    # America/New_York repeats 01:00-02:00 on 2026-11-01
    start = datetime(2026, 10, 29)
    assert not hour_range_fits(start, start + WEEK, "America/New_York")
    assert hour_range_fits(start, start + WEEK - H, "America/New_York")
    assert hour_range_fits(start, start + WEEK, "Europe/Berlin")  # Berlin changed on Oct 25
    assert hour_range_fits(start, start + WEEK, "UTC")


def test_a_week_across_the_spring_change_lasts_an_hour_shorter() -> None:
    # America/New_York skips 02:00-03:00 on 2026-03-08
    start = datetime(2026, 3, 5)
    assert hour_range_fits(start, start + WEEK + H, "America/New_York")
    assert not hour_range_fits(start, start + WEEK + H + S, "America/New_York")


def test_half_hour_changes_count_too() -> None:
    # Lord Howe Island moves its clock by 30 minutes (back on 2026-04-05)
    start = datetime(2026, 4, 2)
    assert not hour_range_fits(start, start + WEEK, "Australia/Lord_Howe")
    assert hour_range_fits(start, start + WEEK - timedelta(minutes=30), "Australia/Lord_Howe")


def test_a_repeated_wall_time_is_read_as_its_first_occurrence() -> None:
    # 01:30 on 2026-11-01 happens twice in New York; the emulator reads the first
    end = datetime(2026, 11, 1, 1, 30)
    assert hour_range_fits(end - WEEK, end, "America/New_York")
    assert not hour_range_fits(end - WEEK, end + S, "America/New_York")
    assert not hour_range_fits(end - WEEK, end.replace(fold=1), "America/New_York")


# -- now on the site's clock -------------------------------------------------------------


def test_now_on_the_site_clock() -> None:
    now = datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc)  # 01:30 EDT, the first time
    local = site_now(now, "America/New_York")
    assert (local, local.fold) == (datetime(2026, 11, 1, 1, 30), 0)
    later = site_now(now + H, "America/New_York")  # 01:30 EST, the second time
    assert (later, later.fold) == (datetime(2026, 11, 1, 1, 30), 1)
    # "now" keeps which 01:30 it is: at the second one, a week ago is 7 days and an hour
    week_ago = datetime(2026, 10, 25, 1, 30)
    assert hour_range_fits(week_ago, local, "America/New_York")
    assert not hour_range_fits(week_ago, later, "America/New_York")
    assert site_now(now, "UTC") == datetime(2026, 11, 1, 5, 30)


def test_without_a_zone_now_is_the_westmost_clock() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)
    assert site_now(now, None) == datetime(2026, 5, 1)
    assert site_now(now.replace(tzinfo=None), None) == datetime(2026, 5, 1)  # naive is UTC
    berlin = now.astimezone(zone("Europe/Berlin"))
    assert site_now(berlin, None) == datetime(2026, 5, 1)


# -- one parser ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["2026-05-01", "2026-05-01 10:00:00", "2026-02-29", "2026-05-01T00:00:00", "20260501", "x"],
)
def test_the_cli_and_the_library_accept_the_same_bounds(text: str) -> None:
    accepted = parse_report_time(text, end=False) is not None
    if accepted:
        assert _cli._when(text, "--from") == text  # passed on for the library to read
        check_report_time("date_from", text, end=False, tz=None)
        return
    with pytest.raises(ValidationError, match="--from"):
        _cli._when(text, "--from")
    with pytest.raises(ValidationError, match="date_from"):
        check_report_time("date_from", text, end=False, tz=None)
