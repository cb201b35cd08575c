"""The client against the emulator: every resource end to end, scopes, limits, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest

from fathom_async import (
    APIConnectionError,
    FathomClient,
    Filter,
    GoneError,
    NotFoundError,
    PermissionDeniedError,
    RateLimits,
    ValidationError,
)
from fathom_async.testing import FakeFathom
from tests.conftest import no_sleep


@pytest.fixture
async def fake() -> AsyncIterator[FakeFathom]:
    async with FakeFathom(seed=3, pageviews=3_000, enforce_rate_limits=False) as server:
        yield server


@pytest.fixture
async def fathom(fake: FakeFathom) -> AsyncIterator[FathomClient]:
    async with FathomClient(fake.token, base_url=fake.url, rate_limits=None,
                            strict=True) as client:
        client._shared.sleep = no_sleep
        yield client



async def test_account_and_token(fathom: FathomClient) -> None:
    account = await fathom.account.get()
    assert account.name == "Homer Simpson"
    token = await fathom.token.get()
    assert "*" in token.abilities


async def test_site_lifecycle(fathom: FathomClient) -> None:
    created = await fathom.sites.create("Acme", sharing="private", share_password="pw",
                                        timezone="Europe/Berlin")
    assert created.sharing == "private"
    assert (await fathom.sites.get(created.id)).timezone == "Europe/Berlin"
    updated = await fathom.sites.update(created.id, name="Acme Holdings")
    assert updated.name == "Acme Holdings"
    assert created.id in [site.id async for site in fathom.sites.list(limit=1)]
    assert (await fathom.sites.delete(created.id)).deleted is True
    with pytest.raises(NotFoundError):
        await fathom.sites.get(created.id)


async def test_walking_sites_backward_is_newest_first(fathom: FathomClient,
                                                      fake: FakeFathom) -> None:
    for index in range(5):
        await fathom.sites.create(f"Site {index}")
    forward = [site.id async for site in fathom.sites.list(limit=2)]
    assert len(forward) == 8
    newest = forward[-1]
    older = [site.id async for site in fathom.sites.list(limit=2, ending_before=newest)]
    assert older == list(reversed(forward[:-1]))


async def test_events_by_id_and_by_name(fathom: FathomClient, fake: FakeFathom) -> None:
    site = fake.site_id
    event = await fathom.events.create(site, "Signed up", currency="euro")
    assert event.currency == "euro"
    assert (await fathom.events.get(site, event.id or "")).currency is None  # API's choice
    renamed = await fathom.events.update(site, event.id or "", name="Signed up!")
    assert renamed.name == "Signed up!"
    changed = await fathom.events.set_currency(site, "Signed up!", "yen")
    assert changed.currency == "yen"
    gone = await fathom.events.delete_by_name(site, "Signed up!")
    assert gone.deleted is True
    names = [e.name async for e in fathom.events.list(site)]
    assert "Signed up!" not in names


async def test_milestones(fathom: FathomClient, fake: FakeFathom) -> None:
    site = fake.site_id
    milestone = await fathom.milestones.create(site, "Launch", date(2024, 3, 1))
    assert (await fathom.milestones.get(site, milestone.id)).milestone_date == date(2024, 3, 1)
    moved = await fathom.milestones.update(site, milestone.id, name="Relaunch",
                                           milestone_date="2024-04-01")
    assert moved.milestone_date == date(2024, 4, 1)
    assert [m.name async for m in fathom.milestones.list(site)] == ["Relaunch"]
    assert (await fathom.milestones.delete(site, milestone.id)).deleted


async def test_retired_wipes_are_gone(fathom: FathomClient, fake: FakeFathom) -> None:
    with pytest.warns(DeprecationWarning, match="retired"), pytest.raises(GoneError):
        await fathom.sites.wipe(fake.site_id)


async def test_aggregations_add_up(fathom: FathomClient, fake: FakeFathom) -> None:
    site = fake.site_id
    [total] = await fathom.aggregations.query(entity="pageview", site_id=site,
                                              aggregates=["pageviews", "visits"])
    assert isinstance(total.pageviews, int)
    assert total.pageviews > 0
    by_path = await fathom.aggregations.query(
        entity="pageview", site_id=site, aggregates=["pageviews"],
        field_grouping=["pathname"], sort_by="pageviews:desc", limit=1000,
    )
    assert sum(row.pageviews or 0 for row in by_path) == total.pageviews
    assert by_path == sorted(by_path, key=lambda row: -(row.pageviews or 0))
    top = by_path[0].pathname or "/"
    [only] = await fathom.aggregations.query(
        entity="pageview", site_id=site, aggregates=["pageviews"],
        filters=[Filter("pathname", "is", top)],
    )
    [rest] = await fathom.aggregations.query(
        entity="pageview", site_id=site, aggregates=["pageviews"],
        filters=[Filter("pathname", "is not", top)],
    )
    assert (only.pageviews or 0) + (rest.pageviews or 0) == total.pageviews


async def test_event_reports_and_current_visitors(fathom: FathomClient,
                                                  fake: FakeFathom) -> None:
    site = fake.site_id
    name = (await fathom.events.list(site)).data[0].name
    today = date.today()
    rows = await fathom.aggregations.query(
        entity="event", site_id=site, entity_name=name,
        aggregates=["conversions", "value"], date_grouping="month",
        date_from=today - timedelta(days=80), date_to=today,
    )
    assert all(isinstance(row.conversions, int) for row in rows)
    now = await fathom.current_visitors.get(site, detailed=True)
    assert now.total >= 0


async def test_scopes_are_enforced(fake: FakeFathom) -> None:
    other = fake.sites[1].id
    token = fake.make_token(f"read:{fake.site_id}")
    async with FathomClient(token, base_url=fake.url, rate_limits=None) as limited:
        await limited.sites.get(fake.site_id)
        with pytest.raises(NotFoundError):
            await limited.sites.get(other)
        with pytest.raises(PermissionDeniedError) as info:
            await limited.events.create(fake.site_id, "Nope")
        assert info.value.status_code == 400


@pytest.mark.looptime
async def test_client_limits_keep_the_emulator_from_ever_answering_429() -> None:
    # Fake loop time, shared by the client and the emulator: the test is about the
    # limiter, not about how late a loaded machine sends a granted request.
    async with FakeFathom(seed=5, pageviews=500, time_scale=600) as fake:
        limits = RateLimits(entity=(2000, 3600 / 600), reports=(10, 60 / 600))
        async with FathomClient(fake.token, base_url=fake.url, rate_limits=limits) as fathom:
            await asyncio.gather(*(
                fathom.aggregations.query(entity="pageview", site_id=fake.site_id,
                                          aggregates="pageviews", limit=index + 1)
                for index in range(25)  # distinct queries: identical ones are coalesced
            ))
        assert [r.status for r in fake.store.requests].count(429) == 0
        assert len(fake.store.requests) == 25


async def test_faults_are_retried_and_creates_are_never_duplicated(
    fathom: FathomClient, fake: FakeFathom
) -> None:
    fake.inject("GET /sites", "error_503", times=2)
    fake.inject("GET /account", "reset_before_commit", times=1)
    assert len([site async for site in fathom.sites.list()]) == 3
    await fathom.account.get()
    fake.inject("POST /sites", "reset_after_commit", times=1)
    with pytest.raises(APIConnectionError) as info:
        await fathom.sites.create("Exactly once")
    assert info.value.outcome_unknown
    names = [site.name async for site in fathom.sites.list()]
    assert names.count("Exactly once") == 1
    assert fake.faults.counts["error_503"] == 2


async def test_bad_input_never_reaches_the_emulator(fathom: FathomClient,
                                                    fake: FakeFathom) -> None:
    before = len(fake.store.requests)
    with pytest.raises(ValidationError):
        await fathom.aggregations.query(  # type: ignore[call-overload]
            entity="pageview", site_id=fake.site_id, aggregates=["conversions"]
        )
    assert len(fake.store.requests) == before


async def test_direct_traffic_is_the_empty_referrer(fathom: FathomClient, fake: FakeFathom) -> None:
    site = fake.site_id
    [total] = await fathom.aggregations.query(entity="pageview", site_id=site,
                                              aggregates="pageviews")
    [direct] = await fathom.aggregations.query(
        entity="pageview", site_id=site, aggregates="pageviews",
        filters=[Filter("referrer_hostname", "is", "")])
    [referred] = await fathom.aggregations.query(
        entity="pageview", site_id=site, aggregates="pageviews",
        filters=[Filter("referrer_hostname", "is not", "")])
    assert (direct.pageviews or 0) + (referred.pageviews or 0) == total.pageviews
    assert 0 < (direct.pageviews or 0) < (total.pageviews or 0)


async def test_only_an_admin_token_reads_the_account(fake: FakeFathom) -> None:
    reader = fake.make_token("all-sites-readonly")
    async with FathomClient(reader, base_url=fake.url, rate_limits=None) as limited:
        with pytest.raises(PermissionDeniedError) as info:
            await limited.account.get()
    assert info.value.status_code == 400


async def test_a_429_storm_without_retry_after_backs_off_and_recovers(
    fathom: FathomClient, fake: FakeFathom
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fathom._shared.sleep = sleep
    fake.inject("GET /sites/*", "rate_limit", times=2, retry_after=None)
    assert (await fathom.sites.get(fake.site_id)).id == fake.site_id
    assert len(slept) == 2
    assert all(0 <= wait <= 8 for wait in slept)  # jittered backoff, no Retry-After
    statuses = [r.status for r in fake.store.requests][-3:]
    assert statuses == [429, 429, 200]


async def test_the_emulator_serves_on_ipv6_loopback() -> None:
    async with FakeFathom(host="::1", demo=False, enforce_rate_limits=False) as fake, \
            FathomClient(fake.token, base_url=fake.url, rate_limits=None) as fathom:
        assert fake.url.startswith("http://[::1]:")
        assert (await fathom.account.get()).id == fake.account.id
