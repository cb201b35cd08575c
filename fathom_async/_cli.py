"""`fathom-async`: the command line (extra `cli`: click and rich).

Exit codes: 0 done, 1 API error, 2 usage error (bad arguments, a changed export
plan), 130 interrupted (an interrupted export prints the command that resumes it).
The token comes from `--token`, `$FATHOM_API_TOKEN` or the config file, and is never
printed: not in errors, not in the resume command. With `--emulator`, or with no
token at all, commands run against the built-in emulator seeded with demo data, its
rate limits sped up so a demo export takes seconds rather than hours.
"""

from __future__ import annotations

import asyncio
import configparser
import csv
import io
import json
import os
import shlex
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._client import FathomClient
from ._dates import parse_report_time
from ._exceptions import FathomError, ValidationError
from ._filters import Filter
from ._scheduler import RateLimits
from ._types import AGGREGATES, DATE_GROUPINGS, ENTITIES, FIELD_GROUPINGS
from .export import Export, ExportProgress, ExportSpec, PlanMismatchError
from .export._spec import ENTITIES as EXPORT_ENTITIES
from .export._spec import FORMATS as EXPORT_FORMATS

__all__ = ["cli", "main"]

T = TypeVar("T")
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEMO_TIME_SCALE = 60.0
DEMO_PAGEVIEWS = 50_000
DEFAULT_CONFIG = Path("~/.config/fathom-async/config.ini")
OUTPUT_FORMATS = ("table", "json", "csv")

stderr = Console(stderr=True, soft_wrap=True)


@attrs.define
class Settings:
    token: str | None
    base_url: str | None
    emulator: bool
    seed: int
    demo_pageviews: int = DEMO_PAGEVIEWS


def _config_token(path: Path | None) -> tuple[str | None, str | None]:
    """Token and base URL from the INI config file's [fathom] section, if any."""
    candidate = path or Path(os.environ.get("FATHOM_CONFIG", DEFAULT_CONFIG)).expanduser()
    if not candidate.is_file():
        if path is not None:
            raise click.BadParameter(f"no such file: {path}", param_hint="--config")
        return None, None
    parser = configparser.ConfigParser()
    parser.read(candidate, encoding="utf-8")
    if not parser.has_section("fathom"):
        return None, None
    return parser.get("fathom", "token", fallback=None), parser.get(
        "fathom", "base_url", fallback=None
    )


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[FathomClient]:
    """A client for the real API, or for the built-in emulator when there is no token."""
    if settings.token and not settings.emulator:
        async with FathomClient(settings.token, base_url=settings.base_url) as fathom:
            yield fathom
        return
    from .testing import FakeFathom

    stderr.print(
        "[yellow]No API token: using the built-in emulator with demo data"
        f" (rate limits {DEMO_TIME_SCALE:g}x faster).[/yellow]"
    )
    async with FakeFathom(
        seed=settings.seed, pageviews=settings.demo_pageviews, time_scale=DEMO_TIME_SCALE
    ) as fake:
        limits = RateLimits(entity=(2000, 3600 / DEMO_TIME_SCALE),
                            reports=(10, 60 / DEMO_TIME_SCALE))
        async with FathomClient(fake.token, base_url=fake.url, rate_limits=limits) as fathom:
            yield fathom


def _run(work: Callable[[], Awaitable[T]], *, resume: str | None = None) -> T:
    """Run a command's coroutine and turn failures into the documented exit codes."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        stderr.print("[red]Interrupted.[/red]")
        if resume:
            stderr.print(f"Finished chunks are kept. Resume with:\n  {resume}")
        sys.exit(EXIT_INTERRUPTED)
    except (ValidationError, PlanMismatchError) as exc:
        stderr.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        sys.exit(EXIT_USAGE)
    except FathomError as exc:
        stderr.print(f"[red]API error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        sys.exit(EXIT_API_ERROR)


def _resume_command(argv: Sequence[str]) -> str:
    """The command line again, with any --token value left to the environment."""
    words, skip = ["fathom-async"], False
    for word in argv:
        if skip:
            skip = False
            continue
        if word == "--token":
            skip = True
            continue
        if word.startswith("--token="):
            continue
        words.append(word)
    return " ".join(shlex.quote(word) for word in words)


def _emit(rows: list[dict[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> None:
    keys = list(columns or [])
    for row in rows:
        keys += [key for key in row if key not in keys]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str, ensure_ascii=False))
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buffer.getvalue(), nl=False)
    else:
        table = Table(*keys)
        for row in rows:
            table.add_row(*("" if row.get(k) is None else str(row.get(k)) for k in keys))
        Console().print(table)


def _csv_option(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


format_option = click.option(
    "--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True,
    help="output as a table, JSON or CSV",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--token", default=None, metavar="TOKEN",
              help="API token (default: $FATHOM_API_TOKEN, then the config file)")
@click.option("--base-url", default=None, help="API base URL (default: $FATHOM_BASE_URL)")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="INI file with a [fathom] section: token = ..., base_url = ...")
@click.option("--emulator", is_flag=True,
              help="use the built-in emulator with demo data (also when no token is set)")
@click.option("--seed", type=int, default=42, show_default=True, help="emulator seed")
@click.option("--demo-pageviews", type=click.IntRange(min=0), default=DEMO_PAGEVIEWS,
              show_default=True, help="emulator demo traffic over the last 90 days")
@click.pass_context
def cli(ctx: click.Context, token: str | None, base_url: str | None, config: Path | None,
        emulator: bool, seed: int, demo_pageviews: int) -> None:
    """Talk to the Fathom Analytics API: list, report, export."""
    file_token, file_base = _config_token(config)
    ctx.obj = Settings(
        token=token or os.environ.get("FATHOM_API_TOKEN") or file_token,
        base_url=base_url or os.environ.get("FATHOM_BASE_URL") or file_base,
        emulator=emulator,
        seed=seed,
        demo_pageviews=demo_pageviews,
    )


@cli.group()
def sites() -> None:
    """Sites."""


@sites.command("list")
@format_option
@click.pass_obj
def sites_list(settings: Settings, fmt: str) -> None:
    """Every site the token can see."""

    async def work() -> None:
        async with connect(settings) as fathom:
            rows = [dict(site.raw) async for site in fathom.sites.list()]
        _emit(rows, fmt, ["id", "name", "sharing", "created_at"])

    _run(work)


@cli.group()
def events() -> None:
    """Events (goals)."""


@events.command("list")
@click.argument("site_id", required=False)
@format_option
@click.pass_obj
def events_list(settings: Settings, site_id: str | None, fmt: str) -> None:
    """A site's events (the first site when SITE_ID is left out)."""

    async def work() -> None:
        async with connect(settings) as fathom:
            site = site_id or await _first_site(fathom)
            rows = [dict(event.raw) async for event in fathom.events.list(site)]
        _emit(rows, fmt, ["id", "name", "created_at"])

    _run(work)


async def _first_site(fathom: FathomClient) -> str:
    page = await fathom.sites.list(limit=1)
    if not page.data:
        raise ValidationError("site_id", None, "a site id (this token sees no sites)")
    return page.data[0].id


def _filter(value: str) -> Filter:
    parts = value.split(":", 2)
    if len(parts) != 3:
        raise ValidationError("--filter", value, "PROPERTY:OPERATOR:VALUE, e.g. pathname:is:/")
    return Filter(parts[0], parts[1], parts[2])  # type: ignore[arg-type]


@cli.command()
@click.option("--entity", type=click.Choice(ENTITIES), default="pageview", show_default=True)
@click.option("--site", "site_id", default=None, help="site id (default: the first site)")
@click.option("--entity-id", default=None, help="event id (older event reports)")
@click.option("--entity-name", default=None, help="event name (event reports)")
@click.option("--aggregates", default=None,
              help="comma list; default: every aggregate of the entity")
@click.option("--date-grouping", type=click.Choice(DATE_GROUPINGS), default=None)
@click.option("--field-grouping", default=None,
              help=f"comma list of {', '.join(FIELD_GROUPINGS)}")
@click.option("--sort-by", default=None, help="field:asc or field:desc")
@click.option("--timezone", default=None, help="TZ database name")
@click.option("--from", "date_from", default=None, help="YYYY-MM-DD or 'YYYY-MM-DD HH:MM:SS'")
@click.option("--to", "date_to", default=None, help="YYYY-MM-DD or 'YYYY-MM-DD HH:MM:SS'")
@click.option("--limit", type=int, default=None, help="1 to 1000 rows")
@click.option("--filter", "filters", multiple=True, help="PROPERTY:OPERATOR:VALUE (repeatable)")
@format_option
@click.pass_obj
def aggregate(settings: Settings, entity: str, site_id: str | None, entity_id: str | None,
              entity_name: str | None, aggregates: str | None, date_grouping: str | None,
              field_grouping: str | None, sort_by: str | None, timezone: str | None,
              date_from: str | None, date_to: str | None, limit: int | None,
              filters: tuple[str, ...], fmt: str) -> None:
    """Run an aggregation (every query option of the API)."""

    async def work() -> None:
        async with connect(settings) as fathom:
            site = site_id
            if site is None and (entity == "pageview" or entity_id is None):
                site = await _first_site(fathom)
            rows = await fathom.aggregations.query(
                entity=entity,  # type: ignore[arg-type]
                site_id=site,
                entity_id=entity_id,
                entity_name=entity_name,
                aggregates=_csv_option(aggregates) or list(AGGREGATES[entity]),
                date_grouping=date_grouping,  # type: ignore[arg-type]
                field_grouping=_csv_option(field_grouping),
                sort_by=sort_by,
                timezone=timezone,
                date_from=_when(date_from, "--from"),
                date_to=_when(date_to, "--to"),
                limit=limit,
                filters=[_filter(f) for f in filters] or None,
            )
        _emit(rows.to_dicts(), fmt)

    _run(work)


def _when(value: str | None, field: str) -> str | None:
    """A --from/--to value, read by the library's own parser (so both accept the same)."""
    if value is not None and parse_report_time(value, end=False) is None:
        raise ValidationError(field, value, "YYYY-MM-DD or 'YYYY-MM-DD HH:MM:SS'")
    return value


@cli.command()
@click.argument("site_id", required=False)
@click.option("--detailed", is_flag=True, help="add the top pages and referrers")
@format_option
@click.pass_obj
def current(settings: Settings, site_id: str | None, detailed: bool, fmt: str) -> None:
    """Current visitors of a site (the first site when SITE_ID is left out)."""

    async def work() -> None:
        async with connect(settings) as fathom:
            site = site_id or await _first_site(fathom)
            now = await fathom.current_visitors.get(site, detailed=detailed)
        if fmt != "table":
            _emit([dict(now.raw)], fmt)
            return
        click.echo(f"Current visitors on {site}: {now.total}")
        if now.content:
            _emit([dict(page.raw) for page in now.content], fmt)
        if now.referrers:
            _emit([dict(ref.raw) for ref in now.referrers], fmt)

    _run(work)


def _shard(value: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise ValidationError("--shard", value, "INDEX/COUNT such as 0/4") from None
    return index, count


@cli.command()
@click.option("--out", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("fathom-export"), show_default=True)
@click.option("--sites", "site_ids", default=None, help="comma list (default: every site)")
@click.option("--entities", default=",".join(EXPORT_ENTITIES), show_default=True,
              help="comma list")
@click.option("--from", "date_from", default=None, help="YYYY-MM-DD (default: 90 days ago)")
@click.option("--to", "date_to", default=None, help="YYYY-MM-DD (default: today, UTC)")
@click.option("--granularity", type=click.Choice(DATE_GROUPINGS), default="day",
              show_default=True)
@click.option("--pageview-aggregates", default=",".join(AGGREGATES["pageview"]),
              show_default=True)
@click.option("--pageview-grouping", default="pathname", show_default=True,
              help="comma list ('' for none)")
@click.option("--event-aggregates", default=",".join(AGGREGATES["event"]), show_default=True)
@click.option("--event-grouping", default="", help="comma list (default: none)")
@click.option("--format", "file_format", type=click.Choice(EXPORT_FORMATS), default="jsonl",
              show_default=True)
@click.option("--shard", default="0/1", show_default=True,
              help="INDEX/COUNT: this process's share of the plan")
@click.option("--concurrency", type=int, default=16, show_default=True)
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.pass_obj
def export(settings: Settings, directory: Path, site_ids: str | None, entities: str,
           date_from: str | None, date_to: str | None, granularity: str,
           pageview_aggregates: str, pageview_grouping: str, event_aggregates: str,
           event_grouping: str, file_format: str, shard: str, concurrency: int,
           quiet: bool) -> None:
    """Export sites, events, milestones and reports to files; run again to resume."""
    today = datetime.now(timezone.utc).date()

    async def work() -> None:
        spec = ExportSpec(
            date_from=_day(date_from, "--from") or today - timedelta(days=89),
            date_to=_day(date_to, "--to") or today,
            sites=_csv_option(site_ids),
            entities=_csv_option(entities) or [],
            granularity=granularity,  # type: ignore[arg-type]
            pageview_aggregates=_csv_option(pageview_aggregates) or [],
            pageview_grouping=_csv_option(pageview_grouping) or [],
            event_aggregates=_csv_option(event_aggregates) or [],
            event_grouping=_csv_option(event_grouping) or [],
            format=file_format,  # type: ignore[arg-type]
        )
        async with connect(settings) as fathom:
            job = Export(fathom, spec, directory, shard=_shard(shard), concurrency=concurrency)
            await _show_progress(job, quiet=quiet)
        summary = job.summary
        assert summary is not None
        _summary_table(job)

    _run(work, resume=_resume_command(sys.argv[1:]))


async def _show_progress(job: Export, *, quiet: bool) -> None:
    if quiet or not stderr.is_terminal:
        async for event in job.progress():
            if event.kind in ("started", "discovered", "finished") and not quiet:
                stderr.print(_describe(event), highlight=False)
        return
    columns = (TextColumn("[bold]export[/bold]"), BarColumn(),
               TextColumn("{task.completed}/{task.total} requests"),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=False) as bar:
        task = bar.add_task("export", total=None, detail="")
        async for event in job.progress():
            bar.update(task, completed=event.requests_done, total=event.requests_planned,
                       detail=_describe(event, short=True))


def _describe(event: ExportProgress, *, short: bool = False) -> str:
    budget = ", ".join(f"{name} {left}" for name, left in event.budget.items()
                       if left is not None)
    eta = f"ETA {event.eta_seconds:.0f}s" if event.eta_seconds is not None else "ETA ?"
    text = f"{event.rows} rows, budget left: {budget or 'unlimited'}, {eta}"
    if short:
        return text
    return f"{event.kind}: {event.requests_done}/{event.requests_planned} requests, {text}"


def _summary_table(job: Export) -> None:
    summary = job.summary
    assert summary is not None
    per_part: dict[str, list[int]] = {}
    for record in job.manifest.chunks.values():
        part = record.series.split("/")[0]
        files_rows = per_part.setdefault(part, [0, 0])
        files_rows[0] += 1
        files_rows[1] += record.rows
    table = Table("part", "files", "rows", title=f"Export in {job.manifest.directory}")
    for part, (files, rows) in sorted(per_part.items()):
        table.add_row(part, str(files), str(rows))
    table.add_row("total", str(summary.chunks), str(summary.rows), style="bold")
    Console().print(table)
    click.echo(f"{summary.requests} requests this run, {summary.chunks_resumed} chunks resumed;"
               f" manifest: {summary.manifest}")
    if summary.truncated:
        click.echo(f"warning: {len(summary.truncated)} chunk(s) hit the 1000-row cap on a"
                   " single unit and were truncated: " + ", ".join(summary.truncated))


def _day(value: str | None, field: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, value, "a date YYYY-MM-DD") from None


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8086, show_default=True)
@click.option("--pageviews", type=int, default=20_000, show_default=True)
@click.option("--time-scale", type=float, default=1.0, show_default=True)
@click.pass_obj
def emulator(settings: Settings, host: str, port: int, pageviews: int,
             time_scale: float) -> None:
    """Serve the emulator (a local Fathom API) until Ctrl-C."""
    from .testing.__main__ import main as serve

    serve(["--host", host, "--port", str(port), "--seed", str(settings.seed),
           "--pageviews", str(pageviews), "--time-scale", str(time_scale)])


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `fathom-async` command."""
    cli.main(args=argv, prog_name="fathom-async")
