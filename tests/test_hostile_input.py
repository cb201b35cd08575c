"""Hostile input: every bad argument is refused before a request, every mangled body is typed.

The table drives each public method with invalid arguments and asserts a
`ValidationError` naming the field, with no request sent (aioresponses records none).
Ids that are merely odd (slashes, dots, spaces, unicode, newlines) are not refused:
they are sent percent-encoded as one path segment. The fuzz half feeds the response
parsers mangled bodies (hypothesis) and accepts only `FathomError`s coming out.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from aioresponses import aioresponses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fathom_async import FathomClient, FathomError, Filter, RateLimits, ValidationError
from fathom_async._converter import MODELS, get_converter
from fathom_async._models import Page
from fathom_async._pagination import AsyncPager
from fathom_async._protocol import (
    ApiRequest,
    decode_json,
    error_from_response,
    list_items,
    parse_retry_after,
    server_feedback,
)
from fathom_async._resources._base import Resource
from fathom_async._resources.aggregations import _read_rows
from fathom_async.export import ExportSpec
from tests.conftest import TOKEN, calls

SAMPLES = Path(__file__).parent / "samples"
SITE = "CDBUGS"
NOW = datetime(2024, 6, 1, 12, 0, 0)

Call = Callable[[Any], Any]  # Any: the table passes wrong types on purpose


def case(field: str, call: Call, name: str) -> Any:
    return pytest.param(field, call, id=name)


# Every public method, with every kind of bad argument: (field named, call).
BAD_INPUT = [
    # -- ids, wherever an id goes into a path or a query
    case("site_id", lambda f: f.sites.get(123), "site-id-int"),
    case("site_id", lambda f: f.sites.get(""), "site-id-empty"),
    case("site_id", lambda f: f.sites.get("   "), "site-id-blank"),
    case("site_id", lambda f: f.sites.get("A" * 256), "site-id-over-long"),
    case("site_id", lambda f: f.sites.get(None), "site-id-none"),
    case("site_id", lambda f: f.sites.delete(b"CDBUGS"), "site-id-bytes"),
    case("event_id", lambda f: f.events.get(SITE, ""), "event-id-empty"),
    case("event_id", lambda f: f.events.delete(SITE, 7), "event-id-int"),
    case("milestone_id", lambda f: f.milestones.get(SITE, " "), "milestone-id-blank"),
    case("milestone_id", lambda f: f.milestones.delete(SITE, None), "milestone-id-none"),
    case("site_id", lambda f: f.current_visitors.get(5), "current-site-id-int"),
    case("site_id", lambda f: f.events.list(""), "events-list-site-empty"),
    case("site_id", lambda f: f.milestones.list(["CDBUGS"]), "milestones-list-site-list"),
    # -- pages
    case("limit", lambda f: f.sites.list(limit=0), "limit-zero"),
    case("limit", lambda f: f.sites.list(limit=101), "limit-over-100"),
    case("limit", lambda f: f.sites.list(limit="10"), "limit-str"),
    case("limit", lambda f: f.events.list(SITE, limit=True), "limit-bool"),
    case("limit", lambda f: f.milestones.list(SITE, limit=2.5), "limit-float"),
    case("ending_before", lambda f: f.sites.list(starting_after="A", ending_before="B"),
         "both-cursors"),
    case("starting_after", lambda f: f.sites.list(starting_after=""), "cursor-empty"),
    case("ending_before", lambda f: f.events.list(SITE, ending_before=3), "cursor-int"),
    # -- names and enums of sites
    case("name", lambda f: f.sites.create(""), "site-name-empty"),
    case("name", lambda f: f.sites.create(42), "site-name-int"),
    case("name", lambda f: f.sites.create("x" * 256), "site-name-over-long"),
    case("name", lambda f: f.sites.create("Acme\nInjected: header"), "site-name-newline"),
    case("name", lambda f: f.sites.create("Acme\x00"), "site-name-nul"),
    case("sharing", lambda f: f.sites.create("Acme", sharing="secret"), "sharing-unknown"),
    case("share_password", lambda f: f.sites.create("Acme", sharing="private"),
         "private-without-password"),
    case("share_password", lambda f: f.sites.create("Acme", sharing="public",
                                                    share_password="pw"), "password-not-private"),
    case("share_password", lambda f: f.sites.create("Acme", sharing="private",
                                                    share_password=""), "password-empty"),
    case("timezone", lambda f: f.sites.create("Acme", timezone="Mars/Olympus"),
         "timezone-unknown"),
    case("timezone", lambda f: f.sites.create("Acme", timezone=""), "timezone-empty"),
    case("multi_domain", lambda f: f.sites.create("Acme", multi_domain="yes"),
         "multi-domain-str"),
    case("multi_domain_option", lambda f: f.sites.create("Acme", multi_domain=True),
         "multi-domain-without-option"),
    case("multi_domain_option", lambda f: f.sites.create(
        "Acme", multi_domain=True, multi_domain_option="both"), "multi-domain-option-unknown"),
    case("multi_domain_option", lambda f: f.sites.create(
        "Acme", multi_domain_option="combined"), "multi-domain-option-alone"),
    case("update", lambda f: f.sites.update(SITE), "site-update-nothing"),
    case("name", lambda f: f.sites.update(SITE, name=" "), "site-update-name-blank"),
    # -- events
    case("name", lambda f: f.events.create(SITE, ""), "event-name-empty"),
    case("name", lambda f: f.events.create(SITE, "e" * 256), "event-name-over-long"),
    case("currency", lambda f: f.events.create(SITE, "Signup", currency="bitcoin"),
         "currency-unknown"),
    case("currency", lambda f: f.events.create(SITE, "Signup", currency="Euro"),
         "currency-wrong-case"),
    case("update", lambda f: f.events.update(SITE, "ABCDEFGH"), "event-update-nothing"),
    case("currency", lambda f: f.events.update(SITE, "ABCDEFGH", currency=None),
         "event-update-currency-none"),
    case("name", lambda f: f.events.delete_by_name(SITE, ""), "delete-by-name-empty"),
    case("name", lambda f: f.events.set_currency(SITE, "a\rb", "euro"), "set-currency-name-cr"),
    case("currency", lambda f: f.events.set_currency(SITE, "Signup", "gold"),
         "set-currency-unknown"),
    case("event_id", lambda f: f.events.wipe(SITE, ""), "event-wipe-id-empty"),
    case("site_id", lambda f: f.sites.wipe(""), "site-wipe-id-empty"),
    # -- milestones
    case("name", lambda f: f.milestones.create(SITE, "m" * 31, date(2024, 1, 1)),
         "milestone-name-over-30"),
    case("milestone_date", lambda f: f.milestones.create(SITE, "Launch", "2024-13-01"),
         "milestone-date-month-13"),
    case("milestone_date", lambda f: f.milestones.create(SITE, "Launch", "01/02/2024"),
         "milestone-date-us-format"),
    case("milestone_date", lambda f: f.milestones.create(SITE, "Launch", NOW),
         "milestone-date-datetime"),
    case("milestone_date", lambda f: f.milestones.update(SITE, "uuid", name="x",
                                                         milestone_date="2024-02-30"),
         "milestone-update-feb-30"),
    # -- aggregations
    case("entity", lambda f: f.aggregations.query(entity="session", site_id=SITE,
                                                  aggregates="visits"), "entity-unknown"),
    case("aggregates", lambda f: f.aggregations.query(entity="pageview", site_id=SITE,
                                                      aggregates=["conversions"]),
         "aggregate-of-other-entity"),
    case("aggregates", lambda f: f.aggregations.query(entity="pageview", site_id=SITE,
                                                      aggregates=[]), "aggregates-empty"),
    case("aggregates", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates=["visits", "visits"]), "aggregates-twice"),
    case("date_grouping", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", date_grouping="week"),
        "date-grouping-unknown"),
    case("field_grouping", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", field_grouping=["domain"]),
        "group-by-domain"),
    case("filters.operator", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits",
        filters=[{"property": "country_code", "operator": "is like", "value": "N*"}]),
        "like-on-country"),
    case("filters.operator", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits",
        filters=[{"property": "pathname", "operator": "contains", "value": "/"}]),
        "operator-unknown"),
    case("filters.property", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits",
        filters=[{"property": "keyword", "operator": "is", "value": "x"}]),
        "filter-on-keyword"),
    case("filters.value", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits",
        filters=[{"property": "pathname", "operator": "is", "value": 5}]), "filter-value-int"),
    case("filters", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits",
        filters='[{"property": "pathname"}]'), "filters-as-string"),
    case("filters", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits",
        filters=[{"property": "pathname", "operator": "is", "value": "/", "x": "y"}]),
        "filter-extra-key"),
    case("sort_by", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", sort_by="visits"),
        "sort-without-direction"),
    case("sort_by", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", sort_by="pathname:asc"),
        "sort-on-field-not-asked"),
    case("limit", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", limit=0), "report-limit-zero"),
    case("limit", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", limit=1001),
        "report-limit-over-1000"),
    case("date_from", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", date_from="2024-1-01"),
        "date-not-zero-padded"),
    case("date_from", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", date_from="2024-02-30 00:00:00"),
        "date-feb-30"),
    case("date_from", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits",
        date_from=datetime(2024, 1, 1, tzinfo=timezone.utc)), "aware-datetime-without-tz"),
    case("date_to", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits",
        date_from=date(2024, 2, 1), date_to=date(2024, 1, 1)), "date-to-before-from"),
    case("date_grouping", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", date_grouping="hour",
        date_from=NOW - timedelta(days=8), date_to=NOW), "hour-over-7-days"),
    case("timezone", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", timezone="Nowhere/Land"),
        "report-timezone-unknown"),
    case("entity_name", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", entity_name="Signup"),
        "pageview-with-entity-name"),
    case("entity_name", lambda f: f.aggregations.query(
        entity="event", site_id=SITE, aggregates="conversions"), "event-without-name"),
    case("site_id", lambda f: f.aggregations.query(
        entity="pageview", site_id="", aggregates="visits"), "report-site-empty"),
    case("site_id", lambda f: f.aggregations.query(entity="pageview", aggregates="visits"),
         "report-without-site"),
    case("split", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", split="yes"), "split-str"),
    case("max_age", lambda f: f.aggregations.query(
        entity="pageview", site_id=SITE, aggregates="visits", max_age=-1), "max-age-negative"),
    case("detailed", lambda f: f.current_visitors.get(SITE, detailed="yes"), "detailed-str"),
    # -- per-call settings
    case("timeout", lambda f: f.with_options(timeout=0), "view-timeout-zero"),
    case("max_retries", lambda f: f.with_options(max_retries=21), "view-retries-over-20"),
    case("priority", lambda f: f.with_options(priority="urgent"), "view-priority-unknown"),
    case("acquire_timeout", lambda f: f.with_options(acquire_timeout=-1),
         "view-acquire-timeout-negative"),
]


async def _invoke(fathom: FathomClient, call: Call) -> None:
    result = call(fathom)
    if inspect.isawaitable(result):
        await result


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the retired wipe calls warn
@pytest.mark.parametrize(("field", "call"), BAD_INPUT)
async def test_bad_input_is_refused_naming_the_field_before_any_request(
    fathom: FathomClient, api: aioresponses, field: str, call: Call
) -> None:
    with pytest.raises(ValidationError) as info:
        await _invoke(fathom, call)
    assert info.value.field == field
    assert field in str(info.value)
    assert calls(api) == []


def test_the_table_covers_at_least_forty_cases() -> None:
    assert len(BAD_INPUT) >= 40


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"token": ""}, "token"),
        ({"token": "abc\ndef"}, "token"),
        ({"token": " padded"}, "token"),
        ({"token": 12345}, "token"),
        ({"base_url": "http://api.usefathom.com/v1"}, "base_url"),
        ({"base_url": "ftp://127.0.0.1/v1"}, "base_url"),
        ({"base_url": "https://user:pw@api.usefathom.com/v1"}, "base_url"),
        ({"base_url": "https://api.usefathom.com/v1?token=x"}, "base_url"),
        ({"base_url": "/v1"}, "base_url"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"priority": "urgent"}, "priority"),
        ({"acquire_timeout": "soon"}, "acquire_timeout"),
        ({"max_retry_wait": None}, "max_retry_wait"),
        ({"strict": "yes"}, "strict"),
        ({"max_response_bytes": 10}, "max_response_bytes"),
        ({"max_response_bytes": 2.0**20}, "max_response_bytes"),
        ({"rate_limits": "fast"}, "rate_limits"),
        ({"session": "session"}, "session"),
    ],
    ids=lambda value: str(value) if isinstance(value, str) else None,
)
def test_bad_client_settings_are_refused_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    arguments: dict[str, Any] = {"token": TOKEN, **kwargs}
    with pytest.raises(ValidationError) as info:
        FathomClient(**arguments)
    assert info.value.field == field
    if field == "token":
        assert "abc" not in str(info.value)
        assert "padded" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"entity": (0, 60)}, "entity.limit"),
        ({"reports": (10, 0)}, "reports.period"),
        ({"reports": 10}, "reports"),
        ({"max_in_flight": {"sessions": 1}}, "max_in_flight"),
        ({"bulk_max_wait": -1}, "bulk_max_wait"),
    ],
)
def test_bad_rate_limits_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        RateLimits(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"date_from": date(2024, 2, 1), "date_to": date(2024, 1, 1)}, "date_to"),
        ({"date_from": date(2024, 1, 1), "date_to": date(2024, 2, 1), "entities": ("x",)},
         "entities"),
        ({"date_from": date(2024, 1, 1), "date_to": date(2024, 2, 1), "format": "xml"},
         "format"),
    ],
)
def test_bad_export_specs_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ExportSpec(**kwargs)
    assert info.value.field == field


def test_filters_refuse_wrong_operators_for_their_property() -> None:
    for prop in ("device_type", "operating_system", "browser", "country_code", "city",
                 "state", "region"):
        for operator in ("is like", "is not like", "matching", "not matching"):
            with pytest.raises(ValidationError) as info:
                Filter(prop, operator, "x")
            assert info.value.field == "filters.operator"
    with pytest.raises(ValidationError, match="country_code"):
        Filter("country", "is", "NL")


# -- odd ids are sent safely, as one encoded segment ------------------------------------

ODD_IDS = ["../account", "a/b", "a.b", "..", ".", "with space", "ünïcödé", "new\nline",
           "tab\there", "q?x=1", "frag#1", "pct%2F", "semi;colon"]


@pytest.mark.parametrize("odd", ODD_IDS)
async def test_odd_ids_travel_as_one_encoded_segment(
    fathom: FathomClient, api: aioresponses, odd: str
) -> None:
    api.get(re.compile(r".*"), payload={"id": odd, "object": "site", "name": "x",
                                        "created_at": "2024-01-01 00:00:00"})
    await fathom.sites.get(odd)
    [(method, sent, _)] = calls(api)
    path = sent.split("/v1", 1)[1]
    assert method == "GET"
    assert path.startswith("/sites/")
    segment = path[len("/sites/"):]
    assert "/" not in segment
    assert "?" not in segment
    assert "#" not in segment
    assert "." not in segment
    assert "\n" not in segment
    assert " " not in segment
    assert segment.isascii()


async def test_an_event_name_with_odd_characters_is_query_encoded(
    fathom: FathomClient, api: aioresponses
) -> None:
    api.delete(re.compile(r".*"), payload={"deleted": True})
    await fathom.events.delete_by_name(SITE, "a&name=b c/ü")
    [(_, sent, kwargs)] = calls(api)
    assert kwargs["params"] == (("name", "a&name=b c/ü"),)
    assert "&name=b" not in sent.split("?", 1)[0]


# -- fuzzing the response parsers ---------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def _sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


SAMPLE_BODIES = [_sample(path.name) for path in sorted(SAMPLES.glob("*.json"))]


def _keys_of(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield key
            yield from _keys_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys_of(item)


KNOWN_KEYS = sorted({key for body in SAMPLE_BODIES for key in _keys_of(body)})


@st.composite
def mangled(draw: st.DrawFn) -> Any:
    """A real sample body with values replaced, keys dropped or added, shapes changed."""
    body = draw(st.sampled_from(SAMPLE_BODIES))
    return _mangle(draw, json.loads(json.dumps(body)), depth=0)


def _mangle(draw: st.DrawFn, value: Any, depth: int) -> Any:
    choice = draw(st.integers(0, 9))
    if choice == 0 or depth > 4:
        return draw(JSON)
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if draw(st.integers(0, 5)) == 0:
                continue
            result[key] = _mangle(draw, item, depth + 1)
        if draw(st.booleans()):
            result[draw(st.sampled_from(KNOWN_KEYS))] = draw(JSON)
        return result
    if isinstance(value, list):
        return [_mangle(draw, item, depth + 1) for item in value]
    return value


BODIES = mangled() | JSON
RAW_BYTES = (
    st.binary(max_size=200)
    | BODIES.map(lambda value: json.dumps(value).encode())
    | BODIES.map(lambda value: json.dumps(value).encode()[: max(len(json.dumps(value)) // 2, 1)])
    | st.just(b"<html><head><title>502 Bad Gateway</title></head></html>")
    | st.text(max_size=50).map(lambda text: text.encode("utf-8", "surrogatepass"))
)
HEADER_VALUES = st.text(max_size=40) | st.sampled_from(
    ["1", "-5", "1e400", "nan", "Wed, 21 Oct 2015 07:28:00 GMT", "Mon, 01 Jan 99999 00:00:00",
     "9999999999", "0x10", " 3 ", "Thu, 01 Jan 1970 00:00:00 -0000", ""]
)
HEADERS = st.dictionaries(
    st.sampled_from(["Retry-After", "retry-after", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                     "x-ratelimit-reset", "X-RateLimit-Reset", "Content-Type"]),
    HEADER_VALUES,
    max_size=5,
)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(status=st.integers(100, 599), body=RAW_BYTES, content_type=st.none() | st.text(max_size=30))
def test_decode_json_raises_only_typed_errors(
    status: int, body: bytes, content_type: str | None
) -> None:
    with contextlib.suppress(FathomError):
        decode_json(status, body, content_type)


@FUZZ
@given(status=st.integers(400, 599), headers=HEADERS, body=RAW_BYTES)
def test_error_from_response_always_builds_a_typed_error(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    error = error_from_response(status, headers, body, now=1_700_000_000.0)
    assert isinstance(error, FathomError)
    assert error.status_code == status
    str(error), repr(error)


@FUZZ
@given(status=st.integers(100, 599), headers=HEADERS, now=st.floats(0, 4e9))
def test_server_feedback_never_raises(status: int, headers: dict[str, str], now: float) -> None:
    feedback = server_feedback(status, headers, now=now)
    assert feedback.retry_after is None or feedback.retry_after >= 0
    assert feedback.remaining is None or feedback.remaining >= 0
    parse_retry_after(headers, now=now)


@FUZZ
@given(data=BODIES)
def test_list_items_raises_only_typed_errors(data: Any) -> None:
    try:
        items, has_more, _ = list_items(data)
    except FathomError:
        return
    assert isinstance(items, list)
    assert isinstance(has_more, bool)


@FUZZ
@given(data=BODIES, model=st.sampled_from(MODELS), strict=st.booleans())
def test_the_converter_raises_only_typed_errors_for_every_model(
    data: Any, model: type[Any], strict: bool
) -> None:
    with contextlib.suppress(FathomError):
        get_converter(strict).structure(data, model)


@FUZZ
@given(body=RAW_BYTES, strict=st.booleans())
def test_aggregation_bodies_raise_only_typed_errors(body: bytes, strict: bool) -> None:
    with contextlib.suppress(FathomError):
        # the response path: the one decode, then the aggregation reader
        _read_rows(get_converter(strict))(decode_json(200, body, "application/json"))


class _Stub:
    """Enough of a client for a resource: answers each request with the next body."""

    def __init__(self, bodies: list[Any], strict: bool) -> None:
        self.bodies = bodies
        self._converter = get_converter(strict)

    async def _request(self, request: ApiRequest) -> Any:
        if not self.bodies:
            return {"object": "list", "has_more": False, "data": []}
        return self.bodies.pop(0)


@FUZZ
@given(pages=st.lists(BODIES, min_size=1, max_size=4), strict=st.booleans())
def test_the_pager_raises_only_typed_errors(pages: list[Any], strict: bool) -> None:
    from fathom_async._models import Site

    resource = Resource(cast(FathomClient, _Stub(pages, strict)))
    pager: AsyncPager[Site] = resource._list(
        "sites.list", "/sites", Site, limit=10, starting_after=None, ending_before=None
    )

    async def walk() -> None:
        try:
            first: Page[Site] = await pager
            assert isinstance(first.has_more, bool)
            async for _ in pager:
                pass
        except FathomError:
            pass

    asyncio.get_event_loop().run_until_complete(asyncio.wait_for(walk(), 5))


@FUZZ
@given(body=BODIES, detailed=st.booleans(), strict=st.booleans())
def test_aggregations_and_current_visitors_raise_only_typed_errors_on_any_body(
    body: Any, detailed: bool, strict: bool
) -> None:
    async def run() -> None:
        fathom = FathomClient(TOKEN, rate_limits=None, strict=strict)

        async def answer(request: ApiRequest, **_: Any) -> Any:
            return body

        fathom._request = answer  # type: ignore[method-assign]
        with contextlib.suppress(FathomError):
            await fathom.aggregations.query(
                entity="pageview", site_id=SITE, aggregates=["pageviews", "bounce_rate"],
                date_grouping="day", field_grouping="pathname", cache=False,
            )
        with contextlib.suppress(FathomError):
            await fathom.current_visitors.get(SITE, detailed=detailed)
        await fathom.close()

    asyncio.get_event_loop().run_until_complete(asyncio.wait_for(run(), 5))


def test_the_fuzz_starts_from_the_real_samples() -> None:
    assert len(SAMPLE_BODIES) >= 20
    assert {"has_more", "total", "pageviews", "created_at"} <= set(KNOWN_KEYS)
