"""Functional tests of the bulk export against the emulator."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from fathom_async import (
    AcquireTimeoutError,
    FathomClient,
    RateLimits,
    ServerError,
    ValidationError,
)
from fathom_async.export import (
    Export,
    ExportSpec,
    Manifest,
    PlanMismatchError,
    read_rows,
    run_export,
)
from fathom_async.export import _manifest as manifest_module
from fathom_async.export._spec import add_units, align, chunk_end, units_in
from fathom_async.testing import FakeFathom, Pageview
from tests.conftest import no_sleep

TODAY = datetime.now(timezone.utc).date()


def make_spec(**kwargs: Any) -> ExportSpec:
    """An export of the last 61 days (the emulator's demo traffic covers 90)."""
    return ExportSpec(date_from=TODAY - timedelta(days=60), date_to=TODAY, **kwargs)


@pytest.fixture
async def fake() -> AsyncIterator[FakeFathom]:
    async with FakeFathom(seed=7, pageviews=6_000, enforce_rate_limits=False) as server:
        yield server


@pytest.fixture
async def fathom(fake: FakeFathom) -> AsyncIterator[FathomClient]:
    async with FathomClient(fake.token, base_url=fake.url, rate_limits=None,
                            strict=True) as client:
        yield client


class Crash(Exception):
    """Stands for a process dying between two steps."""


def rows_of(directory: Path, prefix: str = "") -> Counter[str]:
    manifest = Manifest(directory)
    assert manifest.load()
    found: Counter[str] = Counter()
    for record in manifest.chunks.values():
        if record.series.startswith(prefix):
            for row in read_rows(directory / record.file):
                found[json.dumps(row, sort_keys=True)] += 1
    return found


def data_files(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*") if p.is_file() and p.name != "manifest.jsonl"}


async def test_an_export_writes_every_part_with_a_checked_manifest(
    fathom: FathomClient, fake: FakeFathom, tmp_path: Path
) -> None:
    summary = await run_export(fathom, make_spec(), tmp_path)
    manifest = Manifest(tmp_path)
    assert manifest.load()
    assert summary.chunks == len(manifest.chunks)
    assert summary.rows == sum(r.rows for r in manifest.chunks.values()) > 0
    assert data_files(tmp_path) == set(manifest.files())
    for record in manifest.chunks.values():
        data = (tmp_path / record.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record.sha256
        assert len(read_rows(tmp_path / record.file)) == record.rows
    sites = read_rows(tmp_path / "sites.jsonl")
    assert sorted(s["id"] for s in sites) == sorted(site.id for site in fake.sites)
    for site in fake.sites:
        assert (tmp_path / "events" / f"{site.id}.jsonl").exists()
        assert (tmp_path / "milestones" / f"{site.id}.jsonl").exists()
    assert summary.truncated == ()


async def test_rows_equal_direct_queries(fathom: FathomClient, fake: FakeFathom,
                                         tmp_path: Path) -> None:
    spec = make_spec(entities=("pageviews", "event_conversions"))
    await run_export(fathom, spec, tmp_path)
    expected: Counter[str] = Counter()
    for site in fake.sites:
        day = spec.date_from
        while day <= spec.date_to:  # a week at a time stays far under 1000 rows
            last = min(day + timedelta(days=6), spec.date_to)
            for row in await fathom.aggregations.query(
                entity="pageview", site_id=site.id, aggregates=list(spec.pageview_aggregates),
                date_grouping="day", field_grouping=["pathname"], date_from=day, date_to=last,
                limit=1000,
            ):
                expected[json.dumps({"site_id": site.id, **row.to_dict()}, sort_keys=True)] += 1
            events = [e async for e in fathom.events.list(site.id)]
            for name in sorted({e.name for e in events}):
                for row in await fathom.aggregations.query(
                    entity="event", site_id=site.id, entity_name=name,
                    aggregates=list(spec.event_aggregates), date_grouping="day",
                    date_from=day, date_to=last, limit=1000,
                ):
                    expected[json.dumps({"site_id": site.id, "event_name": name,
                                         **row.to_dict()}, sort_keys=True)] += 1
            day = last + timedelta(days=1)
    assert rows_of(tmp_path) == expected
    assert sum(expected.values()) > 100


async def test_a_crash_between_file_and_journal_resumes_without_loss_or_duplicates(
    fathom: FathomClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec()
    await run_export(fathom, spec, tmp_path / "whole")

    original = Manifest.record_chunk
    budget = {"left": 5}

    def crash_after_five(self: Manifest, record: manifest_module.ChunkRecord) -> None:
        if budget["left"] == 0:
            raise Crash  # the file is renamed, the journal line never written
        budget["left"] -= 1
        original(self, record)

    monkeypatch.setattr(Manifest, "record_chunk", crash_after_five)
    with pytest.raises(Crash):
        await run_export(fathom, spec, tmp_path / "resumed", concurrency=1)
    monkeypatch.setattr(Manifest, "record_chunk", original)
    summary = await run_export(fathom, spec, tmp_path / "resumed")
    assert summary.chunks_resumed == 5
    assert rows_of(tmp_path / "resumed") == rows_of(tmp_path / "whole")
    manifest = Manifest(tmp_path / "resumed")
    manifest.load()
    assert data_files(tmp_path / "resumed") == set(manifest.files())


async def test_a_torn_journal_line_is_ignored(fathom: FathomClient, tmp_path: Path) -> None:
    spec = make_spec(entities=("pageviews",))
    await run_export(fathom, spec, tmp_path / "whole")
    await run_export(fathom, spec, tmp_path / "torn")
    journal = tmp_path / "torn" / "manifest.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    summary = await run_export(fathom, spec, tmp_path / "torn")
    assert summary.chunks_resumed == len(lines) - 3  # header, discovery, torn chunk
    assert summary.requests == summary.report_requests > 0  # discovery is not redone
    assert rows_of(tmp_path / "torn") == rows_of(tmp_path / "whole")


async def test_a_changed_plan_is_refused(fathom: FathomClient, tmp_path: Path) -> None:
    await run_export(fathom, make_spec(entities=("sites",)), tmp_path)
    with pytest.raises(PlanMismatchError, match="entities"):
        await run_export(fathom, make_spec(entities=("events",)), tmp_path)


async def test_shards_split_the_work_without_overlap(
    fathom: FathomClient, tmp_path: Path
) -> None:
    spec = make_spec()
    await run_export(fathom, spec, tmp_path / "whole")
    shared = tmp_path / "shared"
    for index in range(3):
        await run_export(fathom, spec, shared, shard=(index, 3))
    combined: Counter[str] = Counter()
    for index in range(3):
        combined += rows_of(shared / f"shard-{index}-of-3")
    assert combined == rows_of(tmp_path / "whole")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
async def test_other_formats_hold_the_same_rows(
    fathom: FathomClient, tmp_path: Path, fmt: str
) -> None:
    spec_json = make_spec(entities=("pageviews",))
    spec_other = make_spec(entities=("pageviews",), format=fmt)
    await run_export(fathom, spec_json, tmp_path / "json")
    await run_export(fathom, spec_other, tmp_path / fmt)
    want = sorted((r["site_id"], r["date"], r["pathname"], int(r["pageviews"]))
                  for r in _all_rows(tmp_path / "json"))
    got = sorted((r["site_id"], r["date"], r["pathname"], int(r["pageviews"]))
                 for r in _all_rows(tmp_path / fmt))
    assert got == want


def _all_rows(directory: Path) -> list[dict[str, Any]]:
    manifest = Manifest(directory)
    manifest.load()
    return [row for path in manifest.files() for row in read_rows(path)]


async def test_a_full_chunk_is_split_and_a_full_day_is_marked_truncated(
    tmp_path: Path,
) -> None:
    async with FakeFathom(seed=1, demo=False, enforce_rate_limits=False) as fake:
        site = fake.store.add_site("Busy")
        day1 = datetime(2024, 3, 4, 12, tzinfo=timezone.utc)
        views = [Pageview(site_id=site.id, timestamp=day1, pathname=f"/a/{i}") for i in range(600)]
        views += [Pageview(site_id=site.id, timestamp=day1 + timedelta(days=1), pathname=f"/b/{i}")
                  for i in range(600)]
        views += [Pageview(site_id=site.id, timestamp=day1 + timedelta(days=3), pathname=f"/c/{i}")
                  for i in range(1005)]
        fake.store.add_pageviews(views)
        spec = ExportSpec(date_from=date(2024, 3, 1), date_to=date(2024, 3, 10),
                          entities=("pageviews",), pageview_aggregates=("pageviews",))
        async with FathomClient(fake.token, base_url=fake.url, rate_limits=None) as fathom:
            export = Export(fathom, spec, tmp_path)
            events = [event async for event in export.progress()]
    summary = export.summary
    assert summary is not None
    # The first chunk (Mar 1-7) came back full and was asked again in smaller parts,
    # down to single days; only Mar 7 (1005 distinct paths) stayed full: that day is
    # marked, not cut silently.
    assert summary.truncated == (f"pageviews/{site.id}@2024-03-07",)
    manifest = Manifest(tmp_path)
    manifest.load()
    # Every finished part has its own journal line, so an interrupt keeps it.
    parts = sorted((r.start, r.end) for r in manifest.chunks.values())
    assert parts[0][0] == date(2024, 3, 1)
    assert (date(2024, 3, 7), date(2024, 3, 8)) in parts
    assert all(a[1] == b[0] for a, b in pairwise(parts))
    assert parts[-1][1] == date(2024, 3, 11)
    rows = _all_rows(tmp_path)
    per_day = Counter(row["date"] for row in rows)
    assert per_day["2024-03-04"] == 600
    assert per_day["2024-03-05"] == 600
    assert per_day["2024-03-07"] == 1000
    assert events[-1].truncated == 1
    assert [e.kind for e in events][:2] == ["started", "discovered"]
    assert events[-1].kind == "finished"


async def test_progress_counts_rise_and_leaving_early_stops_the_export(
    fathom: FathomClient, tmp_path: Path
) -> None:
    export = Export(fathom, make_spec(), tmp_path, concurrency=1)
    seen = []
    async for event in export.progress():
        seen.append(event)
        if len(seen) == 4:
            break
    assert [e.requests_done for e in seen] == sorted(e.requests_done for e in seen)
    assert export.summary is None
    resumed = await run_export(fathom, make_spec(), tmp_path)
    assert resumed.chunks_resumed >= 2


async def test_errors_stop_the_export_and_keep_finished_work(
    fake: FakeFathom, fathom: FathomClient, tmp_path: Path
) -> None:
    spec = make_spec(sites=(fake.site_id,), entities=("sites", "pageviews"))
    fake.inject("GET /aggregations", "error_500", times=100)
    with pytest.raises(ServerError):
        await run_export(fathom.with_options(max_retries=0), spec, tmp_path, concurrency=1)
    manifest = Manifest(tmp_path)
    manifest.load()
    assert list(manifest.chunks) == ["sites"]
    with pytest.raises(ValidationError, match="sites"):
        await run_export(fathom, make_spec(sites=("NOSUCH",)), tmp_path / "x")


def test_unit_arithmetic() -> None:
    assert align(date(2024, 5, 17), "month") == date(2024, 5, 1)
    assert align(date(2024, 5, 17), "year") == date(2024, 1, 1)
    assert add_units(date(2024, 11, 1), 3, "month") == date(2025, 2, 1)
    assert add_units(date(2024, 1, 1), 2, "year") == date(2026, 1, 1)
    assert units_in(date(2024, 1, 31), date(2024, 3, 1), "month") == 2
    assert units_in(date(2024, 1, 1), date(2024, 1, 8), "hour") == 7
    assert chunk_end(date(2024, 1, 1), 30, date(2024, 12, 31), "hour") == date(2024, 1, 7)
    assert chunk_end(date(2024, 1, 15), 1, date(2024, 12, 31), "month") == date(2024, 2, 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"date_from": date(2024, 2, 1), "date_to": date(2024, 1, 1)}, "date_to"),
        ({"date_from": datetime(2024, 1, 1), "date_to": date(2024, 1, 2)}, "date_from"),
        ({"entities": ("sites", "visitors")}, "entities"),
        ({"entities": ()}, "entities"),
        ({"granularity": "week"}, "granularity"),
        ({"pageview_aggregates": ("conversions",)}, "pageview_aggregates"),
        ({"pageview_grouping": "pathname"}, "pageview_grouping"),
        ({"event_grouping": ("pathname", "pathname")}, "event_grouping"),
        ({"format": "xlsx"}, "format"),
        ({"sites": ()}, "sites"),
    ],
)
def test_spec_validation(kwargs: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"date_from": date(2024, 1, 1), "date_to": date(2024, 1, 31)}
    with pytest.raises(ValidationError) as info:
        ExportSpec(**{**base, **kwargs})
    assert info.value.field == field


async def test_export_arguments_are_checked(fathom: FathomClient, tmp_path: Path) -> None:
    spec = make_spec()
    for shard in [(1, 1), (0, 0), (-1, 2), "0/2", (0.0, 2)]:
        with pytest.raises(ValidationError, match="shard"):
            Export(fathom, spec, tmp_path, shard=shard)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="concurrency"):
        Export(fathom, spec, tmp_path, concurrency=0)
    with pytest.raises(ValidationError, match="spec"):
        Export(fathom, {"date_from": "x"}, tmp_path)  # type: ignore[arg-type]


async def test_an_export_through_faults_has_the_rows_of_a_clean_one(tmp_path: Path) -> None:
    async with FakeFathom(seed=21, pageviews=4_000, enforce_rate_limits=False) as fake, \
            FathomClient(fake.token, base_url=fake.url, rate_limits=None,
                         max_retries=12) as fathom:
        fathom._shared.sleep = no_sleep
        spec = make_spec()
        fake.inject("GET /aggregations", "error_500", probability=0.2)
        fake.inject("GET /aggregations", "rate_limit", times=6)
        fake.inject("GET /sites*", "reset_before_commit", probability=0.2)
        fake.inject("GET /aggregations", "truncated_body", probability=0.1)
        fake.inject("GET /aggregations", "error_503", probability=0.1)
        await run_export(fathom, spec, tmp_path / "faulty")
        assert fake.faults.total > 5
        fake.faults.clear()
        await run_export(fathom, spec, tmp_path / "clean")
    assert rows_of(tmp_path / "faulty") == rows_of(tmp_path / "clean")



@pytest.mark.looptime
async def test_interactive_calls_overtake_a_running_export(tmp_path: Path) -> None:
    # Fathom's real limits, in fake loop time (the emulator counts in loop time too).
    async with FakeFathom(seed=5, pageviews=3_000) as fake, \
            FathomClient(fake.token, base_url=fake.url) as fathom:
        limits = fathom.rate_limits
        assert limits is not None
        loop = asyncio.get_running_loop()
        start = loop.time()
        spec = make_spec(granularity="hour", entities=("pageviews", "event_conversions"))
        export = asyncio.create_task(run_export(fathom, spec, tmp_path))
        while limits.snapshot()["reports"].waiting["bulk"] == 0:  # noqa: ASYNC110
            await asyncio.sleep(1)  # fake time: wait until bulk work is queued
        asked = loop.time()
        await fathom.aggregations.query(entity="pageview", site_id=fake.site_id,
                                        aggregates="pageviews")
        answered = loop.time()
        summary = await export
        finished = loop.time()
    assert answered - asked <= 61  # the next free slot, not the end of the backlog
    assert finished - start > 120  # the export still had minutes of work queued
    assert summary.requests > 30
    assert [r.status for r in fake.store.requests].count(429) == 0


def _report_queries(fake: FakeFathom) -> list[tuple[str, str]]:
    return [(r.query["date_from"][:10], r.query["date_to"][:10])
            for r in fake.store.requests if r.path.endswith("/aggregations")]


async def test_an_interrupt_keeps_each_finished_half_of_a_split_chunk(tmp_path: Path) -> None:
    async with FakeFathom(seed=1, demo=False, enforce_rate_limits=False) as fake:
        site = fake.store.add_site("Busy")
        noon = datetime(2024, 3, 2, 12, tzinfo=timezone.utc)
        fake.store.add_pageviews(
            Pageview(site_id=site.id, timestamp=noon + timedelta(days=day), pathname=f"/{i}")
            for day in (0, 3) for i in range(600))
        spec = ExportSpec(date_from=date(2024, 3, 1), date_to=date(2024, 3, 7),
                          entities=("pageviews",), pageview_aggregates=("pageviews",))
        async with FathomClient(fake.token, base_url=fake.url, rate_limits=None) as fathom:
            async for event in Export(fathom, spec, tmp_path, concurrency=1).progress():
                if event.kind == "chunk":
                    break  # stopped after the first half of the full week was journaled
            first_run = _report_queries(fake)
            assert first_run == [("2024-03-01", "2024-03-07"), ("2024-03-01", "2024-03-03")]
            summary = await run_export(fathom, spec, tmp_path)
        resumed = _report_queries(fake)[len(first_run):]
    assert summary.chunks_resumed == 1
    assert ("2024-03-01", "2024-03-03") not in resumed  # the paid-for half is kept
    assert resumed[0][0] == "2024-03-04"
    assert summary.rows == 1200


async def test_a_sparse_series_grows_its_chunks_step_by_step(tmp_path: Path) -> None:
    async with FakeFathom(seed=1, demo=False, enforce_rate_limits=False) as fake:
        site = fake.store.add_site("Sparse")
        start = datetime(2024, 11, 1, 12, tzinfo=timezone.utc)  # traffic in the last 2 months
        fake.store.add_pageviews(
            Pageview(site_id=site.id, timestamp=start + timedelta(days=day), pathname=f"/{i}")
            for day in range(61) for i in range(70))
        spec = ExportSpec(date_from=date(2024, 1, 1), date_to=date(2024, 12, 31),
                          entities=("pageviews",), pageview_aggregates=("pageviews",))
        async with FathomClient(fake.token, base_url=fake.url, rate_limits=None) as fathom:
            summary = await run_export(fathom, spec, tmp_path)
        spans = [(date.fromisoformat(b) - date.fromisoformat(a)).days + 1
                 for a, b in _report_queries(fake)]
    assert summary.rows == 61 * 70
    assert summary.truncated == ()
    # Empty probes widen 7, 14, 28, ... days; no request asks for the rest of the year.
    assert spans[:4] == [7, 14, 28, 56]
    assert all(b <= 2 * a for a, b in pairwise(spans))
    assert summary.report_requests <= 16  # 28 when a full answer was only halved


async def test_chunk_events_carry_their_record_and_a_resume_names_what_it_found(
    fathom: FathomClient, tmp_path: Path
) -> None:
    spec = make_spec(entities=("sites", "pageviews"))
    first = Export(fathom, spec, tmp_path, concurrency=1)
    seen = []
    async for event in first.progress():
        if event.kind == "chunk":
            assert event.record is not None
            assert event.record.key in first.manifest.chunks  # journaled before told
            seen.append(event.record)
            if len(seen) == 2:
                break
    assert first.resumed_chunks == ()
    again = Export(fathom, spec, tmp_path)
    records = [event.record async for event in again.progress() if event.record is not None]
    assert again.resumed_chunks[:2] == tuple(seen)  # the journal's order is the events'
    assert {r.key for r in records}.isdisjoint(r.key for r in seen)  # not redone


@pytest.mark.looptime
async def test_an_export_waits_out_a_full_window_whatever_the_clients_acquire_timeout(
    tmp_path: Path,
) -> None:
    # A web app's client (a short acquire_timeout, as the docs advise) whose report
    # window is already spent: bulk work waits for its slots instead of failing.
    limits = RateLimits(reports=(2, 60))
    async with FakeFathom(seed=5, pageviews=500) as fake, \
            FathomClient(fake.token, base_url=fake.url, rate_limits=limits,
                         acquire_timeout=0.5) as fathom:
        for limit in (1, 2):
            await fathom.aggregations.query(entity="pageview", site_id=fake.site_id,
                                            aggregates="pageviews", limit=limit)
        assert limits.snapshot()["reports"].next_slot_in > 0.5
        loop = asyncio.get_running_loop()
        start = loop.time()
        spec = make_spec(entities=("pageviews",), sites=(fake.site_id,))
        summary = await run_export(fathom, spec, tmp_path)
        waited = loop.time() - start
        # The client itself keeps its deadline: a dashboard call still fails fast.
        with pytest.raises(AcquireTimeoutError):
            await fathom.aggregations.query(entity="pageview", site_id=fake.site_id,
                                            aggregates="pageviews", limit=3)
    assert summary.report_requests > 0
    assert summary.rows > 0
    assert waited >= 59  # it waited for the window to turn over
    assert [r.status for r in fake.store.requests].count(429) == 0
