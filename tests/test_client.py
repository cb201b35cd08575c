"""Request shapes for every resource (aioresponses), and the client's own behaviour."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import threading
import warnings
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from fathom_async import (
    NOT_GIVEN,
    APIResponseError,
    AuthenticationError,
    ClientClosedError,
    Deleted,
    FathomClient,
    Filter,
    GoneError,
    NotFoundError,
    RateLimitError,
    RateLimits,
    ServerError,
    ValidationError,
)
from fathom_async._client import _default_rate_limits
from tests.conftest import BASE, TOKEN, calls, url

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def only_call(api: aioresponses) -> tuple[str, str, dict[str, Any]]:
    sent = calls(api)
    assert len(sent) == 1, sent
    return sent[0]


# -- construction ------------------------------------------------------------------


async def test_token_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FATHOM_API_TOKEN", "from-env")
    client = FathomClient()
    assert client._shared.token == "from-env"
    await client.close()


def test_missing_token_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FATHOM_API_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="FATHOM_API_TOKEN"):
        FathomClient()


@pytest.mark.parametrize("token", ["", "   ", 123, "with space", "line\nbreak", " padded"])
def test_bad_tokens_are_refused_without_echoing_them(token: object) -> None:
    with pytest.raises(ValidationError) as info:
        FathomClient(token)  # type: ignore[arg-type]
    assert info.value.field == "token"
    if isinstance(token, str) and token.strip():
        assert token.strip() not in str(info.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.usefathom.com/v1",
        "ftp://api.usefathom.com/v1",
        "https://user:pw@api.usefathom.com/v1",
        "https://api.usefathom.com/v1?x=1",
        "/v1",
        "",
        "http://10.0.0.5:8000/v1",
        "https://exa mple.com:99999",
    ],
)
def test_bad_base_urls_are_refused(base_url: str) -> None:
    with pytest.raises(ValidationError) as info:
        FathomClient(TOKEN, base_url=base_url)
    assert info.value.field == "base_url"


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8080/v1", "http://localhost:1/v1/", "http://[::1]:9/v1",
     "https://eu.example.com/v1/"],
)
async def test_loopback_http_and_any_https_are_allowed(base_url: str) -> None:
    client = FathomClient(TOKEN, base_url=base_url)
    assert not client.base_url.endswith("/")
    await client.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"priority": "urgent"}, "priority"),
        ({"acquire_timeout": -1}, "acquire_timeout"),
        ({"max_retry_wait": None}, "max_retry_wait"),
        ({"rate_limits": (10, 60)}, "rate_limits"),
        ({"session": object()}, "session"),
        ({"strict": "yes"}, "strict"),
        ({"max_response_bytes": 10}, "max_response_bytes"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        FathomClient(TOKEN, **kwargs)
    assert info.value.field == field


async def test_the_token_is_in_no_repr() -> None:
    async with FathomClient(TOKEN) as client:
        texts = [repr(client), str(client), repr(client.sites), repr(client.with_options(
            priority="bulk")), repr(client.rate_limits), repr(client.sites.list())]
        assert all(TOKEN not in text for text in texts)
        assert "api.usefathom.com" in repr(client)


async def test_default_limits_are_fathoms_and_none_turns_them_off() -> None:
    async with FathomClient(TOKEN) as client:
        assert isinstance(client.rate_limits, RateLimits)
        snapshot = client.rate_limits.snapshot()
        assert (snapshot["entity"].limit, snapshot["entity"].period) == (2000, 3600)
        assert (snapshot["reports"].limit, snapshot["reports"].period) == (10, 60)
    async with FathomClient(TOKEN, rate_limits=None) as client:
        assert client.rate_limits is None


# -- the default limiter: one budget per token ---------------------------------------


async def test_clients_of_one_token_and_api_share_one_default_limiter() -> None:
    own = RateLimits()
    one, two = FathomClient(TOKEN), FathomClient(TOKEN)
    other_token = FathomClient("another-token")
    other_api = FathomClient(TOKEN, base_url="http://127.0.0.1:9/v1")
    explicit = FathomClient(TOKEN, rate_limits=own)
    off = FathomClient(TOKEN, rate_limits=None)
    assert isinstance(one.rate_limits, RateLimits)
    assert one.rate_limits is two.rate_limits
    assert one.with_options(priority="bulk").rate_limits is one.rate_limits
    assert other_token.rate_limits is not one.rate_limits
    assert other_api.rate_limits is not one.rate_limits
    assert explicit.rate_limits is own  # an explicit one still wins
    assert off.rate_limits is None  # and None still turns limiting off
    for client in (one, two, other_token, other_api, explicit, off):
        await client.close()


async def test_two_clients_of_one_token_spend_one_budget(api: aioresponses) -> None:
    api.get(url("/account"), payload=sample("account.json"), repeat=True)
    async with FathomClient(TOKEN) as one, FathomClient(TOKEN) as two:
        await one.account.get()
        await two.account.get()
        assert one.rate_limits is not None
        assert one.rate_limits.snapshot()["entity"].sent_in_window == 2


def test_the_default_limiter_registry_keeps_no_token() -> None:
    client = FathomClient(TOKEN)
    assert len(_default_rate_limits) == 1
    kept = repr(_default_rate_limits._entries) + repr(list(_default_rate_limits._entries))
    assert TOKEN not in kept
    assert hashlib.sha256(TOKEN.encode()).hexdigest() not in kept  # a keyed hash, not a bare one
    assert client.rate_limits is not None


def test_a_client_with_bad_arguments_takes_no_default_limiter() -> None:
    with pytest.raises(ValidationError):
        FathomClient(TOKEN, max_retries=-1)
    assert len(_default_rate_limits) == 0


def test_clients_made_in_many_threads_at_once_share_one_default_limiter() -> None:
    barrier = threading.Barrier(8)
    found: list[object] = []

    def make() -> None:
        barrier.wait()
        for _ in range(50):
            found.append(FathomClient(TOKEN).rate_limits)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 400
    assert len({id(limits) for limits in found}) == 1


async def test_an_unused_idle_default_limiter_is_let_go(api: aioresponses) -> None:
    api.get(url("/account"), payload=sample("account.json"), repeat=True)
    async with FathomClient("token-spent") as spent:
        await spent.account.get()  # a grant in its window: still matters
    idle = FathomClient("token-idle")  # never used: nothing in its windows
    in_use = FathomClient("token-in-use")
    del spent, idle
    gc.collect()
    newcomer = FathomClient("token-new")  # a new token: the registry tidies up
    assert len(_default_rate_limits) == 3  # spent, in use, new; not idle
    again = FathomClient("token-spent")
    assert again.rate_limits is not None
    assert again.rate_limits.snapshot()["entity"].sent_in_window == 1  # the budget was kept
    for client in (in_use, newcomer, again):
        await client.close()


# -- headers, account, token ----------------------------------------------------------


async def test_every_request_sends_auth_accept_and_user_agent(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/account"), payload=sample("account.json"))
    account = await fathom.account.get()
    assert account.id == 500302232
    assert account.name == "Homer Simpson"
    method, sent_url, kwargs = only_call(api)
    assert (method, sent_url) == ("GET", f"{BASE}/account")
    headers = kwargs["headers"]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"].startswith("fathom-async/")
    assert kwargs["allow_redirects"] is False


async def test_token_info(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/token"), payload={"name": "CI", "abilities": ["read:CDBUGS"],
                                    "created_at": "2024-01-01 00:00:00"})
    info = await fathom.token.get()
    assert info.name == "CI"
    assert info.abilities == ("read:CDBUGS",)
    assert info.created_at == datetime(2024, 1, 1, tzinfo=timezone.utc)


# -- sites ---------------------------------------------------------------------------


async def test_sites_list_awaited_gives_one_page(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/sites"), payload=dict(sample("sites_list.json"), has_more=True))
    page = await fathom.sites.list(limit=10)
    assert page.has_more is True
    assert [site.id for site in page.data] == ["CDBUGS"]
    assert len(page) == 1
    assert [site.id for site in page] == ["CDBUGS"]
    assert only_call(api)[2]["params"] == (("limit", "10"),)


def _site(site_id: str) -> dict[str, Any]:
    return {"id": site_id, "object": "site", "name": site_id, "sharing": "none",
            "created_at": "2024-01-01 00:00:00"}


async def test_sites_iterate_every_page_forward(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/sites"), payload={"object": "list", "has_more": True,
                                    "data": [_site("A"), _site("B")]})
    api.get(url("/sites"), payload={"object": "list", "has_more": False, "data": [_site("C")]})
    ids = [site.id async for site in fathom.sites.list(limit=2)]
    assert ids == ["A", "B", "C"]
    params = [kwargs["params"] for _, _, kwargs in calls(api)]
    assert params == [(("limit", "2"),), (("limit", "2"), ("starting_after", "B"))]


async def test_sites_iterate_backward_from_a_cursor(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/sites"), payload={"object": "list", "has_more": True,
                                    "data": [_site("Y"), _site("X")]})
    api.get(url("/sites"), payload={"object": "list", "has_more": False, "data": [_site("W")]})
    pager = fathom.sites.list(limit=2, ending_before="Z")
    assert pager.direction == "backward"
    ids = [site.id async for site in pager]
    assert ids == ["Y", "X", "W"]
    params = [kwargs["params"] for _, _, kwargs in calls(api)]
    assert params == [(("limit", "2"), ("ending_before", "Z")),
                      (("limit", "2"), ("ending_before", "X"))]


async def test_default_page_size_is_100(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/sites"), payload=sample("sites_list.json"))
    assert [site.id async for site in fathom.sites.list()] == ["CDBUGS"]
    assert only_call(api)[2]["params"] == (("limit", "100"),)


async def test_site_get_create_update_delete(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/sites/CDBUGS"), payload=sample("site.json"))
    api.post(url("/sites"), payload=sample("site_created.json"))
    api.post(url("/sites/GCDFS"), payload=sample("site_updated.json"))
    api.delete(url("/sites/GCDFS"), payload=sample("site_deleted.json"))
    assert (await fathom.sites.get("CDBUGS")).name == "Bugs Bunny Portfolio"
    created = await fathom.sites.create(
        "Acme Inc", sharing="private", share_password="s3cret", timezone="Europe/Berlin",
        multi_domain=True, multi_domain_option="combined",
    )
    assert created.id == "GCDFS"
    updated = await fathom.sites.update("GCDFS", name="Acme Holdings Inc")
    assert updated.sharing == "private"
    gone = await fathom.sites.delete("GCDFS")
    assert gone.deleted is True
    bodies = [kwargs.get("json") for _, _, kwargs in calls(api)]
    assert bodies == [
        None,
        {"name": "Acme Inc", "sharing": "private", "share_password": "s3cret",
         "timezone": "Europe/Berlin", "multi_domain": True, "multi_domain_option": "combined"},
        {"name": "Acme Holdings Inc"},
        None,
    ]
    methods = [method for method, _, _ in calls(api)]
    assert methods == ["GET", "POST", "POST", "DELETE"]


async def test_delete_with_an_empty_body_still_reports_deleted(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.delete(url("/sites/AB"), status=204, body=b"")
    assert await fathom.sites.delete("AB") == Deleted(deleted=True, id="AB")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": 5}, "name"),
        ({"name": "A", "sharing": "friends"}, "sharing"),
        ({"name": "A", "sharing": "private"}, "share_password"),
        ({"name": "A", "sharing": "public", "share_password": "p"}, "share_password"),
        ({"name": "A", "share_password": "p"}, "share_password"),
        ({"name": "A", "sharing": "private", "share_password": ""}, "share_password"),
        ({"name": "A", "sharing": "private", "share_password": "p" * 256}, "share_password"),
        ({"name": "A", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "A", "multi_domain": "yes"}, "multi_domain"),
        ({"name": "A", "multi_domain": True}, "multi_domain_option"),
        ({"name": "A", "multi_domain_option": "combined"}, "multi_domain_option"),
        ({"name": "A", "multi_domain": False, "multi_domain_option": "combined"},
         "multi_domain_option"),
        ({"name": "A", "multi_domain": True, "multi_domain_option": "merged"},
         "multi_domain_option"),
    ],
)
async def test_site_create_validation(
    api: aioresponses, fathom: FathomClient, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await fathom.sites.create(**kwargs)
    assert info.value.field == field
    assert "p" * 10 not in str(info.value)  # passwords are never echoed
    assert calls(api) == []


async def test_site_update_sends_only_changed_fields_and_needs_one(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.post(url("/sites/AB"), payload=_site("AB"))
    await fathom.sites.update("AB", share_password="new", sharing=NOT_GIVEN)
    assert only_call(api)[2]["json"] == {"share_password": "new"}
    with pytest.raises(ValidationError, match="at least one"):
        await fathom.sites.update("AB")


async def test_retired_site_wipe_warns_and_raises_gone(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.delete(url("/sites/AB/data"), status=410, payload={"error": "Gone"})
    with pytest.warns(DeprecationWarning, match="retired"), pytest.raises(GoneError):
        await fathom.sites.wipe("AB")


async def test_ids_cannot_escape_their_path_segment(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/sites/%2E%2E%2Faccount"), payload=_site("X"))
    await fathom.sites.get("../account")
    assert only_call(api)[1] == f"{BASE}/sites/%2E%2E%2Faccount"


# -- events ----------------------------------------------------------------------------


async def test_events_every_call(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/sites/CDBUGS/events"), payload=sample("events_list.json"))
    api.get(url("/sites/CDBUGS/events/ABCDEFGH"), payload=sample("event.json"))
    api.post(url("/sites/CDBUGS/events"), payload=sample("event_created.json"))
    api.post(url("/sites/CDBUGS/events/ABCDEFGH"), payload=sample("event_updated.json"))
    api.delete(url("/sites/CDBUGS/events/ABCDEFGH"), payload=sample("event_deleted_current.json"))
    api.delete(url("/sites/CDBUGS/events"), payload={"object": "event", "deleted": True,
                                                      "name": "Signed up"})
    api.post(url("/sites/CDBUGS/events/currency"),
             payload={"object": "event", "name": "Signed up", "currency": "euro"})

    assert [e.id async for e in fathom.events.list("CDBUGS")] == ["ABCDEFGH", "IJKLMNOP"]
    assert (await fathom.events.get("CDBUGS", "ABCDEFGH")).currency is None
    created = await fathom.events.create("CDBUGS", name="Signed up", currency="euro")
    assert created.currency == "dollar"  # whatever the server says
    await fathom.events.update("CDBUGS", "ABCDEFGH", name="Purchase early access (live)")
    assert (await fathom.events.delete("CDBUGS", "ABCDEFGH")).deleted
    assert (await fathom.events.delete_by_name("CDBUGS", "Signed up")).name == "Signed up"
    assert (await fathom.events.set_currency("CDBUGS", "Signed up", "euro")).currency == "euro"

    sent = [(m, u.removeprefix(BASE), k.get("json"), k.get("params")) for m, u, k in calls(api)]
    assert sent == [
        ("GET", "/sites/CDBUGS/events?limit=100", None, (("limit", "100"),)),
        ("GET", "/sites/CDBUGS/events/ABCDEFGH", None, None),
        ("POST", "/sites/CDBUGS/events", {"name": "Signed up", "currency": "euro"}, None),
        ("POST", "/sites/CDBUGS/events/ABCDEFGH", {"name": "Purchase early access (live)"},
         None),
        ("DELETE", "/sites/CDBUGS/events/ABCDEFGH", None, None),
        ("DELETE", "/sites/CDBUGS/events?name=Signed+up", None, (("name", "Signed up"),)),
        ("POST", "/sites/CDBUGS/events/currency", {"name": "Signed up", "currency": "euro"},
         None),
    ]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda f: f.events.create("S", name="x" * 256), "name"),
        (lambda f: f.events.create("S", name="ok", currency="bitcoin"), "currency"),
        (lambda f: f.events.create("", name="ok"), "site_id"),
        (lambda f: f.events.update("S", "E"), "update"),
        (lambda f: f.events.update("S", "E", currency="EUR"), "currency"),
        (lambda f: f.events.get("S", " "), "event_id"),
        (lambda f: f.events.delete_by_name("S", ""), "name"),
        (lambda f: f.events.set_currency("S", "n", "euros"), "currency"),
    ],
)
async def test_event_validation(
    api: aioresponses, fathom: FathomClient, call: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await call(fathom)
    assert info.value.field == field
    assert calls(api) == []


async def test_retired_event_wipe(api: aioresponses, fathom: FathomClient) -> None:
    api.delete(url("/sites/S/events/E/data"), status=410, payload={"error": "Gone"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(GoneError) as info:
            await fathom.events.wipe("S", "E")
    assert info.value.status_code == 410
    assert [w.category for w in caught] == [DeprecationWarning]
    assert caught[0].filename == __file__  # the warning points at the caller


# -- milestones -------------------------------------------------------------------------


def _milestone(name: str = "Launch") -> dict[str, Any]:
    return {"id": "0b0c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3", "object": "milestone", "name": name,
            "milestone_date": "2024-03-01", "site_id": "S",
            "created_at": "2024-03-01 10:00:00"}


async def test_milestones_every_call(api: aioresponses, fathom: FathomClient) -> None:
    mid = _milestone()["id"]
    api.get(url("/sites/S/milestones"), payload={"object": "list", "has_more": False,
                                                 "data": [_milestone()]})
    api.post(url("/sites/S/milestones"), status=201, payload=_milestone())
    api.get(url(f"/sites/S/milestones/{mid}"), payload=_milestone())
    api.post(url(f"/sites/S/milestones/{mid}"), payload=_milestone("Relaunch"))
    api.delete(url(f"/sites/S/milestones/{mid}"),
               payload={"id": mid, "object": "milestone", "deleted": True})

    assert [m.name async for m in fathom.milestones.list("S")] == ["Launch"]
    created = await fathom.milestones.create("S", "Launch", date(2024, 3, 1))
    assert created.milestone_date == date(2024, 3, 1)
    assert (await fathom.milestones.get("S", mid)).id == mid
    updated = await fathom.milestones.update("S", mid, name="Relaunch",
                                             milestone_date="2024-03-02")
    assert updated.name == "Relaunch"
    assert (await fathom.milestones.delete("S", mid)).deleted
    bodies = [k.get("json") for _, _, k in calls(api)]
    assert bodies[1] == {"name": "Launch", "milestone_date": "2024-03-01"}
    assert bodies[3] == {"name": "Relaunch", "milestone_date": "2024-03-02"}


@pytest.mark.parametrize(
    ("name", "when", "field"),
    [
        ("x" * 31, "2024-01-01", "name"),
        ("ok", "2024-13-01", "milestone_date"),
        ("ok", "01/02/2024", "milestone_date"),
        ("ok", datetime(2024, 1, 1), "milestone_date"),
        ("ok", 20240101, "milestone_date"),
    ],
)
async def test_milestone_validation(
    api: aioresponses, fathom: FathomClient, name: str, when: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await fathom.milestones.create("S", name, when)
    assert info.value.field == field
    assert calls(api) == []


# -- aggregations and current visitors -------------------------------------------------------


async def test_aggregation_query_shape_and_string_numbers(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/aggregations"), payload=[{"pageviews": "1382", "visits": "700",
                                            "pathname": "/"}])
    rows = await fathom.aggregations.query(
        entity="pageview", site_id="CDBUGS", aggregates=["pageviews", "visits"],
        field_grouping=["pathname"], sort_by="pageviews:desc",
        filters=[Filter("pathname", "is not", "/login")],
        date_from=date(2024, 1, 1), date_to=datetime(2024, 1, 31, 12, 0), limit=50,
    )
    assert rows[0].pageviews == 1382
    assert isinstance(rows[0].pageviews, int)
    assert rows[0].to_dict() == {"pageviews": 1382, "visits": 700, "pathname": "/"}
    method, _, kwargs = only_call(api)
    assert method == "GET"
    assert dict(kwargs["params"]) == {
        "entity": "pageview",
        "entity_id": "CDBUGS",
        "aggregates": "pageviews,visits",
        "field_grouping": "pathname",
        "filters": '[{"property":"pathname","operator":"is not","value":"/login"}]',
        "sort_by": "pageviews:desc",
        "date_from": "2024-01-01 00:00:00",
        "date_to": "2024-01-31 12:00:00",
        "limit": "50",
    }


async def test_aggregation_accepts_the_documented_wrapper(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/aggregations"), payload=sample("aggregation_documented.json"))
    rows = await fathom.aggregations.query(
        entity="pageview", site_id="CDBUGS", aggregates="pageviews",
        field_grouping=["browser", "device_type"],
    )
    assert [(r.browser, r.device_type, r.pageviews) for r in rows][:2] == [
        ("Chrome", "Desktop", 30000), ("Chrome", "Mobile", 28000)]


async def test_aggregation_refuses_a_non_list(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/aggregations"), payload={"rows": []})
    with pytest.raises(APIResponseError, match="aggregation rows"):
        await fathom.aggregations.query(entity="pageview", site_id="S", aggregates="visits")


async def test_event_reports_by_site_and_name(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/aggregations"), payload=[{"conversions": "3", "value": "1999"}], repeat=True)
    rows = await fathom.aggregations.query(
        entity="event", site_id="CDBUGS", entity_name="Signed up",
        aggregates=["conversions", "value"],
    )
    assert (rows[0].conversions, rows[0].value) == (3, 1999)
    await fathom.aggregations.query(entity="event", entity_id="ABCDEFGH",
                                    aggregates="conversions")
    first, second = (dict(k["params"]) for _, _, k in calls(api))
    assert first["site_id"] == "CDBUGS"
    assert first["entity_name"] == "Signed up"
    assert "entity_id" not in first
    assert second["entity_id"] == "ABCDEFGH"


async def test_current_visitors(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/current_visitors"), payload=sample("current_visitors_documented.json"))
    api.get(url("/current_visitors"), payload=sample("current_visitors_simple.json"))
    now = await fathom.current_visitors.get("CDBUGS", detailed=True)
    assert now.total == 144
    assert now.content[0].pathname == "/spacejam"
    assert now.referrers[1].total == 32
    simple = await fathom.current_visitors.get("CDBUGS")
    assert simple.total == 7
    assert simple.content == ()
    params = [k["params"] for _, _, k in calls(api)]
    assert params == [(("site_id", "CDBUGS"), ("detailed", "true")), (("site_id", "CDBUGS"),)]


async def test_current_visitors_validation(api: aioresponses, fathom: FathomClient) -> None:
    with pytest.raises(ValidationError, match="detailed"):
        await fathom.current_visitors.get("S", detailed="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="site_id"):
        await fathom.current_visitors.get("")
    assert calls(api) == []


# -- errors and retries ------------------------------------------------------------------------


async def test_status_errors_are_typed_and_keep_the_api_message(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/sites/NOPE"), status=404, payload={"error": "Site not found"})
    api.get(url("/account"), status=401, payload={"error": "Unauthenticated."})
    with pytest.raises(NotFoundError) as info:
        await fathom.sites.get("NOPE")
    assert info.value.message == "Site not found"
    with pytest.raises(AuthenticationError):
        await fathom.account.get()
    assert len(calls(api)) == 2  # neither is retried


async def test_server_errors_are_retried_then_succeed(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/account"), status=503, body="busy")
    api.get(url("/account"), status=500, body="oops")
    api.get(url("/account"), payload=sample("account.json"))
    assert (await fathom.account.get()).id == 500302232
    assert len(calls(api)) == 3


async def test_retries_stop_after_max_retries(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/account"), status=502, body="bad gateway", repeat=True)
    with pytest.raises(ServerError) as info:
        await fathom.with_options(max_retries=2).account.get()
    assert info.value.status_code == 502
    assert len(calls(api)) == 3


async def test_429_waits_for_retry_after(api: aioresponses, fathom: FathomClient) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fathom._shared.sleep = sleep
    api.get(url("/account"), status=429, headers={"Retry-After": "7"}, payload={"error": "slow"})
    api.get(url("/account"), payload=sample("account.json"))
    await fathom.account.get()
    assert slept == [7.0]


async def test_a_long_retry_after_is_raised_not_slept(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/account"), status=429, headers={"Retry-After": "3600"}, payload={})
    with pytest.raises(RateLimitError) as info:
        await fathom.account.get()
    assert info.value.retry_after == 3600.0
    assert len(calls(api)) == 1


async def test_a_create_is_not_replayed_after_a_5xx(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.post(url("/sites"), status=503, body="maybe")
    with pytest.raises(ServerError):
        await fathom.sites.create("Acme")
    assert len(calls(api)) == 1


async def test_a_create_is_replayed_after_a_429(api: aioresponses, fathom: FathomClient) -> None:
    api.post(url("/sites"), status=429, headers={"Retry-After": "1"}, payload={})
    api.post(url("/sites"), payload=sample("site_created.json"))
    assert (await fathom.sites.create("Acme")).id == "GCDFS"
    assert len(calls(api)) == 2


async def test_garbled_bodies_are_retried_for_reads_only(
    api: aioresponses, fathom: FathomClient
) -> None:
    api.get(url("/account"), body=b"<html>", content_type="text/html")
    api.get(url("/account"), payload=sample("account.json"))
    assert (await fathom.account.get()).id == 500302232
    api.post(url("/sites/AB"), body=b"{", content_type="application/json")
    with pytest.raises(APIResponseError):
        await fathom.sites.update("AB", name="x")


async def test_connection_errors_are_retried(api: aioresponses, fathom: FathomClient) -> None:
    api.get(url("/account"), exception=aiohttp.ServerDisconnectedError())
    api.get(url("/account"), payload=sample("account.json"))
    assert (await fathom.account.get()).name == "Homer Simpson"


async def test_a_create_after_a_disconnect_says_the_outcome_is_unknown(
    api: aioresponses, fathom: FathomClient
) -> None:
    from fathom_async import APIConnectionError

    api.post(url("/sites"), exception=aiohttp.ServerDisconnectedError())
    with pytest.raises(APIConnectionError) as info:
        await fathom.sites.create("Acme")
    assert info.value.outcome_unknown is True
    assert "may or may not exist" in str(info.value)
    assert len(calls(api)) == 1


async def test_redirects_are_not_followed(api: aioresponses, fathom: FathomClient) -> None:
    from fathom_async import APIStatusError

    api.get(url("/account"), status=302, headers={"Location": "https://evil.example/"})
    with pytest.raises(APIStatusError, match="redirect") as info:
        await fathom.account.get()
    assert info.value.status_code == 302


# -- views, logging, closing --------------------------------------------------------------------


async def test_with_options_is_a_cheap_view_sharing_session_and_limiter() -> None:
    limits = RateLimits()
    async with FathomClient(TOKEN, rate_limits=limits) as client:
        bulk = client.with_options(priority="bulk", timeout=5, acquire_timeout=1.0)
        assert bulk.priority == "bulk"
        assert client.priority == "interactive"
        assert bulk.rate_limits is limits
        assert bulk._shared is client._shared
        assert bulk._options.timeout.total == 5
        again = bulk.with_options(max_retries=0)
        assert again.priority == "bulk"
        assert again._options.acquire_timeout == 1.0
        async with bulk:  # closing a view closes nothing
            pass
        assert not client.is_closed
    assert bulk.is_closed
    with pytest.raises(ValidationError):
        client.with_options(priority="now")  # type: ignore[arg-type]


async def test_a_closed_client_refuses_calls(api: aioresponses) -> None:
    client = FathomClient(TOKEN)
    await client.close()
    with pytest.raises(ClientClosedError):
        await client.account.get()
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    assert "closed" in repr(client)


async def test_a_borrowed_session_is_not_closed(api: aioresponses) -> None:
    async with aiohttp.ClientSession() as session:
        async with FathomClient(TOKEN, session=session, rate_limits=None) as client:
            api.get(url("/account"), payload=sample("account.json"))
            await client.account.get()
        assert not session.closed


async def test_logging_redacts_the_token(
    api: aioresponses, fathom: FathomClient, caplog: pytest.LogCaptureFixture
) -> None:
    api.get(url("/account"), status=503, body="x")
    api.get(url("/account"), payload=sample("account.json"))
    with caplog.at_level(logging.DEBUG, logger="fathom_async"):
        await fathom.account.get()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "<redacted>" in text
    assert "retrying GET /account" in text
    assert "-> 200" in text
    assert TOKEN not in text


async def test_base_url_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FATHOM_BASE_URL", "http://127.0.0.1:8123/v1")
    async with FathomClient(TOKEN) as client:
        assert client.base_url == "http://127.0.0.1:8123/v1"
    monkeypatch.delenv("FATHOM_BASE_URL")
    async with FathomClient(TOKEN) as client:
        assert client.base_url == "https://api.usefathom.com/v1"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"limit": True}, "limit"),
        ({"starting_after": "A", "ending_before": "B"}, "ending_before"),
        ({"starting_after": ""}, "starting_after"),
        ({"ending_before": 5}, "ending_before"),
    ],
)
async def test_list_arguments_are_checked_when_list_is_called(
    api: aioresponses, fathom: FathomClient, kwargs: dict[str, Any], field: str
) -> None:
    for make in (fathom.sites.list, lambda **kw: fathom.events.list("S", **kw),
                 lambda **kw: fathom.milestones.list("S", **kw)):
        with pytest.raises(ValidationError) as info:
            make(**kwargs)
        assert info.value.field == field
    assert calls(api) == []
