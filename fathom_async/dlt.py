"""Fathom in the warehouse: a dlt source, incremental, merged (extra `dlt`).

Run `fathom_source(...)` in any dlt pipeline, e.g.
`dlt.pipeline("fathom", destination="duckdb", dataset_name="fathom").run(fathom_source())`
(the guide's "Warehouse loading" page has complete programs).

Five resources, one table each: `sites`, `events` and `milestones` (the lists, merged
by id) and `pageviews`, `event_conversions` (aggregations merged on site, period
start and grouping values). Report rows are fetched by the bulk export's machinery
(`fathom_async.export`): its planning, chunk sizing under the 1000-row cap,
truncation handling and journal, at `"bulk"` priority through the client's limiter.

Incremental: the pipeline's dlt state keeps, per site, the start of the first
period that was still open at the last load (the period holding "now" on the
site's clock). A rerun fetches from there: the periods that closed since, and the
open one again, whose rows replace the old ones by primary key. No row is ever
duplicated. An interrupted load resumes: report chunks are journaled under the
pipeline's working directory and a rerun on the same day reads them back instead
of paying for them again.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Literal, cast

import attrs

try:
    import dlt
    from dlt.common.schema.typing import TColumnSchema
    from dlt.extract import DltSource
except ImportError as exc:  # pragma: no cover - exercised with dlt hidden
    raise ImportError(
        "fathom_async.dlt needs dlt: pip install 'fathom-async[dlt]'"
    ) from exc

from ._client import FathomClient, _check_base_url, _check_token
from ._converter import parse_timestamp
from ._dates import zone
from ._exceptions import ValidationError
from ._frames import INT_COLUMNS
from ._logging import logger
from ._types import EVENT_AGGREGATES, PAGEVIEW_AGGREGATES
from .export import (
    ChunkRecord,
    Export,
    ExportProgress,
    ExportSpec,
    PlanMismatchError,
    read_rows,
)
from .export._runner import _in_shard, _Series, bulk_view, check_shard, pick_sites
from .export._spec import ENTITIES, align, unit_start
from .types import DateGrouping, EventAggregate, FieldGrouping, PageviewAggregate

__all__ = ["RESOURCES", "fathom_source"]

RESOURCES: tuple[str, ...] = ENTITIES
"""The source's resources, and the tables they fill: the parts of an export, by the
same names."""
ReportKind = Literal["pageviews", "event_conversions"]
ProgressHook = Callable[[str, ExportProgress], None]
STAGING = "fathom-staging"


@attrs.frozen
class _Plan:
    """Everything the resources need, checked once when the source is made."""

    client: FathomClient | None
    token: str | None = attrs.field(repr=False)  # a secret: never in a repr
    base_url: str | None
    sites: tuple[str, ...] | None
    start_date: date
    end_date: date | None
    spec: ExportSpec
    shard: tuple[int, int]
    concurrency: int
    now: datetime | None
    progress: ProgressHook | None

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[FathomClient]:
        """The client at bulk priority, without a slot deadline (`bulk_view`); one
        made here is closed here (dlt's own loop)."""
        if self.client is not None:
            yield bulk_view(self.client)
            return
        async with FathomClient(self.token, base_url=self.base_url) as fathom:
            yield bulk_view(fathom)

    def moment(self) -> datetime:
        return self.now if self.now is not None else datetime.now(timezone.utc)

    def grouping(self, kind: ReportKind) -> tuple[str, ...]:
        return self.spec.pageview_grouping if kind == "pageviews" else self.spec.event_grouping

    def aggregates(self, kind: ReportKind) -> tuple[str, ...]:
        return (self.spec.pageview_aggregates if kind == "pageviews"
                else self.spec.event_aggregates)

    def fingerprint(self, kind: ReportKind) -> dict[str, Any]:
        """What decides a report table's rows and key; a change needs a new dataset."""
        return {"granularity": self.spec.granularity, "grouping": list(self.grouping(kind)),
                "aggregates": list(self.aggregates(kind))}


def fathom_source(
    client: FathomClient | str | None = None,
    *,
    sites: Sequence[str] | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
    granularity: DateGrouping = "day",
    pageview_aggregates: Sequence[PageviewAggregate] = PAGEVIEW_AGGREGATES,
    pageview_grouping: Sequence[FieldGrouping] = ("pathname",),
    event_aggregates: Sequence[EventAggregate] = EVENT_AGGREGATES,
    event_grouping: Sequence[FieldGrouping] = (),
    base_url: str | None = None,
    shard: tuple[int, int] = (0, 1),
    concurrency: int = 16,
    now: datetime | None = None,
    progress: ProgressHook | None = None,
) -> DltSource:
    """A dlt source of everything the token sees, for `pipeline.run(...)`.

    Args:
        client: a `FathomClient` (its limiter and options are used, at bulk priority
            and with no `acquire_timeout`: the load waits for its slots), a token, or
            None for `$FATHOM_API_TOKEN`.
        sites: site ids to load (default: every site the token can see).
        start_date: the first day of the first load (default: 89 days before
            today's UTC date, 90 days in all, moved back to the start of its
            period). Later loads continue from where the last one stopped. With
            month or year periods, start on a period's first day: otherwise the
            first row counts only part of its period.
        end_date: the last day to load (default: today on each site's clock).
        granularity: the report tables' period (`"hour"`, `"day"`, `"month"`,
            `"year"`), as in `ExportSpec`. This and the four below decide the
            tables' keys: changing them later raises `PlanMismatchError`.
        pageview_aggregates: the `pageviews` table's figures.
        pageview_grouping: the `pageviews` table's grouping columns.
        event_aggregates: the `event_conversions` table's figures.
        event_grouping: the `event_conversions` table's grouping columns.
        base_url: the API base URL when `client` is not a `FathomClient`.
        shard: `(index, count)`: this process's share, as in `Export`; each shard
            keeps its own incremental state.
        concurrency: report series fetched at once.
        now: the moment the load runs (default: the clock); decides which period
            is still open.
        progress: called with (a name for one report export: the resource and its
            date range, `ExportProgress`) as report chunks finish; it runs on dlt's
            extract thread.

    Raises:
        ValidationError: a bad argument, before any request.
    """
    token: str | None = None
    if isinstance(client, str):
        token, client = client, None
    elif client is not None and not isinstance(client, FathomClient):
        raise ValidationError("client", client, "a FathomClient, a token, or None")
    if client is None:  # the client's own checks, up front (each run makes its client)
        token = _check_token(token)
        if base_url is not None:
            _check_base_url(base_url)
    if now is not None and (not isinstance(now, datetime) or now.tzinfo is None):
        raise ValidationError("now", now, "an aware datetime (with a time zone)")
    for field, value in (("start_date", start_date), ("end_date", end_date)):
        if value is not None and (not isinstance(value, date) or isinstance(value, datetime)):
            raise ValidationError(field, value, "a date (whole days) or None")
    today = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).date()
    # The default starts on a period's first day, so its first row is a whole period.
    first = align(today - timedelta(days=89), granularity) if start_date is None else start_date
    if end_date is not None and end_date < first:
        raise ValidationError("end_date", end_date, f"not before start_date ({first})")
    spec = ExportSpec(
        date_from=first,
        date_to=end_date if end_date is not None else max(first, today),
        sites=sites,
        entities=("pageviews", "event_conversions"),
        granularity=granularity,
        pageview_aggregates=pageview_aggregates,
        pageview_grouping=pageview_grouping,
        event_aggregates=event_aggregates,
        event_grouping=event_grouping,
        format="jsonl",
    )
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", concurrency, "an int >= 1")
    if progress is not None and not callable(progress):
        raise ValidationError("progress", progress, "a callable or None")
    plan = _Plan(client=client, token=token, base_url=base_url, sites=spec.sites,
                 start_date=first, end_date=end_date, spec=spec, shard=check_shard(shard),
                 concurrency=concurrency, now=now, progress=progress)

    # Made directly, not with `@dlt.source`, which would put a configuration class into
    # this module for every source: nothing here is read from dlt's configuration.
    entity_keys = {"sites": "id", "events": ["site_id", "id"], "milestones": "id"}
    resources = [
        dlt.resource(cast(Any, _always_a_table(_entity_rows(plan, kind))), name=kind,
                     write_disposition="merge", primary_key=key, max_table_nesting=0,
                     columns=_entity_columns(kind))
        for kind, key in entity_keys.items()
    ]
    reports: tuple[ReportKind, ...] = ("pageviews", "event_conversions")
    resources += [
        dlt.resource(cast(Any, _always_a_table(_report_rows(plan, kind))), name=kind,
                     write_disposition="merge", primary_key=_report_key(plan, kind),
                     max_table_nesting=0, columns=_report_columns(plan, kind))
        for kind in reports
    ]
    return DltSource(dlt.Schema("fathom"), "fathom", resources)


async def _always_a_table(rows: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[Any]:
    """The resource's rows; with none, dlt is told to create the (empty) table anyway.

    So the dataset always has all five tables, and a query over a site without
    milestones finds an empty table rather than none.
    """
    empty = True
    async for batch in rows:
        empty = False
        yield batch
    if empty:
        yield dlt.mark.materialize_table_schema()

# -- entity lists ---------------------------------------------------------------------


def _entity_columns(kind: str) -> dict[str, TColumnSchema]:
    columns: dict[str, TColumnSchema] = {}
    if kind != "sites":
        columns["site_id"] = {"data_type": "text", "nullable": False}
    columns["id"] = {"data_type": "text", "nullable": False}
    columns["created_at"] = {"data_type": "timestamp"}
    if kind == "events":
        columns["currency"] = {"data_type": "text"}  # null on lists, yet a column
    if kind == "milestones":
        columns["milestone_date"] = {"data_type": "date"}
    return columns


def _entity_row(raw: dict[str, Any], site: str | None) -> dict[str, Any]:
    row = dict(raw) if site is None else {"site_id": site, **raw}
    if row.get("id") is not None:
        row["id"] = str(row["id"])
    if isinstance(row.get("created_at"), str):
        with suppress(ValueError):  # else kept as sent; dlt adds a text variant column
            row["created_at"] = parse_timestamp(row["created_at"])
    if isinstance(row.get("milestone_date"), str):
        with suppress(ValueError):
            row["milestone_date"] = date.fromisoformat(row["milestone_date"])
    return row


async def _chosen_sites(fathom: FathomClient, plan: _Plan) -> list[Any]:
    found = [site async for site in fathom.sites.list()]
    if plan.sites is None:
        return found
    return pick_sites({site.id: site for site in found}, plan.sites)


async def _entity_rows(plan: _Plan, kind: str) -> AsyncIterator[list[dict[str, Any]]]:
    async with plan.connect() as fathom:
        chosen = await _chosen_sites(fathom, plan)
        if kind == "sites":
            if _in_shard("sites", plan.shard):
                yield [_entity_row(dict(site.raw), None) for site in chosen]
            return
        for site in chosen:
            if not _in_shard(f"{kind}/{site.id}", plan.shard):
                continue
            resource = fathom.events if kind == "events" else fathom.milestones
            rows = [_entity_row(dict(item.raw), site.id) async for item in resource.list(site.id)]
            if rows:
                yield rows


# -- reports --------------------------------------------------------------------------


def _report_key(plan: _Plan, kind: ReportKind) -> list[str]:
    lead = ["site_id", "event_name"] if kind == "event_conversions" else ["site_id"]
    return [*lead, "date", *plan.grouping(kind)]


def _report_columns(plan: _Plan, kind: ReportKind) -> dict[str, TColumnSchema]:
    hour = plan.spec.granularity == "hour"
    columns: dict[str, TColumnSchema] = {
        name: {"data_type": "text", "nullable": False} for name in _report_key(plan, kind)
    }
    columns["date"] = {"data_type": "timestamp" if hour else "date", "nullable": False}
    for name in plan.aggregates(kind):
        columns[name] = {"data_type": "bigint" if name in INT_COLUMNS else "double"}
    return columns


def _site_today(plan: _Plan, site_zone: str | None) -> date:
    """Today on the site's clock (the API reports in the site's time zone)."""
    return plan.moment().astimezone(_zone_or_utc(site_zone)).date()


def _first_open(today: date, date_to: date, granularity: str) -> date:
    """The first period a load up to `date_to` did not see closed.

    The period holding today is still open, and so is one the load stopped inside of.
    """
    return min(align(today, granularity), align(date_to + timedelta(days=1), granularity))


def _zone_or_utc(name: str | None) -> tzinfo:
    """A site's zone; UTC when it has none or one this machine cannot load."""
    try:
        return zone(name) if name else timezone.utc
    except (ValueError, OSError, LookupError):
        return timezone.utc


async def _report_rows(plan: _Plan, kind: ReportKind) -> AsyncIterator[list[dict[str, Any]]]:
    state = dlt.current.resource_state()
    fingerprint = plan.fingerprint(kind)
    if state.get("plan") not in (None, fingerprint):
        raise PlanMismatchError(
            f"the {kind} table was loaded with {state['plan']}; this load asks for"
            f" {fingerprint}. Load into another dataset (or drop the table and its state)"
        )
    state["plan"] = fingerprint
    # Per shard: a shard advances only the series it loads.
    index, count = plan.shard
    next_from: dict[str, str] = state.setdefault("next_from", {}).setdefault(
        f"{index}/{count}", {})
    # A journal belongs to one extract: a failed one (whose state dlt never commits)
    # finds it again and resumes; a finished one moves on to a new journal, so the
    # open period is asked for again on every run, even twice in an hour.
    run = int(state.get("runs", 0))
    staging = Path(dlt.current.pipeline().working_dir) / STAGING / kind
    async with plan.connect() as fathom:
        chosen = await _chosen_sites(fathom, plan)
        zones = {site.id: site.timezone for site in chosen}
        groups: dict[tuple[date, date], list[tuple[str, date]]] = {}
        for site in chosen:
            if kind == "pageviews" and not _in_shard(_Series(kind, site.id).key, plan.shard):
                continue  # another shard's series
            start = (date.fromisoformat(next_from[site.id]) if site.id in next_from
                     else plan.start_date)
            today = _site_today(plan, site.timezone)
            end = plan.end_date or today
            if start <= end:
                groups.setdefault((start, end), []).append((site.id, today))
        specs = {
            key: attrs.evolve(plan.spec, date_from=key[0], date_to=key[1], entities=(kind,),
                              sites=tuple(site for site, _ in members))
            for key, members in groups.items()
        }
        folders = {key: f"{run}-{spec.fingerprint}" for key, spec in specs.items()}
        await asyncio.to_thread(_remove_stale, staging, set(folders.values()))
        for key, spec in specs.items():
            job = Export(fathom, spec, staging / folders[key], shard=plan.shard,
                         concurrency=plan.concurrency)
            name = f"{kind} {spec.date_from}..{spec.date_to}"
            async for rows in _chunks(job, kind, name, plan, zones):
                yield rows
            for site, today in groups[key]:
                cut = _first_open(today, spec.date_to, spec.granularity)
                next_from[site] = max(spec.date_from, cut).isoformat()
    state["runs"] = run + 1


def _remove_stale(staging: Path, keep: set[str]) -> None:
    """Journals of other extracts (a finished one, an older day's) are never resumed."""
    if staging.is_dir():
        for child in staging.iterdir():
            if child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)


async def _chunks(
    job: Export, kind: ReportKind, name: str, plan: _Plan, zones: dict[str, str | None]
) -> AsyncIterator[list[dict[str, Any]]]:
    """The rows of each chunk the export journals (resumed ones first), typed."""
    async for event in job.progress():
        if plan.progress is not None:
            plan.progress(name, event)
        if event.kind == "started":
            records: tuple[ChunkRecord, ...] = job.resumed_chunks
        elif event.record is not None:
            records = (event.record,)
        else:
            continue
        for record in records:
            if record.truncated:
                logger.warning("%s %s hit the 1000-row cap on one period: rows are missing",
                               kind, record.key)
            rows = await asyncio.to_thread(read_rows, job.manifest.directory / record.file)
            if rows:
                yield [_report_row(row, plan, kind, zones) for row in rows]


def _report_row(
    row: dict[str, Any], plan: _Plan, kind: ReportKind, zones: dict[str, str | None]
) -> dict[str, Any]:
    granularity = plan.spec.granularity
    period = row.get("date")
    if granularity == "hour" and isinstance(period, str):
        # The API's hours are the site's wall clock: store the instant they name.
        wall = datetime.fromisoformat(period)
        row["date"] = wall.replace(tzinfo=_zone_or_utc(zones.get(str(row.get("site_id")))))
    else:
        row["date"] = unit_start(period, granularity) or period
    for name in plan.grouping(kind):
        if row.get(name) is None:
            row[name] = ""  # part of the merge key, which cannot hold a null
    return row

