"""`fathom_async.types`: the closed sets a user can name, and what leans on them.

The aliases must be the very sets validation checks at run time, must make a type
checker refuse a misspelt aggregate, and must carry docstrings a documentation
generator reads. Alongside: every resource method documents its endpoint and its
errors, and a `Site` answer without `created_at` is refused as malformed.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import griffe
import pytest
from aioresponses import aioresponses
from mypy import api

import fathom_async
from fathom_async import APIResponseError, FathomClient, Site, types
from fathom_async import _exceptions as exceptions
from fathom_async import _types as runtime
from fathom_async._converter import get_converter
from fathom_async._resources.account import AccountResource, TokenResource
from fathom_async._resources.aggregations import AggregationsResource
from fathom_async._resources.current_visitors import CurrentVisitorsResource
from fathom_async._resources.events import EventsResource
from fathom_async._resources.milestones import MilestonesResource
from fathom_async._resources.sites import SitesResource
from fathom_async.testing._handlers import ROUTES
from tests.conftest import url

# -- the aliases ----------------------------------------------------------------------

EXPECTED = {
    "Bucket", "Currency", "DateGrouping", "Entity", "EventAggregate", "FieldGrouping",
    "FilterOperator", "MultiDomainOption", "PageviewAggregate", "Priority", "Sharing",
}

# Each alias, and the tuple the SDK validates that argument against at run time.
CHECKED_BY: dict[str, tuple[str, ...]] = {
    "Bucket": runtime.BUCKETS,
    "Currency": runtime.CURRENCIES,
    "DateGrouping": runtime.DATE_GROUPINGS,
    "Entity": runtime.ENTITIES,
    "EventAggregate": runtime.AGGREGATES["event"],
    "FieldGrouping": runtime.FIELD_GROUPINGS,
    "FilterOperator": runtime.OPERATORS,
    "MultiDomainOption": runtime.MULTI_DOMAIN_OPTIONS,
    "PageviewAggregate": runtime.AGGREGATES["pageview"],
    "Priority": runtime.PRIORITIES,
    "Sharing": runtime.SHARING,
}


def test_all_is_exactly_the_public_aliases() -> None:
    assert set(types.__all__) == EXPECTED
    assert len(types.__all__) == len(EXPECTED)
    public = {name for name in vars(types) if not name.startswith("_")}
    assert public - {"annotations", "Literal"} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_alias_is_the_literal_validation_checks(name: str) -> None:
    alias = getattr(types, name)
    assert get_origin(alias) is Literal
    assert get_args(alias) == CHECKED_BY[name]
    assert getattr(runtime, name) is alias  # one definition: the private module imports it


def _annotation(function: Callable[..., Any], parameter: str) -> Any:
    """A parameter's annotation, evaluated where the function was written."""
    text = inspect.signature(function).parameters[parameter].annotation
    written = inspect.unwrap(function)  # a traced public call wraps the method
    return eval(text, written.__globals__)  # the modules use postponed annotations


@pytest.mark.parametrize(
    ("function", "parameter", "alias"),
    [
        (FathomClient.with_options, "priority", types.Priority),
        (SitesResource.create, "sharing", types.Sharing),
        (SitesResource.update, "multi_domain_option", types.MultiDomainOption),
        (EventsResource.create, "currency", types.Currency),
        (EventsResource.set_currency, "currency", types.Currency),
        (AggregationsResource.query, "entity", types.Entity),
        (AggregationsResource.query, "date_grouping", types.DateGrouping),
        (AggregationsResource.plan, "date_grouping", types.DateGrouping),
    ],
)
def test_public_signatures_take_the_aliases(
    function: Callable[..., Any], parameter: str, alias: Any
) -> None:
    annotation = _annotation(function, parameter)
    assert annotation is alias or alias in get_args(annotation)


def test_filters_plans_and_export_specs_take_the_aliases() -> None:
    from fathom_async.export import ExportSpec

    assert get_type_hints(fathom_async.Filter)["operator"] is types.FilterOperator
    assert get_type_hints(fathom_async.ReportPlan)["date_grouping"] == (
        types.DateGrouping | None
    )
    spec = get_type_hints(ExportSpec)
    assert spec["granularity"] is types.DateGrouping
    assert spec["pageview_aggregates"] == tuple[types.PageviewAggregate, ...]
    assert spec["event_aggregates"] == tuple[types.EventAggregate, ...]
    assert spec["pageview_grouping"] == spec["event_grouping"] == tuple[
        types.FieldGrouping, ...
    ]


def test_each_alias_has_a_docstring_a_documentation_generator_reads() -> None:
    module = griffe.load("fathom_async.types")
    assert module.docstring is not None
    assert "Literal" in module.docstring.value
    for name in types.__all__:
        docstring = module[name].docstring
        assert docstring is not None, f"{name} has no docstring after its assignment"
        assert len(docstring.value.split()) >= 5, f"{name}: say what the set is for"


# -- a type checker refuses a misspelt aggregate -------------------------------------

SNIPPETS = {
    "correct": """
        await fathom.aggregations.query(
            entity="pageview", site_id="CDBUGS", aggregates=["visits", "uniques"],
            field_grouping=["pathname"], date_grouping="day",
        )
        await fathom.aggregations.query(
            entity="event", site_id="CDBUGS", entity_name="Signup",
            aggregates="conversions", field_grouping="country_code",
        )
        plan = fathom.aggregations.plan(
            entity="pageview", site_id="CDBUGS", aggregates=("pageviews",)
        )
        own: list[PageviewAggregate] = ["visits", "bounce_rate"]
        await fathom.aggregations.query(entity="pageview", site_id="CDBUGS", aggregates=own)
        ExportSpec(date_from=date(2024, 1, 1), date_to=date(2024, 1, 31),
                   pageview_aggregates=["visits"], event_grouping=["hostname"])
        raw = await fathom.with_raw_response.sites.get("CDBUGS")
        site: Site = raw.parse()
        status: int = raw.status_code
        remaining: str | None = raw.headers.get("X-RateLimit-Remaining")
        first: Page[Site] = (await fathom.with_raw_response.sites.list(limit=5)).parse()
        table: AggregationRows = (await fathom.with_raw_response.aggregations.query(
            entity="event", site_id="CDBUGS", entity_name="Signup", aggregates="conversions",
        )).parse()
    """,
    "raw_typo": """
        await fathom.with_raw_response.aggregations.query(
            entity="pageview", site_id="CDBUGS", aggregates=["visits", "uniqes"]  # BAD
        )
    """,
    "typo": """
        await fathom.aggregations.query(
            entity="pageview", site_id="CDBUGS", aggregates=["visits", "uniqes"]  # BAD
        )
    """,
    "other_entity": """
        await fathom.aggregations.query(
            entity="pageview", site_id="CDBUGS", aggregates=["conversions"]  # BAD
        )
    """,
    "plan_typo": """
        fathom.aggregations.plan(
            entity="event", site_id="CDBUGS", entity_name="Signup", aggregates="visits"  # BAD
        )
    """,
    "grouping_typo": """
        await fathom.aggregations.query(
            entity="pageview", site_id="CDBUGS", aggregates="visits",
            field_grouping=["pathnme"],  # BAD
        )
    """,
    "spec_typo": """
        ExportSpec(date_from=date(2024, 1, 1), date_to=date(2024, 1, 31),
                   pageview_aggregates=["uniqes"])  # BAD
    """,
}
HEADER = """\
from datetime import date

from fathom_async import AggregationRows, FathomClient, Page, Site
from fathom_async.export import ExportSpec
from fathom_async.types import PageviewAggregate


async def main(fathom: FathomClient) -> None:
"""

# Only the snippets are checked here (the package has its own strict mypy run), so the
# heavy optional libraries are left out: the check takes seconds instead of fifteen.
MYPY_CONFIG = """\
[mypy]
strict = True

[mypy-fathom_async.*]
ignore_errors = True

[mypy-numpy.*,pandas.*,polars.*,pyarrow.*,dlt.*,redis.*,rich.*,click.*,pydantic.*,hypothesis.*,markdown_it.*,jinja2.*,msgspec.*,pytest.*,_pytest.*]
follow_imports = skip
follow_imports_for_stubs = True
ignore_missing_imports = True
"""


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One mypy run over every snippet: each file's output lines, by snippet name."""
    folder = tmp_path_factory.mktemp("mypy")
    files = []
    for name, body in SNIPPETS.items():
        path = folder / f"snippet_{name}.py"
        path.write_text(HEADER + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n")
        files.append(str(path))
    (folder / "mypy.ini").write_text(MYPY_CONFIG)
    stdout, stderr, _ = api.run([
        "--strict", "--config-file", str(folder / "mypy.ini"), "--no-incremental",
        "--cache-dir", str(folder / "cache"), "--no-error-summary", *files,
    ])
    assert not stderr, stderr
    report: dict[str, list[str]] = {name: [] for name in SNIPPETS}
    for line in stdout.splitlines():
        match = re.match(r".*snippet_(\w+)\.py:", line)
        assert match, line
        report[match.group(1)].append(line)
    return report


def _bad_line(name: str) -> int:
    lines = (HEADER + textwrap.indent(textwrap.dedent(SNIPPETS[name]).strip(), "    "))
    return next(n for n, text in enumerate(lines.splitlines(), 1) if "# BAD" in text)


def test_correct_calls_type_check(mypy_report: dict[str, list[str]]) -> None:
    assert mypy_report["correct"] == []


@pytest.mark.parametrize(
    "name", ["typo", "other_entity", "plan_typo", "grouping_typo", "raw_typo"]
)
def test_a_wrong_value_for_the_entity_fails_type_checking(
    mypy_report: dict[str, list[str]], name: str
) -> None:
    errors = [line for line in mypy_report[name] if ": error:" in line]
    assert len(errors) == 1, mypy_report[name]
    # No overload takes the call: the error is at the call, and the overloads it
    # lists name the argument and the values each entity allows.
    assert "No overload variant" in errors[0]  # "of" the method; a raw call's is unnamed
    assert "[call-overload]" in errors[0]
    start = int(errors[0].split(":")[1])
    assert start < _bad_line(name) <= start + 3
    notes = "\n".join(mypy_report[name])
    assert "entity: Literal['pageview'], aggregates: Literal['visits', 'uniques'," in notes
    assert "entity: Literal['event'], aggregates: Literal['conversions'," in notes


def test_a_misspelt_aggregate_in_an_export_spec_fails_type_checking(
    mypy_report: dict[str, list[str]],
) -> None:
    [error] = [line for line in mypy_report["spec_typo"] if ": error:" in line]
    # Not an overload: mypy checks the list against the field's type and names the item.
    assert "List item 0 has incompatible type \"Literal['uniqes']\"" in error
    assert int(error.split(":")[1]) == _bad_line("spec_typo")


async def test_the_misspelt_query_is_still_refused_at_run_time(fathom: FathomClient) -> None:
    # A caller without a type checker gets the same answer, before any request.
    with pytest.raises(fathom_async.ValidationError) as info:
        await fathom.aggregations.query(  # type: ignore[call-overload]
            entity="pageview", site_id="CDBUGS", aggregates=["visits", "uniqes"]
        )
    assert info.value.field == "aggregates"


# -- every resource method documents its endpoint and its errors ---------------------

RESOURCES = [
    AccountResource, TokenResource, SitesResource, EventsResource, MilestonesResource,
    AggregationsResource, CurrentVisitorsResource,
]
METHODS = [
    pytest.param(method, id=f"{cls.__name__}.{name}")
    for cls in RESOURCES
    for name, method in vars(cls).items()
    if not name.startswith("_") and inspect.isfunction(method)
]
ENDPOINT = re.compile(r"`(GET|POST|DELETE) (/[a-z_{}/]+)")
SERVED = {(method, path.removeprefix("/v1")) for method, path, _ in ROUTES}
ERRORS = {name for name in exceptions.__all__ if name.endswith("Error")}


def test_every_resource_has_its_usual_methods() -> None:
    names = {param.id for param in METHODS}
    for expected in ("SitesResource.list", "SitesResource.get", "SitesResource.create",
                     "SitesResource.update", "SitesResource.delete", "SitesResource.wipe",
                     "EventsResource.wipe", "EventsResource.delete_by_name",
                     "AggregationsResource.query", "AggregationsResource.plan"):
        assert expected in names


@pytest.mark.parametrize("method", METHODS)
def test_each_method_names_its_endpoint(method: Callable[..., Any]) -> None:
    doc = inspect.getdoc(method) or ""
    found = ENDPOINT.search(doc)
    assert found, f"{method.__qualname__}: say which call it makes, as `GET /path`"
    # The endpoint named is one the API (as the emulator models it) serves.
    assert (found.group(1), found.group(2)) in SERVED


@pytest.mark.parametrize("method", METHODS)
def test_each_method_lists_the_errors_it_raises(method: Callable[..., Any]) -> None:
    doc = inspect.getdoc(method) or ""
    assert "\nRaises:\n" in doc, f"{method.__qualname__} has no Raises: section"
    section = doc.split("\nRaises:\n", 1)[1].split("\n\n", 1)[0]
    named = re.findall(r"^    (\w+): \S", section, flags=re.MULTILINE)
    assert named, f"{method.__qualname__}: list the errors as `Name: when`"
    assert set(named) <= ERRORS, f"{method.__qualname__} names unknown errors"


# -- Site.created_at ------------------------------------------------------------------


def test_site_created_at_is_required() -> None:
    with pytest.raises(TypeError):
        Site(id="CDBUGS", name="Bugs")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "name", ["site.json", "site_created.json", "site_updated.json", "sites_list.json"]
)
def test_every_documented_site_answer_carries_created_at(name: str) -> None:
    import json

    data = json.loads((Path(__file__).parent / "samples" / name).read_text())
    for item in data["data"] if name == "sites_list.json" else [data]:
        site = get_converter(strict=True).structure(item, Site)
        assert site.created_at.tzinfo is not None


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("created_at", ["missing", None])
def test_a_site_without_created_at_is_a_malformed_response(
    strict: bool, created_at: str | None
) -> None:
    data: dict[str, Any] = {"id": "CDBUGS", "object": "site", "name": "Bugs"}
    if created_at != "missing":
        data["created_at"] = created_at
    with pytest.raises(APIResponseError, match="created_at") as info:
        get_converter(strict=strict).structure(data, Site)
    assert info.value.body == data


async def test_sites_get_raises_the_response_error_for_a_site_without_created_at(
    fathom: FathomClient, api: aioresponses
) -> None:
    api.get(url("/sites/CDBUGS"), payload={"id": "CDBUGS", "object": "site", "name": "Bugs"})
    with pytest.raises(APIResponseError, match="created_at"):
        await fathom.sites.get("CDBUGS")
