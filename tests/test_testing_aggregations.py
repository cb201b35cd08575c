"""Aggregations and current visitors: exact answers on hand-made data, the API's
400/422 cases, and the consistency laws over many random queries (hypothesis).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fathom_async import FathomClient, ValidationError
from fathom_async._dates import TIME_FORMAT, hour_range_fits
from fathom_async.testing import Completion, FakeFathom, Pageview, Store
from fathom_async.testing._errors import ApiError
from fathom_async.testing._reports import (
    FILTERABLE,
    GROUPABLE,
    install_functions,
    parse_aggregation,
    run_aggregation,
)
from fathom_async.testing._traffic import generate_demo

NOW = datetime(2024, 3, 10, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def at(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


class Reports:
    def __init__(self, session: aiohttp.ClientSession, fake: FakeFathom) -> None:
        self.session = session
        self.fake = fake

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.fake.token}", "Accept": "application/json"}
        async with self.session.get(self.fake.url + path, params=params, headers=headers) as r:
            return r.status, await r.json()

    async def aggregate(self, **params: str) -> list[dict[str, str]]:
        status, body = await self.get("/aggregations", **params)
        assert status == 200, body
        assert isinstance(body, list)
        return body


@pytest.fixture
async def fake() -> AsyncIterator[FakeFathom]:
    async with FakeFathom(demo=False, enforce_rate_limits=False, wall_clock=lambda: NOW) as fake:
        yield fake


@pytest.fixture
async def reports(fake: FakeFathom) -> AsyncIterator[Reports]:
    async with aiohttp.ClientSession() as session:
        yield Reports(session, fake)


@pytest.fixture
def site(fake: FakeFathom) -> str:
    """Two visits: /, /pricing, / (3 pages, 100 s) and a bounce on /blog from Google."""
    site_id = fake.store.add_site("Hand made").id
    common: dict[str, Any] = {
        "site_id": site_id,
        "hostname": "https://hand.example",
        "session_id": 1,
    }
    fake.store.add_pageviews(
        [
            Pageview(
                **common,
                timestamp="2024-03-01 10:00:00",
                pathname="/",
                exit=False,
                duration=40,
                browser="Chrome",
                device_type="Desktop",
                exit_page="/",
            ),
            Pageview(
                **common,
                timestamp="2024-03-01 10:00:40",
                pathname="/pricing",
                entry=False,
                exit=False,
                duration=60,
                browser="Chrome",
                device_type="Desktop",
                entry_page="/",
                exit_page="/",
            ),
            Pageview(
                **common,
                timestamp="2024-03-01 10:01:40",
                pathname="/",
                entry=False,
                unique=False,
                browser="Chrome",
                device_type="Desktop",
                entry_page="/",
            ),
            Pageview(
                site_id=site_id,
                timestamp="2024-02-03 23:30:00",
                pathname="/blog",
                hostname="https://www.hand.example",
                referrer_hostname="https://www.google.com",
                referrer_source="Google",
                browser="Safari",
                device_type="Phone",
                utm_source="newsletter",
                keyword="analytics",
            ),
        ]
    )
    return site_id


# ------------------------------------------------------------- exact answers


async def test_totals_on_hand_made_data(reports: Reports, site: str) -> None:
    rows = await reports.aggregate(
        entity="pageview",
        entity_id=site,
        aggregates="pageviews,visits,uniques,avg_duration,bounce_rate",
    )
    assert rows == [
        {
            "pageviews": "4",
            "visits": "2",
            "uniques": "3",
            "avg_duration": "50.00",
            "bounce_rate": "0.5000",
        }
    ]


async def test_field_grouping_is_sorted_and_limited(reports: Reports, site: str) -> None:
    rows = await reports.aggregate(
        entity="pageview",
        entity_id=site,
        aggregates="pageviews,visits",
        field_grouping="pathname",
        sort_by="pageviews:desc",
    )
    assert rows == [
        {"pageviews": "2", "visits": "1", "pathname": "/"},
        {"pageviews": "1", "visits": "1", "pathname": "/blog"},
        {"pageviews": "1", "visits": "0", "pathname": "/pricing"},
    ]
    limited = await reports.aggregate(
        entity="pageview",
        entity_id=site,
        aggregates="pageviews",
        field_grouping="pathname",
        limit="1",
    )
    assert limited == [{"pageviews": "2", "pathname": "/"}]
    entries = await reports.aggregate(
        entity="pageview", entity_id=site, aggregates="visits", field_grouping="entry_page,keyword"
    )
    assert entries == [
        {"visits": "1", "entry_page": "/", "keyword": ""},
        {"visits": "1", "entry_page": "/blog", "keyword": "analytics"},
    ]


@pytest.mark.parametrize(
    ("grouping", "dates"),
    [
        ("year", ["2024"]),
        ("month", ["2024-03", "2024-02"]),
        ("day", ["2024-03-01", "2024-02-03"]),
    ],
)
async def test_date_groupings_are_newest_first(
    reports: Reports, site: str, grouping: str, dates: list[str]
) -> None:
    rows = await reports.aggregate(
        entity="pageview", entity_id=site, aggregates="pageviews", date_grouping=grouping
    )
    assert [row["date"] for row in rows] == dates
    ascending = await reports.aggregate(
        entity="pageview",
        entity_id=site,
        aggregates="pageviews",
        date_grouping=grouping,
        sort_by="timestamp:asc",
    )
    assert [row["date"] for row in ascending] == dates[::-1]


async def test_hour_grouping_within_seven_days(reports: Reports, site: str) -> None:
    rows = await reports.aggregate(
        entity="pageview",
        entity_id=site,
        aggregates="pageviews",
        date_grouping="hour",
        date_from="2024-02-25 00:00:00",
        date_to="2024-03-03 00:00:00",
    )
    assert rows == [{"pageviews": "3", "date": "2024-03-01 10:00:00"}]


async def test_date_range_is_inclusive(reports: Reports, site: str) -> None:
    rows = await reports.aggregate(
        entity="pageview",
        entity_id=site,
        aggregates="pageviews",
        date_from="2024-03-01 10:00:40",
        date_to="2024-03-01 10:01:40",
    )
    assert rows == [{"pageviews": "2"}]


async def test_a_date_without_a_time_is_midnight(reports: Reports, site: str) -> None:
    # the site's views: one on 2024-02-03 at 23:30, three on 2024-03-01 from 10:00
    common = {"entity": "pageview", "entity_id": site, "aggregates": "pageviews"}
    assert await reports.aggregate(**common, date_from="2024-03-01") == [{"pageviews": "3"}]
    assert await reports.aggregate(**common, date_to="2024-03-01") == [{"pageviews": "1"}]
    assert await reports.aggregate(**common, date_from="2024-02-03", date_to="2024-03-02") == (
        await reports.aggregate(
            **common, date_from="2024-02-03 00:00:00", date_to="2024-03-02 00:00:00"
        )
    )
    # one day in both bounds, as callers of the live API send it: midnight to midnight
    assert await reports.aggregate(**common, date_from="2024-03-01", date_to="2024-03-01") == [
        {"pageviews": "0"}
    ]
    hours = await reports.aggregate(
        **common, date_grouping="hour", date_from="2024-02-25", date_to="2024-03-03"
    )
    assert hours == [{"pageviews": "3", "date": "2024-03-01 10:00:00"}]


# (date_from, date_to, timezone) around the 7-day rule for hour grouping
HOUR_RULE_EDGES = [
    ("2024-02-01 00:00:00", "2024-02-08 00:00:00", "UTC"),
    ("2024-02-01 00:00:00", "2024-02-08 00:00:01", "UTC"),
    # New York falls back on 2026-11-01 (01:00-02:00 twice) and springs forward on
    # 2026-03-08 (02:00-03:00 never happens)
    ("2026-10-29 00:00:00", "2026-11-05 00:00:00", "America/New_York"),
    ("2026-10-29 00:00:00", "2026-11-04 23:00:00", "America/New_York"),
    ("2026-10-29 00:00:00", "2026-11-04 23:00:01", "America/New_York"),
    ("2026-10-25 01:30:00", "2026-11-01 01:30:00", "America/New_York"),
    ("2026-10-25 01:30:01", "2026-11-01 01:30:01", "America/New_York"),
    ("2026-03-05 00:00:00", "2026-03-12 01:00:00", "America/New_York"),
    ("2026-03-05 00:00:00", "2026-03-12 01:00:01", "America/New_York"),
    ("2026-03-01 02:30:00", "2026-03-08 02:30:00", "America/New_York"),
    ("2026-03-01 03:30:00", "2026-03-08 02:30:00", "America/New_York"),
    # Lord Howe Island moves its clock by half an hour (back on 2026-04-05)
    ("2026-04-02 00:00:00", "2026-04-09 00:00:00", "Australia/Lord_Howe"),
    ("2026-04-02 00:00:00", "2026-04-08 23:30:00", "Australia/Lord_Howe"),
]


@pytest.mark.parametrize(("date_from", "date_to", "zone"), HOUR_RULE_EDGES)
def test_the_hour_rule_is_counted_as_the_client_counts_it(
    date_from: str, date_to: str, zone: str
) -> None:
    store = Store(seed=1, wall_clock=lambda: NOW)
    install_functions(store.db)
    query = parse_aggregation({
        "entity": "pageview", "entity_id": "CDBUGS", "aggregates": "pageviews",
        "date_grouping": "hour", "date_from": date_from, "date_to": date_to, "timezone": zone,
    })
    status = 200
    try:
        run_aggregation(store.db, query, site_id="CDBUGS", event_ids=(), zone_name=zone, now=NOW)
    except ApiError as exc:
        status = exc.status
    finally:
        store.close()
    start, end = (datetime.strptime(text, TIME_FORMAT) for text in (date_from, date_to))
    assert status == (200 if hour_range_fits(start, end, zone) else 400)


async def test_functional_the_client_refuses_a_dst_week_the_emulator_would_refuse(
    reports: Reports, fake: FakeFathom
) -> None:
    site_id = fake.store.add_site("East", timezone="America/New_York").id
    got, body = await reports.get(
        "/aggregations", entity="pageview", entity_id=site_id, aggregates="pageviews",
        date_grouping="hour", date_from="2026-10-29 00:00:00", date_to="2026-11-05 00:00:00",
    )
    assert got == 400, body  # in the site's zone: 7 days and an hour

    async with FathomClient(fake.token, base_url=fake.url, rate_limits=None) as fathom:

        async def hours_until(date_to: str) -> None:
            await fathom.aggregations.query(
                entity="pageview", site_id=site_id, aggregates="pageviews",
                date_grouping="hour", timezone="America/New_York",
                date_from="2026-10-29 00:00:00", date_to=date_to,
            )

        sent = len(fake.store.requests)
        with pytest.raises(ValidationError, match="date_grouping"):
            await hours_until("2026-11-05 00:00:00")
        assert len(fake.store.requests) == sent  # refused before any request
        await hours_until("2026-11-04 23:00:00")
        assert fake.store.requests[-1].status == 200


async def test_functional_a_date_string_is_sent_as_the_whole_day(
    fake: FakeFathom, site: str
) -> None:
    async with FathomClient(fake.token, base_url=fake.url, rate_limits=None) as fathom:
        rows = await fathom.aggregations.query(
            entity="pageview", site_id=site, aggregates="pageviews",
            date_from="2024-03-01", date_to="2024-03-01",
        )
    assert [row.pageviews for row in rows] == [3]
    sent = fake.store.requests[-1]
    assert (sent.query["date_from"], sent.query["date_to"]) == (
        "2024-03-01 00:00:00", "2024-03-01 23:59:59"
    )


async def test_empty_range_gives_zeros(reports: Reports, site: str) -> None:
    rows = await reports.aggregate(
        entity="pageview",
        entity_id=site,
        aggregates="pageviews,avg_duration,bounce_rate",
        date_to="2020-01-01 00:00:00",
    )
    assert rows == [{"pageviews": "0", "avg_duration": "0.00", "bounce_rate": "0.0000"}]


@pytest.mark.parametrize(
    ("prop", "operator", "value", "expected"),
    [
        ("pathname", "is", "/", "2"),
        ("pathname", "is not", "/", "2"),
        ("pathname", "is like", "/pri*", "1"),
        ("pathname", "is like", "%log", "1"),
        ("pathname", "is like", "ric", "1"),  # no wildcard: a substring
        ("pathname", "is like", "/_", "0"),  # _ is literal
        ("pathname", "is not like", "/pri*", "3"),
        ("pathname", "matching", "^/(blog|pricing)$", "2"),
        ("pathname", "not matching", "^/$", "2"),
        ("browser", "is", "Safari", "1"),
        ("device_type", "is not", "Desktop", "1"),
        ("domain", "is", "www.hand.example", "1"),
        ("referrer_source", "is", "Google", "1"),
        ("utm_source", "is like", "news*", "1"),
    ],
)
async def test_filters(
    reports: Reports, site: str, prop: str, operator: str, value: str, expected: str
) -> None:
    rows = await reports.aggregate(
        entity="pageview",
        entity_id=site,
        aggregates="pageviews",
        filters=json.dumps([{"property": prop, "operator": operator, "value": value}]),
    )
    assert rows == [{"pageviews": expected}]


async def test_filters_combine_with_and(reports: Reports, site: str) -> None:
    filters = [
        {"property": "pathname", "operator": "is not", "value": "/register"},
        {"property": "device_type", "operator": "is", "value": "Desktop"},
    ]
    rows = await reports.aggregate(
        entity="pageview", entity_id=site, aggregates="pageviews", filters=json.dumps(filters)
    )
    assert rows == [{"pageviews": "3"}]


async def test_default_limit_is_500_with_field_grouping(reports: Reports, fake: FakeFathom) -> None:
    site_id = fake.store.add_site("Wide").id
    fake.store.add_pageviews(
        Pageview(site_id=site_id, timestamp="2024-03-01 00:00:00", pathname=f"/p{n:04d}")
        for n in range(600)
    )
    rows = await reports.aggregate(
        entity="pageview", entity_id=site_id, aggregates="pageviews", field_grouping="pathname"
    )
    assert len(rows) == 500
    rows = await reports.aggregate(
        entity="pageview",
        entity_id=site_id,
        aggregates="pageviews",
        field_grouping="pathname",
        limit="1000",
    )
    assert len(rows) == 600


async def test_reports_use_the_site_timezone(reports: Reports, fake: FakeFathom) -> None:
    site_id = fake.store.add_site("East", timezone="America/New_York").id
    fake.store.add_pageviews([Pageview(site_id=site_id, timestamp="2024-01-01 03:00:00")])
    local = await reports.aggregate(
        entity="pageview",
        entity_id=site_id,
        aggregates="pageviews",
        date_grouping="hour",
        date_from="2023-12-31 00:00:00",
        date_to="2024-01-01 00:00:00",
    )
    assert local == [{"pageviews": "1", "date": "2023-12-31 22:00:00"}]
    utc = await reports.aggregate(
        entity="pageview",
        entity_id=site_id,
        aggregates="pageviews",
        date_grouping="year",
        timezone="UTC",
    )
    assert utc == [{"pageviews": "1", "date": "2024"}]


async def test_event_aggregates_by_id_and_by_name(reports: Reports, fake: FakeFathom) -> None:
    site_id = fake.store.add_site("Shop").id
    buy = fake.store.add_event(site_id, "Purchase")
    again = fake.store.add_event(site_id, "Purchase")
    other = fake.store.add_event(site_id, "Signup")
    fake.store.add_completions(
        [
            Completion(
                site_id=site_id,
                event_id=buy.id,
                timestamp="2024-03-01 10:00:00",
                value=1900,
                session_id=7,
                browser="Chrome",
            ),
            Completion(
                site_id=site_id,
                event_id=buy.id,
                timestamp="2024-03-01 10:05:00",
                value=4900,
                session_id=7,
                unique=False,
                browser="Chrome",
            ),
            Completion(
                site_id=site_id,
                event_id=again.id,
                timestamp="2024-03-02 10:00:00",
                value=100,
                browser="Firefox",
            ),
            Completion(site_id=site_id, event_id=other.id, timestamp="2024-03-02 10:00:00"),
        ]
    )
    by_id = await reports.aggregate(
        entity="event", entity_id=buy.id, aggregates="conversions,unique_conversions,value"
    )
    assert by_id == [{"conversions": "2", "unique_conversions": "1", "value": "6800"}]
    by_name = await reports.aggregate(
        entity="event",
        site_id=site_id,
        entity_name="Purchase",
        aggregates="conversions,value",
        field_grouping="browser",
    )
    assert by_name == [
        {"conversions": "2", "value": "6800", "browser": "Chrome"},
        {"conversions": "1", "value": "100", "browser": "Firefox"},
    ]
    nothing = await reports.aggregate(
        entity="event", site_id=site_id, entity_name="Nope", aggregates="conversions"
    )
    assert nothing == [{"conversions": "0"}]


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"entity": ""}, 400),
        ({"entity": "visit"}, 400),
        ({"entity": "pageview", "aggregates": "pageviews", "entity_id": ""}, 400),
        (
            {"entity": "event", "entity_id": "", "site_id": "{site}", "aggregates": "conversions"},
            400,
        ),
        ({"aggregates": ""}, 400),
        ({"aggregates": "conversions"}, 422),
        ({"aggregates": "sessions"}, 400),
        ({"aggregates": "pageviews,pageviews"}, 400),
        ({"date_grouping": "week"}, 400),
        ({"field_grouping": "domain"}, 400),
        ({"field_grouping": "q"}, 400),
        ({"field_grouping": "pathname,pathname"}, 400),
        ({"filters": "{not json"}, 400),
        ({"filters": '{"property": "pathname"}'}, 400),
        ({"filters": '[{"property": "pathname"}]'}, 400),
        ({"filters": '[{"property": "pathname", "operator": "is", "value": true}]'}, 400),
        ({"filters": '[{"property": "keyword", "operator": "is", "value": "x"}]'}, 400),
        ({"filters": '[{"property": "country", "operator": "is", "value": "UK"}]'}, 400),
        ({"filters": '[{"property": "pathname", "operator": "contains", "value": "x"}]'}, 400),
        ({"filters": '[{"property": "browser", "operator": "is like", "value": "Ch*"}]'}, 400),
        ({"filters": '[{"property": "city", "operator": "matching", "value": "."}]'}, 400),
        ({"filters": '[{"property": "pathname", "operator": "matching", "value": "("}]'}, 400),
        ({"sort_by": "pageviews"}, 400),
        ({"sort_by": "visits:desc"}, 400),
        ({"sort_by": "timestamp:desc"}, 400),
        ({"sort_by": "pageviews:up"}, 400),
        ({"limit": "0"}, 400),
        ({"limit": "1001"}, 400),
        ({"limit": "many"}, 400),
        ({"date_from": "2024-03-01T00:00:00"}, 400),
        ({"date_from": "2024-03-01 00:00"}, 400),
        ({"date_to": "2024-02-30"}, 400),
        ({"date_to": "yesterday"}, 400),
        ({"date_from": "2024-03-02 00:00:00", "date_to": "2024-03-01 00:00:00"}, 400),
        ({"timezone": "Mars/Olympus"}, 400),
        ({"date_grouping": "hour"}, 400),
        (
            {
                "date_grouping": "hour",
                "date_from": "2024-02-01 00:00:00",
                "date_to": "2024-02-08 00:00:01",
            },
            400,
        ),
        ({"entity_id": "NOSUCH"}, 404),
    ],
)
async def test_pageview_query_errors(
    reports: Reports, site: str, params: dict[str, str], status: int
) -> None:
    query = {"entity": "pageview", "entity_id": site, "aggregates": "pageviews", **params}
    query = {k: v.replace("{site}", site) for k, v in query.items()}
    got, body = await reports.get("/aggregations", **query)
    assert got == status, body
    assert ("errors" in body) or ("error" in body)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"aggregates": "visits"}, 422),
        ({"field_grouping": "entry_page"}, 422),
        ({"filters": '[{"property": "exit_page", "operator": "is", "value": "/"}]'}, 422),
        ({"entity_id": "NOSUCHEV", "entity_name": ""}, 404),
        ({"entity_id": "{event}", "site_id": "OTHERS"}, 404),
    ],
)
async def test_event_query_errors(
    reports: Reports, fake: FakeFathom, params: dict[str, str], status: int
) -> None:
    site_id = fake.store.add_site("Events").id
    event_id = fake.store.add_event(site_id, "Signup").id
    query = {
        "entity": "event",
        "site_id": site_id,
        "entity_name": "Signup",
        "aggregates": "conversions",
        **params,
    }
    query = {k: v.replace("{event}", event_id) for k, v in query.items() if v}
    got, body = await reports.get("/aggregations", **query)
    assert got == status, body


async def test_sites_of_other_tokens_are_404(reports: Reports, fake: FakeFathom, site: str) -> None:
    other = fake.store.add_site("Other").id
    token = fake.make_token(f"read:{other}")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    params = {"entity": "pageview", "entity_id": site, "aggregates": "pageviews"}
    async with reports.session.get(
        f"{fake.url}/aggregations", params=params, headers=headers
    ) as response:
        assert response.status == 404


# --------------------------------------------------------- current visitors


async def test_current_visitors(reports: Reports, fake: FakeFathom) -> None:
    site_id = fake.store.add_site("Live").id
    google: dict[str, Any] = {
        "referrer_hostname": "https://www.google.com",
        "referrer_pathname": "/",
    }
    fake.store.add_pageviews(
        [
            # A visit that entered 20 minutes ago from Google and is now on /pricing.
            Pageview(site_id=site_id, timestamp=NOW - 1200, session_id=1, exit=False, **google),
            Pageview(
                site_id=site_id, timestamp=NOW - 60, session_id=1, entry=False, pathname="/pricing"
            ),
            # A direct visit on / two minutes ago, another on /pricing from Google.
            Pageview(site_id=site_id, timestamp=NOW - 120, session_id=2),
            Pageview(
                site_id=site_id, timestamp=NOW - 30, session_id=3, pathname="/pricing", **google
            ),
            # Gone: six minutes ago.
            Pageview(site_id=site_id, timestamp=NOW - 360, session_id=4),
        ]
    )
    status, body = await reports.get("/current_visitors", site_id=site_id)
    assert (status, body) == (200, {"total": 3})
    status, body = await reports.get("/current_visitors", site_id=site_id, detailed="true")
    assert body == {
        "total": 3,
        "content": [
            {"hostname": "https://example.com", "pathname": "/pricing", "total": "2"},
            {"hostname": "https://example.com", "pathname": "/", "total": "1"},
        ],
        "referrers": [
            {"referrer_hostname": "https://www.google.com", "referrer_pathname": "/", "total": "2"},
        ],
    }


async def test_current_visitors_match_the_observed_types(fake: FakeFathom) -> None:
    sample = {
        "total": 1,
        "content": [{"hostname": "h", "pathname": "/", "total": "1"}],
        "referrers": [{"referrer_hostname": "r", "referrer_pathname": "/", "total": "1"}],
    }
    async with FakeFathom(seed=1, pageviews=20_000) as demo, aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {demo.token}", "Accept": "application/json"}
        params = {"site_id": demo.site_id, "detailed": "1"}
        async with session.get(f"{demo.url}/current_visitors", params=params, headers=headers) as r:
            body = await r.json()
    assert body["total"] >= 1
    assert isinstance(body["total"], int)
    for key in ("content", "referrers"):
        assert body[key]
        for item in body[key]:
            assert set(item) == set(sample[key][0])  # type: ignore[index]
            assert all(isinstance(v, str) for v in item.values())


@pytest.mark.parametrize(
    ("params", "status"),
    [({}, 400), ({"site_id": "NOSUCH"}, 404), ({"site_id": "{site}", "detailed": "yes"}, 400)],
)
async def test_current_visitors_errors(
    reports: Reports, site: str, params: dict[str, str], status: int
) -> None:
    got, _ = await reports.get(
        "/current_visitors", **{k: v.replace("{site}", site) for k, v in params.items()}
    )
    assert got == status


async def test_aggregation_numbers_are_strings_like_the_real_api(fake: FakeFathom) -> None:
    samples = [[{"pageviews": "1382"}], [{"pageviews": "647", "date": "2023"}]]
    async with FakeFathom(seed=2, pageviews=500) as demo, aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {demo.token}", "Accept": "application/json"}
        answers = []
        for extra in ({}, {"date_grouping": "year"}):
            params = {
                "entity": "pageview",
                "entity_id": demo.site_id,
                "aggregates": "pageviews",
                **extra,
            }
            async with session.get(f"{demo.url}/aggregations", params=params, headers=headers) as r:
                answers.append(await r.json())
    for answer, sample in zip(answers, samples, strict=True):
        assert isinstance(answer, list)
        for row in answer:
            assert set(row) == set(sample[0])
            assert all(isinstance(v, str) for v in row.values())
            assert row["pageviews"].isdigit()


# -------------------------------------------------------------------- laws


@pytest.fixture(scope="module")
def demo_db() -> Iterator[tuple[Store, str, dict[str, list[str]]]]:
    store = Store(seed=5, wall_clock=lambda: NOW)
    install_functions(store.db)
    store.add_account("Law")
    demo = generate_demo(store, seed=5, pageviews=4_000, now=NOW)
    values = {
        prop: [
            row[0]
            for row in store.db.execute(
                f"SELECT DISTINCT {prop} FROM pageviews ORDER BY 1 LIMIT 40"
            )
        ]
        for prop in FILTERABLE
    }
    yield store, demo[1].site.id, values
    store.close()


ADDITIVE = {"pageview": "pageviews,visits,uniques", "event": "conversions,unique_conversions,value"}
NEGATIONS = [("is", "is not"), ("is like", "is not like"), ("matching", "not matching")]
EXACT = {"device_type", "operating_system", "browser", "country_code", "city", "state", "region"}
DAYS = [datetime.fromtimestamp(NOW, timezone.utc) - timedelta(days=d) for d in range(0, 100, 7)]


@st.composite
def filters(draw: st.DrawFn, values: dict[str, list[str]], *, event: bool) -> dict[str, str]:
    props = [p for p in FILTERABLE if not (event and p in ("entry_page", "exit_page"))]
    prop = draw(st.sampled_from(props))
    pairs = NEGATIONS[:1] if prop in EXACT else NEGATIONS
    operator = draw(st.sampled_from([op for pair in pairs for op in pair]))
    seen = values[prop] or [""]
    if operator in ("matching", "not matching"):
        value = draw(st.sampled_from(["^/blog", "o", "[A-Z]", "^$", ".*", "com$", "^/[a-z]+$"]))
    elif operator in ("is like", "is not like"):
        base = draw(st.sampled_from(seen))
        cut = draw(st.integers(0, len(base)))
        value = draw(st.sampled_from([base[:cut] + "*", "%" + base[cut:], base[:cut]]))
    else:
        value = draw(st.one_of(st.sampled_from(seen), st.text(max_size=4)))
    return {"property": prop, "operator": operator, "value": value}


def total(store: Store, site_id: str, params: dict[str, str]) -> list[dict[str, str]]:
    query = parse_aggregation({"entity_id": site_id, **params})
    event_ids = tuple(
        e.id for e in store.site_events(site_id) if e.name == params.get("entity_name")
    )
    return run_aggregation(
        store.db, query, site_id=site_id, event_ids=event_ids, zone_name="UTC", now=NOW
    )


def sums(rows: list[dict[str, str]], names: str) -> dict[str, int]:
    return {name: sum(int(row[name]) for row in rows) for name in names.split(",")}


@st.composite
def queries(draw: st.DrawFn, values: dict[str, list[str]]) -> dict[str, str]:
    entity = draw(st.sampled_from(["pageview", "event"]))
    params = {"entity": entity, "aggregates": ADDITIVE[entity]}
    if entity == "event":
        params["entity_name"] = draw(st.sampled_from(["Purchase product", "Started trial"]))
    start, end = sorted(draw(st.lists(st.sampled_from(DAYS), min_size=2, max_size=2)))
    if draw(st.booleans()):
        params["date_from"] = start.strftime("%Y-%m-%d %H:%M:%S")
    if draw(st.booleans()):
        params["date_to"] = end.strftime("%Y-%m-%d %H:%M:%S")
    chosen = draw(st.lists(filters(values, event=entity == "event"), max_size=2))
    if chosen:
        params["filters"] = json.dumps(chosen)
    return params


LAWS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@LAWS
@given(data=st.data())
def test_sum_over_a_field_grouping_equals_the_total(
    demo_db: tuple[Store, str, dict[str, list[str]]], data: st.DataObject
) -> None:
    store, site_id, values = demo_db
    params = data.draw(queries(values))
    fields = [
        f
        for f in GROUPABLE
        if not (params["entity"] == "event" and f in ("entry_page", "exit_page"))
    ]
    grouping = data.draw(st.sampled_from(fields))
    whole = sums(total(store, site_id, params), params["aggregates"])
    grouped = total(store, site_id, {**params, "field_grouping": grouping, "limit": "1000"})
    assert sums(grouped, params["aggregates"]) == whole


@LAWS
@given(data=st.data())
def test_sum_over_a_date_grouping_equals_the_total(
    demo_db: tuple[Store, str, dict[str, list[str]]], data: st.DataObject
) -> None:
    store, site_id, values = demo_db
    params = data.draw(queries(values))
    grouping = data.draw(st.sampled_from(["hour", "day", "month", "year"]))
    if grouping == "hour":
        end = data.draw(st.sampled_from(DAYS))
        params["date_from"] = (end - timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S")
        params["date_to"] = end.strftime("%Y-%m-%d %H:%M:%S")
    whole = sums(total(store, site_id, params), params["aggregates"])
    grouped = total(store, site_id, {**params, "date_grouping": grouping})
    assert sums(grouped, params["aggregates"]) == whole


@LAWS
@given(data=st.data())
def test_a_filter_and_its_negation_make_the_whole(
    demo_db: tuple[Store, str, dict[str, list[str]]], data: st.DataObject
) -> None:
    store, site_id, values = demo_db
    params = data.draw(queries(values))
    extra = data.draw(filters(values, event=params["entity"] == "event"))
    negation = dict(pair for pair in NEGATIONS + [(b, a) for a, b in NEGATIONS])
    base = json.loads(params.get("filters", "[]"))
    with_it = {**params, "filters": json.dumps([*base, extra])}
    without = {
        **params,
        "filters": json.dumps([*base, {**extra, "operator": negation[extra["operator"]]}]),
    }
    whole = sums(total(store, site_id, params), params["aggregates"])
    parts = [sums(total(store, site_id, p), params["aggregates"]) for p in (with_it, without)]
    assert {k: parts[0][k] + parts[1][k] for k in whole} == whole


def test_demo_traffic_has_realistic_shapes(
    demo_db: tuple[Store, str, dict[str, list[str]]],
) -> None:
    store, _, values = demo_db
    db: sqlite3.Connection = store.db
    visits, pageviews, bounces = db.execute(
        "SELECT SUM(is_entry), COUNT(*), SUM(bounce) FROM pageviews"
    ).fetchone()
    assert 1.5 < pageviews / visits < 4  # a few pages per visit
    assert 0.3 < bounces / visits < 0.6
    assert {"Desktop", "Phone", "Tablet"} <= set(values["device_type"])
    assert "" in values["utm_campaign"]
    assert len(values["utm_campaign"]) > 1
    assert store.count_completions() > 0
    (valued,) = db.execute("SELECT COUNT(*) FROM completions WHERE value > 0").fetchone()
    assert valued > 0
    oldest, newest = db.execute("SELECT MIN(ts), MAX(ts) FROM pageviews").fetchone()
    assert oldest > NOW - 91 * 86_400
    assert newest <= NOW
