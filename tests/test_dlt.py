"""The dlt source end to end: the emulator into DuckDB, incremental, resumable."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no phoning home from tests

import dlt
import duckdb
from dlt.pipeline.exceptions import PipelineStepFailed

from fathom_async import AcquireTimeoutError, FathomClient, ValidationError
from fathom_async.dlt import RESOURCES, fathom_source
from fathom_async.export import ExportSpec, Manifest, PlanMismatchError, read_rows, run_export
from fathom_async.limits import BucketSnapshot, Permit, RateLimitBackend, ServerFeedback
from fathom_async.testing import FakeFathom, Pageview
from fathom_async.types import Bucket, Priority

DAY = date(2024, 3, 10)
NOON = datetime(2024, 3, 10, 12, tzinfo=timezone.utc)


@pytest.fixture
async def demo() -> AsyncIterator[FakeFathom]:
    async with FakeFathom(seed=7, pageviews=6_000, enforce_rate_limits=False) as server:
        yield server


@pytest.fixture
async def quiet() -> AsyncIterator[FakeFathom]:
    """An emulator without demo data: one site whose traffic the test writes."""
    async with FakeFathom(seed=1, demo=False, enforce_rate_limits=False) as server:
        server.store.add_site("Shop")
        yield server


def visit(fake: FakeFathom, when: datetime, path: str, count: int = 1,
          site_id: str | None = None) -> None:
    site = site_id or _only_site(fake)
    fake.store.add_pageviews(
        Pageview(site_id=site, timestamp=when, pathname=path) for _ in range(count))


def _only_site(fake: FakeFathom) -> str:
    return next(iter(fake.store.sites))


class Warehouse:
    """A DuckDB file and a dlt pipeline writing into it, both in the test's folder."""

    def __init__(self, folder: Path, name: str = "fathom") -> None:
        self.path = folder / "warehouse.duckdb"
        self.pipeline = dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.duckdb(str(self.path)),
            dataset_name="fathom",
            pipelines_dir=str(folder / "pipelines"),
        )

    async def load(self, source: Any) -> Any:
        # dlt's run blocks; the emulator serves on this loop meanwhile.
        return await asyncio.to_thread(self.pipeline.run, source)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.path), read_only=True) as con:
            return con.sql(sql).fetchall()

    def tables(self) -> set[str]:
        found = self.rows("select table_name from information_schema.tables"
                          " where table_schema = 'fathom'")
        return {name for (name,) in found}


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path)


def client_for(fake: FakeFathom) -> FathomClient:
    return FathomClient(fake.token, base_url=fake.url, rate_limits=None)


def report_queries(fake: FakeFathom) -> list[dict[str, str]]:
    return [r.query for r in fake.store.requests if r.path.endswith("/aggregations")]


async def test_the_first_load_equals_the_exports_rows(
    demo: FakeFathom, warehouse: Warehouse, tmp_path: Path
) -> None:
    today = datetime.now(timezone.utc).date()
    start = today - timedelta(days=45)
    async with client_for(demo) as fathom:
        info = await warehouse.load(fathom_source(fathom, start_date=start, end_date=today))
        spec = ExportSpec(date_from=start, date_to=today)
        await run_export(fathom, spec, tmp_path / "export")
    assert not info.has_failed_jobs
    assert warehouse.tables() >= set(RESOURCES)

    manifest = Manifest(tmp_path / "export")
    manifest.load()
    exported: dict[str, set[tuple[Any, ...]]] = {"pageviews": set(), "event_conversions": set(),
                                                 "sites": set(), "events": set()}
    for record in manifest.chunks.values():
        part = record.series.split("/")[0]
        for row in read_rows(manifest.directory / record.file):
            if part == "pageviews":
                exported[part].add((row["site_id"], row["date"], row["pathname"],
                                    row["pageviews"], row["visits"], row["uniques"]))
            elif part == "event_conversions":
                exported[part].add((row["site_id"], row["event_name"], row["date"],
                                    row["conversions"], row["value"]))
            elif part in ("sites", "events"):
                exported[part].add((row.get("site_id"), str(row["id"]), row["name"]))
    assert exported["pageviews"]
    assert exported["event_conversions"]

    loaded_views = warehouse.rows(
        "select site_id, strftime(date, '%Y-%m-%d'), pathname, pageviews, visits, uniques"
        " from fathom.pageviews")
    assert len(loaded_views) == len(set(loaded_views))  # no row twice
    assert set(loaded_views) == exported["pageviews"]
    loaded_conversions = warehouse.rows(
        "select site_id, event_name, strftime(date, '%Y-%m-%d'), conversions, value"
        " from fathom.event_conversions")
    assert set(loaded_conversions) == exported["event_conversions"]
    assert {(None, i, n) for i, n in warehouse.rows("select id, name from fathom.sites")} == \
        exported["sites"]
    assert set(warehouse.rows("select site_id, id, name from fathom.events")) == \
        exported["events"]
    # Typed columns: the aggregates are numbers, the period start a DATE.
    types = dict(warehouse.rows("select column_name, data_type from information_schema.columns"
                                " where table_name = 'pageviews'"))
    assert types["date"] == "DATE"
    assert types["pageviews"] == "BIGINT"
    assert types["bounce_rate"] == "DOUBLE"
    assert types["pathname"] == "VARCHAR"


async def test_duckdb_totals_equal_direct_aggregation_queries(
    demo: FakeFathom, warehouse: Warehouse
) -> None:
    today = datetime.now(timezone.utc).date()
    start = today - timedelta(days=30)
    async with client_for(demo) as fathom:
        await warehouse.load(fathom_source(fathom, start_date=start, end_date=today))
        for site in demo.sites:
            direct = await fathom.aggregations.query(
                entity="pageview", site_id=site.id, aggregates=["pageviews", "visits"],
                date_from=start, date_to=today)
            [(pageviews, visits)] = warehouse.rows(
                "select coalesce(sum(pageviews), 0), coalesce(sum(visits), 0)"
                f" from fathom.pageviews where site_id = '{site.id}'")
            assert (pageviews, visits) == (direct[0].pageviews or 0, direct[0].visits or 0)
    assert sum(n for (n,) in warehouse.rows("select sum(pageviews) from fathom.pageviews")) > 0


async def test_a_load_a_day_later_adds_new_periods_and_replaces_the_open_one(
    quiet: FakeFathom, warehouse: Warehouse
) -> None:
    visit(quiet, datetime(2024, 3, 2, 9, tzinfo=timezone.utc), "/a", 3)
    visit(quiet, datetime(2024, 3, 10, 9, tzinfo=timezone.utc), "/a", 2)
    start = date(2024, 3, 1)
    async with client_for(quiet) as fathom:
        await warehouse.load(fathom_source(fathom, start_date=start, now=NOON))
        first_load = warehouse.rows("select distinct _dlt_load_id from fathom.pageviews")
        assert warehouse.rows(
            "select strftime(date, '%Y-%m-%d'), pathname, pageviews from fathom.pageviews"
            " order by 1") == [("2024-03-02", "/a", 3), ("2024-03-10", "/a", 2)]

        # The rest of March 10 and March 11 happen; the load runs again a day later.
        visit(quiet, datetime(2024, 3, 10, 20, tzinfo=timezone.utc), "/a", 4)
        visit(quiet, datetime(2024, 3, 11, 8, tzinfo=timezone.utc), "/b", 1)
        before = len(report_queries(quiet))
        await warehouse.load(fathom_source(fathom, start_date=start,
                                           now=NOON + timedelta(days=1)))
    asked = report_queries(quiet)[before:]
    assert asked, "the second load asked nothing"
    assert all(q["date_from"] >= "2024-03-10" for q in asked)  # only from the open period
    assert warehouse.rows(
        "select strftime(date, '%Y-%m-%d'), pathname, pageviews from fathom.pageviews"
        " order by 1, 2") == [("2024-03-02", "/a", 3), ("2024-03-10", "/a", 6),
                              ("2024-03-11", "/b", 1)]
    # Only this load's journal is kept: the first load's can never be resumed.
    staging = Path(warehouse.pipeline.working_dir) / "fathom-staging" / "pageviews"
    assert len(list(staging.iterdir())) == 1
    # The closed period kept the row of the first load; nothing is duplicated.
    assert warehouse.rows("select _dlt_load_id from fathom.pageviews where date = '2024-03-02'"
                          ) == first_load


async def test_an_interrupted_load_resumes_without_paying_twice(
    demo: FakeFathom, warehouse: Warehouse, tmp_path: Path
) -> None:
    today = datetime.now(timezone.utc).date()
    start = today - timedelta(days=60)
    chunks: list[str] = []

    def fail_after_a_few(kind: str, event: Any) -> None:
        if event.kind == "chunk":
            chunks.append(kind)
            if len(chunks) == 4:  # the network goes away mid-load
                demo.inject("GET /aggregations", "error_500")

    async with client_for(demo) as fathom:
        fragile = fathom.with_options(max_retries=0)
        with pytest.raises(PipelineStepFailed):
            await warehouse.load(fathom_source(fragile, start_date=start, end_date=today,
                                               progress=fail_after_a_few, concurrency=1))
        paid = len(report_queries(demo))
        demo.faults.clear()
        await warehouse.load(fathom_source(fathom, start_date=start, end_date=today))
        resumed = len(report_queries(demo)) - paid

        clean = Warehouse(tmp_path / "clean", name="clean")
        before = len(report_queries(demo))
        await clean.load(fathom_source(fathom, start_date=start, end_date=today))
        from_scratch = len(report_queries(demo)) - before
    query = ("select site_id, strftime(date, '%Y-%m-%d'), pathname, pageviews"
             " from fathom.pageviews order by all")
    assert warehouse.rows(query) == clean.rows(query)
    assert resumed < from_scratch  # the chunks finished before the stop were kept
    assert len(warehouse.rows(query)) == len(set(warehouse.rows(query)))


async def test_hours_are_stored_as_the_instants_they_name(
    quiet: FakeFathom, warehouse: Warehouse
) -> None:
    site = quiet.store.add_site("Berlin", timezone="Europe/Berlin").id
    visit(quiet, datetime(2024, 3, 9, 13, 30, tzinfo=timezone.utc), "/a", 2, site_id=site)
    async with client_for(quiet) as fathom:
        await warehouse.load(fathom_source(fathom, start_date=date(2024, 3, 8), sites=[site],
                                           granularity="hour", now=NOON))
    [(moment, views)] = warehouse.rows("select date, pageviews from fathom.pageviews")
    assert views == 2
    assert moment == datetime(2024, 3, 9, 13, tzinfo=timezone.utc)


async def test_a_changed_plan_is_refused_rather_than_mixed(
    quiet: FakeFathom, warehouse: Warehouse
) -> None:
    visit(quiet, datetime(2024, 3, 2, 9, tzinfo=timezone.utc), "/a")
    async with client_for(quiet) as fathom:
        await warehouse.load(fathom_source(fathom, start_date=date(2024, 3, 1), now=NOON))
        with pytest.raises(PipelineStepFailed) as failed:
            await warehouse.load(fathom_source(fathom, start_date=date(2024, 3, 1), now=NOON,
                                               granularity="month"))
    assert isinstance(failed.value.__cause__, Exception)
    assert "PlanMismatchError" in repr(failed.value) or isinstance(
        _root(failed.value), PlanMismatchError)


def _root(error: BaseException) -> BaseException:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return error


async def test_a_token_and_base_url_work_without_a_client(
    quiet: FakeFathom, warehouse: Warehouse
) -> None:
    visit(quiet, datetime(2024, 3, 2, 9, tzinfo=timezone.utc), "/a")
    source = fathom_source(quiet.token, base_url=quiet.url, start_date=date(2024, 3, 1),
                           now=NOON, sites=[_only_site(quiet)])
    assert quiet.token not in repr(source)
    await warehouse.load(source)
    assert warehouse.rows("select pathname, pageviews from fathom.pageviews") == [("/a", 1)]
    assert warehouse.rows("select count(*) from fathom.milestones") == [(0,)]  # empty, there


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"granularity": "week"}, "granularity"),
        ({"start_date": date(2024, 3, 5), "end_date": date(2024, 3, 1)}, "end_date"),
        ({"start_date": datetime(2024, 3, 5, tzinfo=timezone.utc)}, "start_date"),
        ({"end_date": "2024-03-05"}, "end_date"),
        ({"now": datetime(2024, 3, 1)}, "now"),
        ({"pageview_grouping": "pathname"}, "pageview_grouping"),
        ({"pageview_aggregates": ["views"]}, "pageview_aggregates"),
        ({"shard": (2, 2)}, "shard"),
        ({"concurrency": 0}, "concurrency"),
        ({"sites": []}, "sites"),
    ],
)
def test_bad_arguments_fail_before_any_request(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        fathom_source("some-token", base_url="http://127.0.0.1:9/v1", **kwargs)
    assert caught.value.field == field


def test_a_client_of_the_wrong_kind_or_no_token_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match="client"):
        fathom_source(42)  # type: ignore[arg-type]
    monkeypatch.delenv("FATHOM_API_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="token"):
        fathom_source()


async def test_every_run_asks_for_the_open_period_again(
    quiet: FakeFathom, warehouse: Warehouse
) -> None:
    """Hourly runs on one day: each sees the traffic so far, none reads an old journal."""
    async with client_for(quiet) as fathom:
        for hour in range(4):
            visit(quiet, datetime(2024, 3, 10, 8 + hour, tzinfo=timezone.utc), "/a")
            before = len(report_queries(quiet))
            await warehouse.load(fathom_source(fathom, start_date=date(2024, 3, 9),
                                               now=NOON + timedelta(hours=hour)))
            assert len(report_queries(quiet)) > before
            assert warehouse.rows("select pageviews from fathom.pageviews") == [(hour + 1,)]


async def test_months_load_incrementally_from_the_open_month(
    quiet: FakeFathom, warehouse: Warehouse
) -> None:
    for day in (date(2024, 1, 20), date(2024, 2, 3), date(2024, 3, 4)):
        visit(quiet, datetime(day.year, day.month, day.day, 9, tzinfo=timezone.utc), "/")
    async with client_for(quiet) as fathom:
        await warehouse.load(fathom_source(fathom, start_date=date(2024, 1, 1), now=NOON,
                                           granularity="month", pageview_grouping=[]))
        visit(quiet, datetime(2024, 3, 25, 9, tzinfo=timezone.utc), "/")
        visit(quiet, datetime(2024, 4, 1, 9, tzinfo=timezone.utc), "/")
        before = len(report_queries(quiet))
        await warehouse.load(fathom_source(fathom, start_date=date(2024, 1, 1),
                                           now=datetime(2024, 4, 2, tzinfo=timezone.utc),
                                           granularity="month", pageview_grouping=[]))
    asked = report_queries(quiet)[before:]
    assert {q["date_from"][:10] for q in asked} == {"2024-03-01"}
    assert warehouse.rows("select strftime(date, '%Y-%m'), pageviews from fathom.pageviews"
                          " order by 1") == [("2024-01", 1), ("2024-02", 1), ("2024-03", 2),
                                             ("2024-04", 1)]


async def test_shards_on_one_pipeline_each_keep_their_own_state(
    quiet: FakeFathom, warehouse: Warehouse
) -> None:
    sites = [quiet.store.add_site(f"Site {i}").id for i in range(6)]
    for site in sites:
        visit(quiet, datetime(2024, 3, 2, 9, tzinfo=timezone.utc), "/", site_id=site)
    async with client_for(quiet) as fathom:
        for index in (0, 1):
            await warehouse.load(fathom_source(fathom, start_date=date(2024, 3, 1), now=NOON,
                                               shard=(index, 2), sites=sites))
            if index == 0:  # a real split: shard 0 loaded some sites, not all
                [(first,)] = warehouse.rows("select count(*) from fathom.pageviews")
                assert 0 < first < len(sites)
    # Both shards loaded their sites' history: shard 0 did not move shard 1's start.
    loaded = warehouse.rows("select site_id from fathom.pageviews")
    assert sorted(site for (site,) in loaded) == sorted(sites)


class SpentWindows(RateLimitBackend):
    """A limiter whose every window is spent for the next minute.

    A wait with a deadline fails at once, as `RateLimits` does when the next slot
    lies beyond it; a wait without one is granted (the minute it would take is
    skipped: dlt runs the source on its own loop, where no fake clock reaches).
    """

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, float | None]] = []

    async def acquire(self, bucket: Bucket, *, priority: Priority = "interactive",
                      timeout: float | None = None) -> Permit:
        self.asked.append((bucket, priority, timeout))
        if timeout is not None:
            raise AcquireTimeoutError(bucket, timeout, next_slot_in=60.0)
        return Permit(bucket)

    async def observe(self, bucket: Bucket, feedback: ServerFeedback) -> None:
        return None

    def snapshot(self) -> dict[str, BucketSnapshot]:
        return {bucket: BucketSnapshot(limit=limit, period=60.0, sent_in_window=limit,
                                       waiting={"interactive": 0, "bulk": 0},
                                       next_slot_in=60.0, paused_for=0.0)
                for bucket, limit in (("entity", 33), ("reports", 10))}


async def test_a_load_waits_out_full_windows_whatever_the_clients_acquire_timeout(
    quiet: FakeFathom, warehouse: Warehouse
) -> None:
    visit(quiet, datetime(2024, 3, 2, 9, tzinfo=timezone.utc), "/a")
    spent = SpentWindows()
    # A web app's client: a short acquire_timeout, as the docs advise.
    async with FathomClient(quiet.token, base_url=quiet.url, rate_limits=spent,
                            acquire_timeout=0.5) as fathom:
        info = await warehouse.load(fathom_source(fathom, start_date=date(2024, 3, 1),
                                                  now=NOON))
    assert not info.has_failed_jobs
    assert warehouse.rows("select pathname, pageviews from fathom.pageviews") == [("/a", 1)]
    assert {bucket for bucket, _, _ in spent.asked} == {"entity", "reports"}
    assert {(priority, timeout) for _, priority, timeout in spent.asked} == {("bulk", None)}
