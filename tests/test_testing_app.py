"""Functional tests of the emulator's entity endpoints, against a real loopback server.

Contract tests compare answers with the documents' examples and FACTS.md's samples
(same keys, same JSON types); the rest pins permissions, validation, pagination,
error rendering and what the store records.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

import fathom_async.testing
from fathom_async.testing import Account, FakeFathom, Pageview, Site, Store

# ------------------------------------------------------------------- samples

DOC_SITE = {
    "id": "CDBUGS",
    "object": "site",
    "name": "Bugs Bunny Portfolio",
    "sharing": "none",
    "created_at": "2020-07-27 12:01:01",
}
DOC_ACCOUNT = {"id": 500302232, "object": "account", "name": "Homer Simpson"}
DOC_LIST = {"object": "list", "url": "/v1/sites", "has_more": False, "data": [DOC_SITE]}
DOC_EVENT_LISTED = {
    "id": "ABCDEFGH",
    "object": "event",
    "name": "Signed up to newsletter",
    "currency": None,
    "created_at": "2020-08-21 15:24:00",
}
DOC_EVENT_CREATED = {
    "id": "ABCDEFGH",
    "object": "event",
    "name": "Purchase early access",
    "currency": "dollar",
    "created_at": "2021-08-10 10:45:43",
}
DOC_DELETED = {"id": "GCDFS", "object": "site", "deleted": True}
CURRENCIES = [
    "dollar",
    "pound",
    "euro",
    "yuan",
    "peso",
    "shekel",
    "yen",
    "won",
    "hryvnia",
    "franc",
    "rupee",
    "integer",
    "none",
]
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def assert_shape(actual: Any, sample: Any, *, optional: frozenset[str] = frozenset()) -> None:
    """Same keys (plus the optional ones) and the same JSON types, recursively."""
    if isinstance(sample, dict):
        assert isinstance(actual, dict)
        assert set(sample) <= set(actual) <= set(sample) | optional, (actual, sample)
        for key, value in sample.items():
            assert_shape(actual[key], value, optional=optional)
    elif isinstance(sample, list):
        assert isinstance(actual, list)
        for item in actual:
            assert_shape(item, sample[0], optional=optional)
    elif sample is None:
        assert actual is None
    else:
        assert type(actual) is type(sample), (actual, sample)


# ------------------------------------------------------------------- helpers


@dataclass
class Reply:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]


class Api:
    """Plain aiohttp calls against the emulator (the SDK's client is not used here)."""

    def __init__(self, session: aiohttp.ClientSession, fake: FakeFathom) -> None:
        self.session = session
        self.fake = fake

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        accept: str = "application/json",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Reply:
        headers = {
            "Accept": accept,
            "Authorization": f"Bearer {token or self.fake.token}",
            **(headers or {}),
        }
        async with self.session.request(
            method, self.fake.url + path, headers=headers, **kwargs
        ) as response:
            text = await response.text()
            body = json.loads(text) if response.content_type == "application/json" else text
            return Reply(response.status, body, response.headers)


@pytest.fixture
async def fake() -> AsyncIterator[FakeFathom]:
    async with FakeFathom(seed=7, pageviews=300) as fake:
        yield fake


@pytest.fixture
async def api(fake: FakeFathom) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, fake)


# ------------------------------------------------------------ package & life


async def test_public_names_are_exactly_the_documented_ones() -> None:
    public = {
        name
        for name, value in vars(fathom_async.testing).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(fathom_async.testing.__all__) == public


async def test_start_and_close_without_async_with() -> None:
    fake = FakeFathom(pageviews=0)
    with pytest.raises(RuntimeError, match="not serving"):
        _ = fake.url
    assert await fake.start() is fake
    assert await fake.start() is fake  # starting twice is harmless
    assert fake.url.startswith("http://127.0.0.1:")
    assert fake.url.endswith("/v1")
    await fake.close()
    await fake.close()
    with pytest.raises(RuntimeError, match="closed"):
        await fake.start()


async def test_negative_pageviews_are_refused() -> None:
    with pytest.raises(ValueError, match="pageviews"):
        FakeFathom(pageviews=-1)


async def test_demo_has_sites_events_and_traffic(fake: FakeFathom) -> None:
    assert [s.name for s in fake.sites] == ["Bugs Bunny Portfolio", "Acme Inc", "Daffy's Blog"]
    assert fake.site_id == fake.sites[0].id
    assert re.fullmatch(r"[A-Z0-9]{6}", fake.site_id)
    assert all(re.fullmatch(r"[A-Z]{8}", e) for d in fake.demo for e in d.event_ids)
    assert fake.store.count_pageviews() == 300
    assert sum(fake.store.count_pageviews(s.id) for s in fake.sites) == 300


async def test_same_seed_gives_same_ids_and_token() -> None:
    clock = lambda: 1_700_000_000.0  # noqa: E731
    one = FakeFathom(seed=3, pageviews=50, wall_clock=clock)
    two = FakeFathom(seed=3, pageviews=50, wall_clock=clock)
    try:
        assert one.token == two.token
        assert one.site_id == two.site_id
        rows = "SELECT * FROM pageviews ORDER BY id"
        assert one.store.db.execute(rows).fetchall() == two.store.db.execute(rows).fetchall()
    finally:
        await one.close()
        await two.close()


async def test_make_token_refuses_unknown_abilities() -> None:
    fake = FakeFathom(pageviews=0, demo=False)
    try:
        with pytest.raises(ValueError, match="ability"):
            fake.make_token("write:ABC")
        with pytest.raises(ValueError, match="at least one"):
            fake.make_token()
    finally:
        fake.store.close()


# ----------------------------------------------------------------- contracts


async def test_account_matches_the_documented_shape(api: Api) -> None:
    reply = await api("GET", "/account")
    assert reply.status == 200
    assert_shape(reply.body, DOC_ACCOUNT, optional=frozenset({"email"}))
    assert reply.headers["X-RateLimit-Limit"] == "2000"
    assert reply.headers["X-RateLimit-Remaining"] == "1999"


async def test_token_info_never_contains_the_secret(api: Api, fake: FakeFathom) -> None:
    reply = await api("GET", "/token")
    assert reply.body["abilities"] == ["*"]
    assert fake.token not in json.dumps(reply.body)
    assert TIMESTAMP.match(reply.body["last_used_at"])


async def test_site_list_and_get_match_the_documented_shapes(api: Api, fake: FakeFathom) -> None:
    reply = await api("GET", "/sites")
    extra = frozenset({"timezone", "multi_domain", "multi_domain_option"})
    assert_shape(reply.body, DOC_LIST, optional=extra)
    assert reply.body["url"] == "/v1/sites"
    assert [s["id"] for s in reply.body["data"]] == [s.id for s in fake.sites]
    created = await api("POST", "/sites", json={"name": "Acme Inc"})
    assert_shape(created.body, DOC_SITE)
    assert TIMESTAMP.match(created.body["created_at"])
    fetched = await api("GET", f"/sites/{created.body['id']}")
    assert fetched.body == created.body


async def test_events_match_the_current_document(api: Api, fake: FakeFathom) -> None:
    listed = await api("GET", f"/sites/{fake.site_id}/events")
    assert_shape(listed.body["data"][0], DOC_EVENT_LISTED)
    created = await api(
        "POST", f"/sites/{fake.site_id}/events", json={"name": "Purchase early access"}
    )
    assert_shape(created.body, DOC_EVENT_CREATED)
    assert created.body["currency"] == "dollar"
    event_id = created.body["id"]
    assert re.fullmatch(r"[A-Z]{8}", event_id)
    got = await api("GET", f"/sites/{fake.site_id}/events/{event_id}")
    assert got.body["currency"] is None
    updated = await api(
        "POST", f"/sites/{fake.site_id}/events/{event_id}", json={"currency": "euro"}
    )
    assert updated.body["currency"] == "euro"
    assert updated.body["name"] == "Purchase early access"
    deleted = await api("DELETE", f"/sites/{fake.site_id}/events/{event_id}")
    assert deleted.body == {"id": event_id, "object": "event", "deleted": True}
    gone = await api("GET", f"/sites/{fake.site_id}/events/{event_id}")
    assert gone.status == 404


async def test_site_update_and_delete(api: Api, fake: FakeFathom) -> None:
    site = (await api("POST", "/sites", data={"name": "Form site"})).body
    updated = await api(
        "POST",
        f"/sites/{site['id']}",
        data={
            "sharing": "private",
            "share_password": "s3cret",
            "multi_domain": "true",
            "multi_domain_option": "combined",
            "timezone": "Europe/Kyiv",
        },
    )
    assert updated.status == 200
    assert updated.body["name"] == "Form site"
    assert updated.body["sharing"] == "private"
    assert updated.body["multi_domain"] is True
    assert updated.body["multi_domain_option"] == "combined"
    assert updated.body["timezone"] == "Europe/Kyiv"
    assert "share_password" not in updated.body
    assert fake.store.sites[site["id"]].share_password == "s3cret"
    # Still private, the stored password suffices; making it public drops it.
    renamed = await api("POST", f"/sites/{site['id']}", json={"name": "Renamed"})
    assert renamed.body["sharing"] == "private"
    public = await api("POST", f"/sites/{site['id']}", json={"sharing": "public"})
    assert public.body["sharing"] == "public"
    assert fake.store.sites[site["id"]].share_password is None
    deleted = await api("DELETE", f"/sites/{site['id']}")
    assert_shape(deleted.body, DOC_DELETED)
    assert deleted.body == {"id": site["id"], "object": "site", "deleted": True}
    assert (await api("GET", f"/sites/{site['id']}")).status == 404


async def test_deleting_a_site_deletes_its_events_and_milestones(
    api: Api, fake: FakeFathom
) -> None:
    site = fake.sites[2]
    fake.store.add_milestone(site.id, "Launch", "2024-01-01")
    await api("DELETE", f"/sites/{site.id}")
    assert fake.store.site_events(site.id) == []
    assert fake.store.site_milestones(site.id) == []


async def test_retired_wipe_endpoints_answer_410(api: Api, fake: FakeFathom) -> None:
    event_id = fake.demo[0].event_ids[0]
    for path in (f"/sites/{fake.site_id}/data", f"/sites/{fake.site_id}/events/{event_id}/data"):
        reply = await api("DELETE", path)
        assert reply.status == 410
        assert "error" in reply.body


async def test_events_by_name_delete_all_of_that_name(api: Api, fake: FakeFathom) -> None:
    site = fake.site_id
    for _ in range(2):
        await api("POST", f"/sites/{site}/events", json={"name": "Twin"})
    currency = await api(
        "POST", f"/sites/{site}/events/currency", json={"name": "Twin", "currency": "yen"}
    )
    assert currency.body == {"object": "event", "name": "Twin", "currency": "yen"}
    assert {e.currency for e in fake.store.site_events(site) if e.name == "Twin"} == {"yen"}
    reply = await api("DELETE", f"/sites/{site}/events", params={"name": "Twin"})
    assert reply.status == 200
    assert reply.body["deleted"] is True
    assert not [e for e in fake.store.site_events(site) if e.name == "Twin"]
    again = await api("DELETE", f"/sites/{site}/events", params={"name": "Twin"})
    assert again.status == 404
    missing = await api("DELETE", f"/sites/{site}/events")
    assert missing.body == {"errors": {"name": ["The name field is required."]}}
    bad = await api(
        "POST", f"/sites/{site}/events/currency", json={"name": "Twin", "currency": "doubloon"}
    )
    assert bad.body == {"errors": {"currency": ["The selected currency is invalid."]}}


async def test_milestones_crud(api: Api, fake: FakeFathom) -> None:
    base = f"/sites/{fake.site_id}/milestones"
    created = await api("POST", base, json={"name": "Launch", "milestone_date": "2024-02-29"})
    assert created.status == 201
    milestone_id = created.body["id"]
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", milestone_id
    )
    assert created.body["milestone_date"] == "2024-02-29"
    assert fake.store.created[-1].id == milestone_id
    listed = await api("GET", base)
    assert [m["id"] for m in listed.body["data"]] == [milestone_id]
    partial = await api("POST", f"{base}/{milestone_id}", json={"name": "Relaunch"})
    assert partial.status == 400
    assert set(partial.body["errors"]) == {"milestone_date"}
    updated = await api(
        "POST", f"{base}/{milestone_id}", json={"name": "Relaunch", "milestone_date": "2024-03-01"}
    )
    assert updated.body["name"] == "Relaunch"
    assert (await api("GET", f"{base}/{milestone_id}")).body == updated.body
    deleted = await api("DELETE", f"{base}/{milestone_id}")
    assert deleted.body == {"id": milestone_id, "object": "milestone", "deleted": True}
    assert (await api("GET", f"{base}/{milestone_id}")).status == 404


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"name": "x" * 31, "milestone_date": "2024-01-01"}, {"name"}),
        ({"name": "ok", "milestone_date": "2024-02-30"}, {"milestone_date"}),
        ({"name": "ok", "milestone_date": "01/02/2024"}, {"milestone_date"}),
        ({}, {"name", "milestone_date"}),
    ],
)
async def test_milestone_validation(
    api: Api, fake: FakeFathom, body: dict[str, str], errors: set[str]
) -> None:
    reply = await api("POST", f"/sites/{fake.site_id}/milestones", json=body)
    assert reply.status == 400
    assert set(reply.body["errors"]) == errors


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": 5}, "name"),
        ({"name": "ok", "sharing": "friends"}, "sharing"),
        ({"name": "ok", "sharing": "private"}, "share_password"),
        ({"name": "ok", "multi_domain": True}, "multi_domain_option"),
        ({"name": "ok", "multi_domain": "maybe"}, "multi_domain"),
        (
            {"name": "ok", "multi_domain": True, "multi_domain_option": "both"},
            "multi_domain_option",
        ),
        ({"name": "ok", "timezone": "Mars/Olympus"}, "timezone"),
    ],
)
async def test_site_validation(api: Api, body: dict[str, Any], field: str) -> None:
    reply = await api("POST", "/sites", json=body)
    assert reply.status == 400
    assert list(reply.body["errors"]) == [field]
    assert all(isinstance(m, str) for m in reply.body["errors"][field])


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "name"), ({"name": "x" * 256}, "name"), ({"name": "ok", "currency": "gold"}, "currency")],
)
async def test_event_validation(
    api: Api, fake: FakeFathom, body: dict[str, Any], field: str
) -> None:
    reply = await api("POST", f"/sites/{fake.site_id}/events", json=body)
    assert reply.status == 400
    assert list(reply.body["errors"]) == [field]


async def test_every_currency_is_accepted(api: Api, fake: FakeFathom) -> None:
    for currency in CURRENCIES:
        reply = await api(
            "POST", f"/sites/{fake.site_id}/events", data={"name": currency, "currency": currency}
        )
        assert reply.body["currency"] == currency


async def test_event_update_rejects_bad_fields(api: Api, fake: FakeFathom) -> None:
    event_id = fake.demo[0].event_ids[0]
    reply = await api("POST", f"/sites/{fake.site_id}/events/{event_id}", json={"name": "x" * 300})
    assert reply.status == 400
    renamed = await api("POST", f"/sites/{fake.site_id}/events/{event_id}", json={"name": "New"})
    assert renamed.body["name"] == "New"


async def test_bad_bodies_answer_400(api: Api) -> None:
    broken = await api("POST", "/sites", data="{nope", headers={"Content-Type": "application/json"})
    assert broken.status == 400
    assert "JSON" in broken.body["error"]
    array = await api("POST", "/sites", json=["name"])
    assert array.status == 400
    empty = await api("POST", "/sites", data="", headers={"Content-Type": "application/json"})
    assert empty.body == {"errors": {"name": ["The name field is required."]}}


# ------------------------------------------------------------- pagination


@pytest.fixture
async def many_sites(fake: FakeFathom) -> list[str]:
    for n in range(9):
        fake.store.add_site(f"Extra {n}")
    return [s.id for s in sorted(fake.store.sites.values(), key=lambda s: s.seq)]


async def test_starting_after_walks_forwards(api: Api, many_sites: list[str]) -> None:
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 5}
    while True:
        page = (await api("GET", "/sites", params=params)).body
        seen += [s["id"] for s in page["data"]]
        if not page["has_more"]:
            break
        params = {"limit": 5, "starting_after": seen[-1]}
    assert seen == many_sites


async def test_ending_before_walks_backwards_newest_first(api: Api, many_sites: list[str]) -> None:
    page = (await api("GET", "/sites", params={"limit": 4, "ending_before": many_sites[-1]})).body
    assert [s["id"] for s in page["data"]] == many_sites[-2:-6:-1]
    assert page["has_more"] is True
    seen = [s["id"] for s in page["data"]]
    while page["has_more"]:
        page = (await api("GET", "/sites", params={"limit": 4, "ending_before": seen[-1]})).body
        seen += [s["id"] for s in page["data"]]
    assert seen == many_sites[-2::-1]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"starting_after": "NOSUCH"},
        {"ending_before": "NOSUCH"},
    ],
)
async def test_bad_pagination_answers_400(api: Api, params: dict[str, str]) -> None:
    reply = await api("GET", "/sites", params=params)
    assert reply.status == 400
    assert "errors" in reply.body


async def test_both_cursors_answer_400(api: Api, fake: FakeFathom) -> None:
    ids = [s.id for s in fake.sites]
    reply = await api("GET", "/sites", params={"starting_after": ids[0], "ending_before": ids[1]})
    assert reply.status == 400
    assert "error" in reply.body


async def test_default_limit_is_ten(api: Api, many_sites: list[str]) -> None:
    page = (await api("GET", "/sites")).body
    assert len(page["data"]) == 10
    assert page["has_more"] is True


# ------------------------------------------------------------ permissions


async def test_missing_or_bad_token_answers_401(api: Api, fake: FakeFathom) -> None:
    assert (await api("GET", "/sites", token="nope")).status == 401
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake.url}/sites", headers={"Accept": "application/json"}) as r,
    ):
        assert r.status == 401
        assert "error" in await r.json()


async def test_site_scoped_tokens_see_only_their_site(api: Api, fake: FakeFathom) -> None:
    mine, other = fake.sites[0].id, fake.sites[1].id
    reader = fake.make_token(f"read:{mine}")
    listed = await api("GET", "/sites", token=reader)
    assert [s["id"] for s in listed.body["data"]] == [mine]
    assert (await api("GET", f"/sites/{other}", token=reader)).status == 404
    assert (await api("GET", f"/sites/{other}/events", token=reader)).status == 404
    denied = await api("POST", f"/sites/{mine}", token=reader, json={"name": "Mine"})
    assert denied.status == 400
    assert "permission" in denied.body["error"]
    denied = await api("POST", f"/sites/{mine}/events", token=reader, json={"name": "E"})
    assert "permission" in denied.body["error"]


async def test_manage_token_writes_its_site_but_cannot_create_or_delete_sites(
    api: Api, fake: FakeFathom
) -> None:
    site = fake.site_id
    manager = fake.make_token(f"manage:{site}")
    assert (await api("POST", f"/sites/{site}", token=manager, json={"name": "M"})).status == 200
    assert (
        await api("POST", f"/sites/{site}/events", token=manager, json={"name": "E"})
    ).status == 200
    created = await api("POST", "/sites", token=manager, json={"name": "New"})
    assert created.status == 400
    assert "permission" in created.body["error"]
    deleted = await api("DELETE", f"/sites/{site}", token=manager)
    assert "permission" in deleted.body["error"]


async def test_readonly_token_reads_every_site_but_writes_none(api: Api, fake: FakeFathom) -> None:
    reader = fake.make_token("all-sites-readonly")
    listed = await api("GET", "/sites", token=reader)
    assert len(listed.body["data"]) == 3
    reply = await api(
        "POST",
        f"/sites/{fake.site_id}/milestones",
        token=reader,
        json={"name": "x", "milestone_date": "2024-01-01"},
    )
    assert reply.status == 400
    assert "permission" in reply.body["error"]


async def test_other_accounts_sites_are_invisible(api: Api, fake: FakeFathom) -> None:
    marge = fake.store.add_account("Marge", "marge@example.com")
    her_site = fake.store.add_site("Marge's", account_id=marge.id)
    her_token = fake.make_token("*", account_id=marge.id)
    assert (await api("GET", f"/sites/{her_site.id}")).status == 404
    mine = await api("GET", "/sites", token=her_token)
    assert [s["id"] for s in mine.body["data"]] == [her_site.id]
    account = await api("GET", "/account", token=her_token)
    assert account.body["name"] == "Marge"


async def test_unknown_event_and_milestone_are_404(api: Api, fake: FakeFathom) -> None:
    other_event = fake.demo[1].event_ids[0]
    for path in (
        f"/sites/{fake.site_id}/events/NOSUCHEV",
        f"/sites/{fake.site_id}/events/{other_event}",
        f"/sites/{fake.site_id}/milestones/00000000-0000-4000-8000-000000000000",
        "/sites/NOSUCH",
    ):
        reply = await api("GET", path)
        assert reply.status == 404, path
        assert "error" in reply.body


# ----------------------------------------------------- rendering & records


async def test_errors_are_html_when_json_is_not_accepted(api: Api, fake: FakeFathom) -> None:
    reply = await api("GET", "/sites/NOSUCH", accept="text/html")
    assert reply.status == 404
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "<html>" in reply.body
    invalid = await api("POST", "/sites", accept="*/*", json={"sharing": "x"})
    assert invalid.status == 400
    assert "name:" in invalid.body


async def test_unknown_routes_and_methods(api: Api) -> None:
    assert (await api("GET", "/nowhere")).status == 404
    reply = await api("PUT", "/sites")
    assert reply.status == 405
    assert reply.body == {"error": "Method not allowed"}


async def test_requests_and_created_objects_are_recorded(api: Api, fake: FakeFathom) -> None:
    await api("POST", "/sites", json={"name": "Recorded"}, params={"x": "1"})
    record = fake.store.requests[-1]
    assert (record.method, record.path, record.route, record.status) == (
        "POST",
        "/v1/sites",
        "/sites",
        200,
    )
    assert record.query == {"x": "1"}
    assert record.body == {"name": "Recorded"}
    assert record.account_id == fake.account.id
    assert "Authorization" not in record.headers
    created = fake.store.created[-1]
    assert isinstance(created, Site)
    assert created.name == "Recorded"


# --------------------------------------------------------------------- store


async def test_store_arranges_data_directly() -> None:
    store = Store(seed=1, wall_clock=lambda: 1_700_000_000.0)
    try:
        assert store.add_account("No mail").to_api() == {
            "id": store.default_account().id,
            "object": "account",
            "name": "No mail",
        }
        assert isinstance(store.default_account(), Account)
        site = store.add_site("Arranged")
        with pytest.raises(KeyError):
            store.add_event("NOSUCH", "Signup")
        with pytest.raises(KeyError):
            store.add_milestone("NOSUCH", "Launch", "2024-01-01")
        stored = store.add_pageviews(
            [
                Pageview(site_id=site.id, timestamp=datetime(2024, 1, 1, 12, 0)),
                Pageview(site_id=site.id, timestamp=1_700_000_000),
            ]
        )
        assert stored == 2
        assert store.count_pageviews(site.id) == 2
        stamps = {ts for (ts,) in store.db.execute("SELECT ts FROM pageviews")}
        assert stamps == {1_704_110_400, 1_700_000_000}
        store.clear_traffic(site.id)
        assert store.count_pageviews() == 0
        store.add_pageviews([Pageview(site_id=site.id, timestamp="2024-01-01 00:00:00")])
        store.clear_traffic()
        assert store.count_pageviews() == 0
        assert store.count_completions(site.id) == 0
    finally:
        store.close()


async def test_switching_multi_domain_off_hides_the_option(api: Api, fake: FakeFathom) -> None:
    acme = fake.sites[1]
    assert acme.multi_domain is True
    reply = await api("POST", f"/sites/{acme.id}", data={"multi_domain": "false"})
    assert reply.body["multi_domain"] is False
    assert "multi_domain_option" not in reply.body
