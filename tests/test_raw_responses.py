"""`client.with_raw_response`: the same calls, answering with the HTTP response too."""

from __future__ import annotations

import inspect
from datetime import date
from typing import Any

import pytest
from aioresponses import aioresponses

from fathom_async import (
    AggregationRows,
    APIResponseError,
    Deleted,
    FathomClient,
    NotFoundError,
    Page,
    RateLimits,
    RawResponse,
    ReportCache,
    Site,
)
from fathom_async._raw import RawClient
from fathom_async._resources._base import Resource
from fathom_async.testing import FakeFathom
from tests.conftest import LIMIT_HEADERS, SITE, TOKEN, calls, no_sleep, url

REPORT: dict[str, Any] = {"entity": "pageview", "site_id": "CDBUGS", "aggregates": "visits",
                          "date_from": date(2020, 1, 1), "date_to": date(2020, 1, 31)}



async def test_a_raw_call_has_the_status_the_headers_the_body_and_the_model(
    api: aioresponses,
) -> None:
    api.get(url("/sites/CDBUGS"), payload=SITE, headers=LIMIT_HEADERS)
    async with FathomClient(TOKEN, rate_limits=RateLimits()) as fathom:
        response = await fathom.with_raw_response.sites.get("CDBUGS")
        assert fathom.rate_limits is not None
        assert fathom.rate_limits.snapshot()["entity"].sent_in_window == 1  # a slot, as any call
    assert isinstance(response, RawResponse)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-remaining"] == "1999"  # any case
    assert response.headers["X-RateLimit-Limit"] == "2000"
    assert response.json() == SITE
    site = response.parse()
    assert isinstance(site, Site)
    assert site.id == "CDBUGS"
    assert repr(response) == f"<RawResponse status_code=200 {len(response.content)} bytes>"
    assert TOKEN not in repr(response)


async def test_a_raw_call_is_retried_like_the_plain_one(api: aioresponses) -> None:
    api.get(url("/sites/CDBUGS"), status=503, payload={"error": "busy"})
    api.get(url("/sites/CDBUGS"), payload=SITE, headers=LIMIT_HEADERS)
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        fathom._shared.sleep = no_sleep
        response = await fathom.with_raw_response.sites.get("CDBUGS")
    assert response.status_code == 200  # the answer it succeeded with
    assert response.parse().id == "CDBUGS"
    assert len(calls(api)) == 2


async def test_a_raw_call_raises_the_typed_errors(api: aioresponses) -> None:
    api.get(url("/sites/NOPE"), status=404, payload={"error": "not found"})
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        with pytest.raises(NotFoundError):
            await fathom.with_raw_response.sites.get("NOPE")


async def test_raw_list_answers_with_the_first_page(api: aioresponses) -> None:
    api.get(url("/sites"), payload={"object": "list", "has_more": True, "data": [SITE]})
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        response = await fathom.with_raw_response.sites.list(limit=1)
    page = response.parse()
    assert isinstance(page, Page)
    assert (page.has_more, [site.id for site in page.data]) == (True, ["CDBUGS"])
    assert response.json()["has_more"] is True


async def test_a_raw_delete_shows_its_204(api: aioresponses) -> None:
    api.delete(url("/sites/CDBUGS"), status=204)
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        response = await fathom.with_raw_response.sites.delete("CDBUGS")
    assert (response.status_code, response.content) == (204, b"")
    assert response.parse() == Deleted(deleted=True, id="CDBUGS")
    with pytest.raises(APIResponseError):
        response.json()


async def test_a_raw_report_call_is_always_sent(api: aioresponses) -> None:
    api.get(url("/aggregations"), payload=[{"visits": "7"}], headers=LIMIT_HEADERS, repeat=True)
    async with FathomClient(
        TOKEN, rate_limits=None, report_cache=ReportCache(ttl=600)
    ) as fathom:
        await fathom.aggregations.query(**REPORT)  # now cached
        response = await fathom.with_raw_response.aggregations.query(**REPORT)
        cached = await fathom.aggregations.query(**REPORT)  # the raw answer was kept too
    assert len(calls(api)) == 2
    assert response.status_code == 200
    rows = response.parse()
    assert isinstance(rows, AggregationRows)
    assert rows[0].visits == cached[0].visits == 7


async def test_raw_calls_against_the_emulator_show_its_rate_limit_headers() -> None:
    async with (
        FakeFathom(pageviews=50) as fake,
        FathomClient(fake.token, base_url=fake.url) as fathom,
    ):
        raw = fathom.with_raw_response
        first = await raw.sites.get("CDBUGS")
        second = await raw.account.get()
        visitors = await raw.current_visitors.get("CDBUGS")
    assert first.headers["X-RateLimit-Limit"] == "2000"
    assert int(second.headers["X-RateLimit-Remaining"]) == (
        int(first.headers["X-RateLimit-Remaining"]) - 1
    )
    assert visitors.status_code == 200
    assert visitors.parse().total >= 0


def test_every_public_call_has_a_raw_counterpart() -> None:
    fathom = FathomClient(TOKEN, rate_limits=None)
    raw = fathom.with_raw_response
    assert isinstance(raw, RawClient)
    assert fathom.with_raw_response is raw  # made once per client (or view)
    for name, _ in inspect.getmembers(type(fathom)):
        resource = getattr(fathom, name) if not name.startswith("_") else None
        if not isinstance(resource, Resource):
            continue
        calls_ = {
            method for method, _ in inspect.getmembers(type(resource), inspect.isfunction)
            if not method.startswith("_") and method != "plan"  # plan() sends nothing
        }
        wrapped = {method for method in vars(getattr(raw, name)) if not method.startswith("_")}
        assert wrapped == calls_, name
    view = fathom.with_options(priority="bulk")
    assert view.with_raw_response is not raw
