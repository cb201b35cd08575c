"""Running an export: discover, chunk, fetch at bulk priority, write, journal.

The plan has three kinds of work. Entity parts (the site list, each site's events and
milestones) are one chunk each. Report parts are *series* (pageviews of a site, the
conversions of one event) over the date range, cut into chunks on unit boundaries.
Each series walks its range in order; a chunk's size is learned from the rows per unit
the series has shown so far, aiming at 80% of the API's 1000-row cap, and is at most
twice the last one (after empty probes a sparse series widens 7, 14, 28... days
instead of asking for the rest of the range at once). A chunk that comes back with
1000 rows may be cut: it is asked for again in a smaller part, sized by the rows per
unit that answer showed and ending no later than its last unit, down to a single unit,
where a still-full answer is marked `truncated` in the manifest (and reported) rather
than silently cut. Every finished part is journaled as soon as it is written, so an
interrupt keeps it.

All series run at once through the client's limiter at "bulk" priority, so the
reports bucket always has a waiter while report work remains, and an interactive
caller sharing the client's limiter is served first. Chunks are written atomically
and journaled (see `_manifest`), which makes any interruption resumable.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import attrs

from .._client import FathomClient
from .._exceptions import ValidationError
from .._frames import AggregationRows
from ._manifest import ChunkRecord, Manifest
from ._spec import (
    MAX_HOUR_DAYS,
    ExportSpec,
    add_units,
    align,
    chunk_end,
    unit_start,
    units_in,
)
from ._writers import columns_of, write_chunk

__all__ = ["Export", "ExportProgress", "ExportSummary", "run_export"]

T = TypeVar("T")
ROW_CAP = 1000
TARGET_ROWS = 800
FIRST_UNITS = {"hour": 1, "day": 7, "month": 1, "year": 1}
ROWS_PER_UNIT_UNGROUPED = {"hour": 24, "day": 1, "month": 1, "year": 1}
ProgressKind = Literal["started", "discovered", "chunk", "finished"]


@attrs.frozen
class ExportProgress:
    """Where an export stands. `budget` is the slots left now in each bucket's window.

    A `chunk` event carries the `record` of the chunk it reports, already journaled:
    a consumer can read that chunk's rows at once (the warehouse loader does).
    """

    kind: ProgressKind
    requests_done: int
    requests_planned: int
    rows: int
    chunks_done: int
    chunks_resumed: int
    truncated: int
    budget: dict[str, int | None]
    eta_seconds: float | None
    message: str = ""
    record: ChunkRecord | None = None


@attrs.frozen
class ExportSummary:
    """What a finished export produced."""

    directory: Path
    manifest: Path
    rows: int
    chunks: int
    chunks_resumed: int
    requests: int
    report_requests: int
    truncated: tuple[str, ...]
    files: tuple[Path, ...]


def _segment(value: str) -> str:
    """A path segment for an id or name that cannot escape its folder."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", value).strip("-")[:40] or "x"
    return f"{slug}-{digest}"


@attrs.frozen
class _Series:
    """One report series: the rows of one query over the whole date range."""

    kind: Literal["pageviews", "event_conversions"]
    site_id: str
    event_name: str | None = None

    @property
    def key(self) -> str:
        if self.event_name is None:
            return f"{self.kind}/{self.site_id}"
        return f"{self.kind}/{self.site_id}/{quote(self.event_name, safe='')}"

    @property
    def folder(self) -> Path:
        folder = Path(self.kind) / _segment(self.site_id)
        return folder / _segment(self.event_name) if self.event_name is not None else folder


def _in_shard(key: str, shard: tuple[int, int]) -> bool:
    index, count = shard
    return zlib.crc32(key.encode()) % count == index


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    try:
        index, count = shard
    except (TypeError, ValueError):
        raise ValidationError("shard", shard, "(index, count) such as (0, 4)") from None
    valid = all(isinstance(v, int) and not isinstance(v, bool) for v in (index, count))
    if not valid or count < 1 or not 0 <= index < count:
        raise ValidationError("shard", shard, "0 <= index < count, e.g. (0, 4) for 0/4")
    return index, count


def bulk_view(client: FathomClient) -> FathomClient:
    """The client at bulk priority, waiting for its slots as long as that takes.

    The client's own `acquire_timeout` is meant for a caller who would rather fail
    than wait (a web request); bulk work behind a full window has nothing better to
    do than wait, so a dashboard's client passed to an export must not fail it.
    """
    return client.with_options(priority="bulk", acquire_timeout=None)


class Export:
    """One export (or one shard of it) into `directory`; resumable by running it again.

    Iterate `progress()` for `ExportProgress` events, or `await run()` for the summary.
    It uses the client's limiter at bulk priority and without its `acquire_timeout`
    (`bulk_view`): an export waits for its slots however full the windows are.
    """

    def __init__(
        self,
        client: FathomClient,
        spec: ExportSpec,
        directory: str | Path,
        *,
        shard: tuple[int, int] = (0, 1),
        concurrency: int = 16,
    ) -> None:
        if not isinstance(spec, ExportSpec):
            raise ValidationError("spec", spec, "an ExportSpec")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError("concurrency", concurrency, "an int >= 1")
        self.client = bulk_view(client)
        self.spec = spec
        self.directory = Path(directory)
        self.shard = check_shard(shard)
        self.concurrency = concurrency
        self.manifest = Manifest(self.directory, self.shard)
        self._requests = 0
        self._report_requests = 0
        self._rows = 0
        self._chunks = 0
        self._resumed = 0
        #: The chunks a resumed export found finished (set before its `started` event).
        self.resumed_chunks: tuple[ChunkRecord, ...] = ()
        self._truncated: list[str] = []
        self._planned: dict[str, int] = {}
        self._events: asyncio.Queue[ExportProgress | None] | None = None
        self.summary: ExportSummary | None = None

    # -- public ------------------------------------------------------------------------

    async def run(self) -> ExportSummary:
        """Run the export to its end (or raise) and return its summary."""
        async for _ in self.progress():
            pass
        assert self.summary is not None
        return self.summary

    async def progress(self) -> AsyncIterator[ExportProgress]:
        """Run the export, yielding progress; leaving the loop early stops the export."""
        self._events = asyncio.Queue()
        task = asyncio.ensure_future(self._run())
        getter: asyncio.Future[ExportProgress | None] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(self._events.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    event = getter.result()
                    if event is None:
                        break
                    yield event
                    continue
                getter.cancel()
                while not self._events.empty():
                    event = self._events.get_nowait()
                    if event is not None:
                        yield event
                break
            await task  # raises what the export raised
        finally:
            if getter is not None and not getter.done():
                getter.cancel()  # cancelled while waiting: never leave it pending
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    # -- running -----------------------------------------------------------------------

    async def _run(self) -> None:
        spec_json, fingerprint = self.spec.to_json(), self.spec.fingerprint
        resumed = await asyncio.to_thread(self.manifest.load)
        self.manifest.check(spec_json, fingerprint)
        if resumed:
            await asyncio.to_thread(self.manifest.remove_leftovers)
            self.resumed_chunks = tuple(self.manifest.chunks.values())
            self._resumed = len(self.resumed_chunks)
            self._rows = sum(r.rows for r in self.manifest.chunks.values())
        else:
            self.manifest.start(spec_json, fingerprint)
        self._emit("started", "resuming" if resumed else "starting")

        fetched: dict[str, list[dict[str, Any]]] = {}
        if self.manifest.discovery is None:
            found = await self._discover(fetched)
            self.manifest.record_discovery(found)
        assert self.manifest.discovery is not None
        discovery: dict[str, Any] = self.manifest.discovery
        self._emit("discovered", f"{len(discovery['sites'])} sites")

        jobs: list[Callable[[], Awaitable[None]]] = []
        wanted = set(self.spec.entities)
        sites: list[str] = discovery["sites"]
        if "sites" in wanted:
            jobs.append(partial(self._entity_chunk, "sites", None, fetched))
        for site in sites:
            for kind in ("events", "milestones"):
                if kind in wanted:
                    jobs.append(partial(self._entity_chunk, kind, site, fetched))
            if "pageviews" in wanted:
                jobs.append(partial(self._series, _Series("pageviews", site)))
            if "event_conversions" in wanted:
                for name in discovery["events"].get(site, []):
                    jobs.append(partial(self._series, _Series("event_conversions", site, name)))
        gate = asyncio.Semaphore(self.concurrency)

        async def guarded(job: Callable[[], Awaitable[None]]) -> None:
            async with gate:
                await job()

        tasks = [asyncio.ensure_future(guarded(job)) for job in jobs]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.summary = ExportSummary(
            directory=self.directory,
            manifest=self.manifest.path,
            rows=self._rows,
            chunks=len(self.manifest.chunks),
            chunks_resumed=self._resumed,
            requests=self._requests,
            report_requests=self._report_requests,
            truncated=tuple(self._truncated),
            files=tuple(self.manifest.files()),
        )
        self._emit("finished", "done")
        assert self._events is not None
        self._events.put_nowait(None)

    async def _discover(self, fetched: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """Sites (and their event names) the plan covers; recorded so resumes agree."""
        all_sites: list[dict[str, Any]] = []
        async for page in self.client.sites.list().pages():
            self._requests += 1
            all_sites += [dict(site.raw) for site in page.data]
        if self.spec.sites is None:
            chosen = all_sites
        else:
            chosen = pick_sites({str(site.get("id")): site for site in all_sites},
                                self.spec.sites)
        fetched["sites"] = chosen
        site_ids = [str(site["id"]) for site in chosen]
        events: dict[str, list[str]] = {}
        if {"events", "event_conversions"} & set(self.spec.entities):

            async def names(site: str) -> None:
                rows = await self._list_all("events", site)
                fetched[f"events/{site}"] = rows
                events[site] = sorted({str(row["name"]) for row in rows if row.get("name")})

            await asyncio.gather(*(names(site) for site in site_ids))
        return {"sites": site_ids, "events": {s: events.get(s, []) for s in site_ids}}

    async def _list_all(self, kind: str, site: str) -> list[dict[str, Any]]:
        resource = self.client.events if kind == "events" else self.client.milestones
        rows: list[dict[str, Any]] = []
        async for page in resource.list(site).pages():
            self._requests += 1
            rows += [{"site_id": site, **page_item.raw} for page_item in page.data]
        return rows

    async def _entity_chunk(
        self, kind: str, site: str | None, fetched: dict[str, list[dict[str, Any]]]
    ) -> None:
        key = kind if site is None else f"{kind}/{site}"
        if not _in_shard(key, self.shard) or key in self.manifest.chunks:
            return
        self._planned[key] = 1
        rows = fetched.pop(key, None)
        if rows is None:
            if kind == "sites":
                rows = await self._refetch_sites()
            else:
                assert site is not None
                rows = await self._list_all(kind, site)
        ext = self.spec.format
        file = Path(f"{kind}.{ext}") if site is None else Path(kind) / f"{_segment(site)}.{ext}"
        await self._write(key, key, file, rows, ["site_id", "id"] if site else ["id"])
        self._planned[key] = 0

    async def _refetch_sites(self) -> list[dict[str, Any]]:
        wanted = set(self.manifest.discovery["sites"]) if self.manifest.discovery else set()
        rows: list[dict[str, Any]] = []
        async for page in self.client.sites.list().pages():
            self._requests += 1
            rows += [dict(site.raw) for site in page.data if site.id in wanted]
        return rows

    async def _series(self, series: _Series) -> None:
        if not _in_shard(series.key, self.shard):
            return
        spec = self.spec
        start, end = spec.date_from, spec.date_to + timedelta(days=1)
        done = sorted(
            (r.start, r.end) for r in self.manifest.chunks.values()
            if r.series == series.key and r.start is not None and r.end is not None
        )
        gaps = _gaps(start, end, done)
        grouping = spec.pageview_grouping if series.kind == "pageviews" else spec.event_grouping
        per_unit = None if grouping else float(ROWS_PER_UNIT_UNGROUPED[spec.granularity])
        last_units: int | None = None
        for gap_start, gap_end in gaps:
            cursor, ceiling = gap_start, gap_end
            while cursor < gap_end:
                units = self._units_for(per_unit, last_units)
                self._planned[series.key] = self._estimate(cursor, end, units)
                stop = chunk_end(cursor, units, ceiling, spec.granularity)
                rows = await self._query(series, cursor, stop)
                units = max(units_in(cursor, stop, spec.granularity), 1)
                first, last = _span(rows, cursor, stop, spec.granularity)
                if len(rows) >= ROW_CAP and units > 1:
                    # Full, so maybe cut. Ask again for less, sized by what the answer
                    # shows: its rows span first..last, and no more than up to `last`
                    # (the answer's last unit may be the one cut) is asked for next.
                    observed = units_in(first, add_units(last, 1, spec.granularity),
                                        spec.granularity)
                    per_unit = len(rows) / max(observed, 1)
                    ceiling = last if cursor < last < stop else chunk_end(
                        cursor, units // 2, stop, spec.granularity)
                    last_units = None
                    continue
                # Every finished part is journaled at once: an interrupt keeps it.
                await self._write_part(series, cursor, stop, rows,
                                       truncated=len(rows) >= ROW_CAP)
                if len(rows) < ROW_CAP:
                    # Rows per unit where the rows are: a chunk whose traffic starts
                    # halfway would otherwise halve the estimate and overshoot next time.
                    density = len(rows) / max(units_in(first, stop, spec.granularity), 1)
                    per_unit = density if per_unit is None else max(per_unit * 0.5, density)
                last_units = units
                cursor = stop
                if cursor >= ceiling:
                    ceiling = gap_end
        self._planned[series.key] = 0

    def _units_for(self, per_unit: float | None, last_units: int | None) -> int:
        """Units for the next chunk: aim at 80% of the row cap, and grow step by step.

        A chunk is at most twice the last one, so after empty probes a sparse series
        widens 7, 14, 28... days rather than asking for the rest of the range at once
        (which comes back full where the traffic starts and must be asked for again).
        """
        granularity = self.spec.granularity
        if per_unit is None:
            return FIRST_UNITS[granularity]
        if per_unit <= 0:
            wanted = 10_000
        else:
            exact = per_unit >= 1 and per_unit == int(per_unit)
            wanted = max(1, math.floor((ROW_CAP - 1 if exact else TARGET_ROWS) / per_unit))
        if last_units is not None:
            wanted = min(wanted, 2 * last_units)
        return wanted

    def _estimate(self, cursor: date, end: date, units: int) -> int:
        left = units_in(cursor, end, self.spec.granularity)
        if self.spec.granularity == "hour":
            units = min(units, MAX_HOUR_DAYS)
        return max(1, math.ceil(left / max(units, 1)))

    async def _write_part(
        self, series: _Series, start: date, stop: date, rows: list[dict[str, Any]],
        *, truncated: bool,
    ) -> None:
        spec = self.spec
        grouping = spec.pageview_grouping if series.kind == "pageviews" else spec.event_grouping
        key = f"{series.key}@{start.isoformat()}"
        file = series.folder / f"{start.isoformat()}_{stop.isoformat()}.{spec.format}"
        preferred = ["site_id", *(["event_name"] if series.event_name else []), "date",
                     *grouping]
        await self._write(key, series.key, file, rows, preferred,
                          start=start, end=stop, truncated=truncated)

    async def _query(self, series: _Series, start: date, stop: date) -> list[dict[str, Any]]:
        spec = self.spec
        last = stop - timedelta(days=1)
        common: dict[str, Any] = {
            "date_grouping": spec.granularity,
            "sort_by": "timestamp:asc",
            "date_from": datetime.combine(align(start, "day"), time(0, 0, 0)),
            "date_to": datetime.combine(last, time(23, 59, 59)),
            "limit": ROW_CAP,
        }
        rows: AggregationRows
        if series.kind == "pageviews":
            grouping = spec.pageview_grouping
            rows = await self.client.aggregations.query(
                entity="pageview", site_id=series.site_id,
                aggregates=list(spec.pageview_aggregates),
                field_grouping=list(grouping) or None, **common,
            )
            context: dict[str, Any] = {"site_id": series.site_id}
        else:
            grouping = spec.event_grouping
            rows = await self.client.aggregations.query(
                entity="event", site_id=series.site_id, entity_name=series.event_name,
                aggregates=list(spec.event_aggregates),
                field_grouping=list(grouping) or None, **common,
            )
            context = {"site_id": series.site_id, "event_name": series.event_name}
        self._requests += 1
        self._report_requests += 1
        return [{**context, **row} for row in rows.to_dicts()]

    async def _write(
        self,
        key: str,
        series: str,
        file: Path,
        rows: list[dict[str, Any]],
        preferred: list[str],
        *,
        start: date | None = None,
        end: date | None = None,
        truncated: bool = False,
    ) -> None:
        columns = columns_of(rows, preferred if rows else [])
        path = self.manifest.directory / file
        digest = await asyncio.to_thread(write_chunk, path, rows, columns, self.spec.format)
        record = ChunkRecord(key=key, series=series, file=file.as_posix(), rows=len(rows),
                             sha256=digest, start=start, end=end, truncated=truncated)
        await asyncio.to_thread(self.manifest.record_chunk, record)
        self._rows += len(rows)
        self._chunks += 1
        if truncated:
            self._truncated.append(key)
        self._emit("chunk", f"{key}: {len(rows)} rows" + (" (truncated)" if truncated else ""),
                   record)

    # -- progress ------------------------------------------------------------------------

    def _emit(self, kind: ProgressKind, message: str, record: ChunkRecord | None = None) -> None:
        if self._events is None:
            return
        budget: dict[str, int | None] = {"entity": None, "reports": None}
        eta: float | None = None
        limiter = self.client.rate_limits
        remaining_reports = sum(v for k, v in self._planned.items() if "/" in k and
                                k.split("/")[0] in ("pageviews", "event_conversions"))
        if limiter is not None:
            snapshot = limiter.snapshot()
            budget = {name: max(s.limit - s.sent_in_window, 0) for name, s in snapshot.items()}
            reports = snapshot["reports"]
            backlog = max(remaining_reports - (budget["reports"] or 0), 0)
            eta = backlog * reports.period / reports.limit + (
                reports.next_slot_in if backlog else 0.0)
        planned = self._requests + sum(self._planned.values())
        self._events.put_nowait(ExportProgress(
            kind=kind,
            requests_done=self._requests,
            requests_planned=planned,
            rows=self._rows,
            chunks_done=self._chunks,
            chunks_resumed=self._resumed,
            truncated=len(self._truncated),
            budget=budget,
            eta_seconds=eta,
            message=message,
            record=record,
        ))


def pick_sites(known: Mapping[str, T], wanted: Sequence[str]) -> list[T]:
    """The `wanted` sites, in that order, from those the token sees (by id).

    Raises `ValidationError` naming every wanted id the token cannot see.
    """
    missing = [site for site in wanted if site not in known]
    if missing:
        raise ValidationError("sites", missing, "sites this token can see")
    return [known[site] for site in wanted]


def _span(
    rows: list[dict[str, Any]], cursor: date, stop: date, granularity: str
) -> tuple[date, date]:
    """The first and last units an answer for [cursor, stop) has rows in.

    Dates of one granularity share one format, whose text sorts as time does, so only
    the smallest and largest are read as dates, not every row's (a million-row export
    would parse a million). Unreadable or out-of-range values count as `cursor`.
    """
    texts = [row["date"] for row in rows if isinstance(row.get("date"), str)]
    if not texts:
        return cursor, cursor
    ends = []
    for text in (min(texts), max(texts)):
        unit = unit_start(text, granularity)
        ends.append(unit if unit is not None and cursor <= unit < stop else cursor)
    return ends[0], ends[1]


def _gaps(start: date, end: date, done: list[tuple[date, date]]) -> list[tuple[date, date]]:
    gaps, cursor = [], start
    for a, b in done:
        if a > cursor:
            gaps.append((cursor, min(a, end)))
        cursor = max(cursor, b)
    if cursor < end:
        gaps.append((cursor, end))
    return [(a, b) for a, b in gaps if a < b]


async def run_export(
    client: FathomClient,
    spec: ExportSpec,
    directory: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    concurrency: int = 16,
) -> ExportSummary:
    """Run (or resume) an export to completion and return its summary."""
    return await Export(client, spec, directory, shard=shard, concurrency=concurrency).run()
