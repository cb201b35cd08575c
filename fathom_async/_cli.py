"""`fathom-async`: the command line (extra `cli`: click and rich).

Exit codes: 0 done, 1 API error, 2 usage error (bad arguments, no token, a missing
extra, a changed export plan), 130 interrupted (an interrupted export prints the
command that resumes it).

The token comes from `--token`, `$FATHOM_API_TOKEN` or the config file, and is never
printed: not in errors, not in the resume command. Without a token every command but
`emulator` stops with exit code 2 before any request, naming the three places a token
can come from and `--emulator`: a cron job whose secret went missing must fail, not
export demo data and exit 0. The demo is asked for explicitly: with `--emulator`,
commands run against the built-in emulator seeded with the demo data (the same seed
and pageviews as `fathom-async emulator` and `python -m fathom_async.testing`), its
rate limits sped up so a demo export takes seconds rather than hours.

`--redis-url` (default `$FATHOM_REDIS_URL`) keeps the rate limits on Redis
(`RedisRateLimits`), so every process sharing `--limiter-key` spends one budget:
`export --shard i/n` workers, or a loader next to a dashboard. `--reserve-reports N`
is that budget's reserve, which every process sharing it must use alike (a dashboard
with `reserve={"reports": 2}` needs exports run with `--reserve-reports 2`). The URL
may hold a password, so it is never printed either.

Progress goes to stderr: a bar on a terminal; elsewhere (a log file, CI, cron) a plain
line every `--progress-interval` seconds, because a redrawn bar is unreadable in a log
and silence cannot be told from a hang. `report_progress` renders it for any command
that runs on `ExportProgress` events.
"""

from __future__ import annotations

import asyncio
import configparser
import csv
import hashlib
import io
import json
import os
import shlex
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import attrs
import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._cli_load import (
    DUCKDB_FILE,
    dlt_missing,
    file_format,
    in_thread,
    load_failure,
    make_pipeline,
    merge_progress,
)
from ._client import FathomClient
from ._dates import parse_report_time
from ._exceptions import FathomError, ValidationError
from ._filters import Filter
from ._redis_client import _shown
from ._scheduler import RateLimits
from ._types import AGGREGATES, DATE_GROUPINGS, ENTITIES, FIELD_GROUPINGS
from .export import Export, ExportProgress, ExportSpec, PlanMismatchError
from .export._spec import ENTITIES as EXPORT_ENTITIES
from .export._spec import FORMATS as EXPORT_FORMATS
from .testing._fake import DEMO_PAGEVIEWS, DEMO_SEED

if TYPE_CHECKING:
    from ._redis import RedisRateLimits

__all__ = ["CliUsageError", "Settings", "cli", "connect", "describe_progress", "main",
           "report_progress"]

T = TypeVar("T")
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEMO_TIME_SCALE = 60.0
DEFAULT_CONFIG = Path("~/.config/fathom-async/config.ini")
OUTPUT_FORMATS = ("table", "json", "csv")
#: Seconds between two progress lines when stderr is not a terminal: often enough that
#: a log shows the export is alive, rarely enough that an hours-long export's log
#: stays readable.
PROGRESS_INTERVAL = 10.0
#: Progress events that always get a line of their own (off a terminal).
MILESTONE_KINDS = ("started", "discovered", "finished")

stderr = Console(stderr=True, soft_wrap=True)


class CliUsageError(Exception):
    """A usage error found once a command runs (no token, a missing extra): exit code 2.

    Raised before any request, so nothing has been sent when the command stops.
    """


@attrs.define
class Settings:
    """The group's options, as every command sees them (secrets kept out of the repr)."""

    token: str | None = attrs.field(repr=False)
    base_url: str | None
    emulator: bool
    seed: int = DEMO_SEED
    demo_pageviews: int = DEMO_PAGEVIEWS
    config: Path = DEFAULT_CONFIG
    redis_url: str | None = attrs.field(default=None, repr=False)
    limiter_key: str | None = None
    reserve_reports: int = 0


def _config_file(path: Path | None) -> Path:
    """The config file in use: `--config`, else `$FATHOM_CONFIG`, else the default."""
    return path or Path(os.environ.get("FATHOM_CONFIG") or DEFAULT_CONFIG).expanduser()


def _config_token(path: Path | None) -> tuple[str | None, str | None]:
    """Token and base URL from the INI config file's [fathom] section, if any."""
    candidate = _config_file(path)
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


def _no_token_message(settings: Settings) -> str:
    return (
        "no API token. Pass --token TOKEN, set $FATHOM_API_TOKEN, or add `token = ...` to"
        f" the [fathom] section of the config file {settings.config}. To try the command"
        " on the built-in emulator's demo data instead, add --emulator"
        " (e.g. `fathom-async --emulator export`)."
    )


def _check_redis_installed() -> None:
    """Stop with the extra to install when `--redis-url` is given without redis-py."""
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        raise CliUsageError(
            "--redis-url needs redis-py, which is not installed:"
            " pip install 'fathom-async[redis]'"
        ) from None


def _default_limiter_key(token: str) -> str:
    """A budget per token: processes run with the same token share it by default.

    A digest, never the token itself, because the key is stored in Redis in clear.
    """
    return "fathom-async-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def _redis_limits(settings: Settings, token: str) -> RedisRateLimits:
    """The shared limiter for `--redis-url`; the emulator's sped-up windows with it."""
    from ._redis import RedisRateLimits

    assert settings.redis_url
    scale = DEMO_TIME_SCALE if settings.emulator else 1.0
    try:
        return RedisRateLimits(
            settings.redis_url,
            key=settings.limiter_key or _default_limiter_key(token),
            entity=(2000, 3600 / scale),
            reports=(10, 60 / scale),
            reserve={"reports": settings.reserve_reports},
        )
    except ValidationError as exc:  # its value is the URL with any password removed
        raise CliUsageError(
            f"--redis-url {exc.value!r} is not usable: {exc.allowed}"
        ) from None


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[FathomClient]:
    """A client for the real API, or, with `--emulator`, for the built-in emulator.

    What can be refused is refused here, before any request: no token without
    `--emulator` (so demo data is never exported by accident), `--redis-url` without
    redis-py or with a URL Redis cannot take.
    """
    if not settings.emulator and not settings.token:
        raise CliUsageError(_no_token_message(settings))
    if settings.redis_url:
        _check_redis_installed()
    limits: RedisRateLimits | None = None
    try:
        if not settings.emulator:
            assert settings.token
            shared: dict[str, Any] = {}
            if settings.redis_url:
                limits = shared["rate_limits"] = _redis_limits(settings, settings.token)
            async with FathomClient(
                settings.token, base_url=settings.base_url, **shared
            ) as fathom:
                yield fathom
            return
        from .testing import FakeFathom

        async with FakeFathom(
            seed=settings.seed, pageviews=settings.demo_pageviews, time_scale=DEMO_TIME_SCALE
        ) as fake:
            if settings.redis_url:
                limits = _redis_limits(settings, fake.token)
            stderr.print(
                "Using the built-in emulator with demo data (--emulator; rate limits"
                f" {DEMO_TIME_SCALE:g}x faster).",
                markup=False,
                highlight=False,
            )
            async with FathomClient(
                fake.token, base_url=fake.url, rate_limits=limits or _demo_limits()
            ) as fathom:
                yield fathom
    finally:
        if limits is not None:
            await limits.aclose()


def _demo_limits() -> RateLimits:
    """Fathom's limits on the emulator's clock: windows `DEMO_TIME_SCALE` times shorter."""
    return RateLimits(entity=(2000, 3600 / DEMO_TIME_SCALE),
                      reports=(10, 60 / DEMO_TIME_SCALE))


def _run(work: Callable[[], Awaitable[T]], *, resume: str | None = None) -> T:
    """Run a command's coroutine and turn failures into the documented exit codes."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        stderr.print("[red]Interrupted.[/red]")
        if resume:
            stderr.print(f"Finished chunks are kept. Resume with:\n  {resume}",
                         markup=False, highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    except (CliUsageError, ValidationError, PlanMismatchError) as exc:
        _usage_error(exc)
    except FathomError as exc:
        stderr.print(f"[red]API error:[/red] {type(exc).__name__}: {escape(str(exc))}",
                     highlight=False)
        sys.exit(EXIT_API_ERROR)


def _usage_error(exc: Exception) -> NoReturn:
    stderr.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
    sys.exit(EXIT_USAGE)


def _resume_command(argv: Sequence[str], pinned: Sequence[tuple[str, str]] = ()) -> str:
    """The command line again, with the secrets left to the environment.

    `--token` is always dropped; `--redis-url` is kept unless it holds credentials (a
    user, a password or a query), in which case a shell comment says to set
    `$FATHOM_REDIS_URL` instead. `pinned` options (name, value) are added when the
    command line left them to a default that moves, such as the export's dates: an
    export resumed after midnight must ask for the same days, or it is another plan.
    """
    given = {word.partition("=")[0] for word in argv}
    argv = [*argv, *(word for name, value in pinned if name not in given
                     for word in (name, value))]
    words, hidden_redis = ["fathom-async"], False
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        name, has_value, value = word.partition("=")
        if name not in ("--token", "--redis-url") or not word.startswith("--"):
            words.append(word)
            continue
        if not has_value:
            if index >= len(argv):
                continue
            value, index = argv[index], index + 1
        if name == "--redis-url":
            if _shown(value) == value:
                words += [name, value]
            else:
                hidden_redis = True
    command = " ".join(shlex.quote(word) for word in words)
    if hidden_redis:
        command += "  # with $FATHOM_REDIS_URL set (the Redis URL holds a password)"
    return command


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
              help="API token (default: $FATHOM_API_TOKEN, then the config file);"
                   " required unless --emulator")
@click.option("--base-url", default=None, help="API base URL (default: $FATHOM_BASE_URL)")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="INI file with a [fathom] section: token = ..., base_url = ..."
                   f" (default: $FATHOM_CONFIG, then {DEFAULT_CONFIG})")
@click.option("--emulator", is_flag=True,
              help="run against the built-in emulator with demo data instead of the API")
@click.option("--seed", type=int, default=DEMO_SEED, show_default=True, help="emulator seed")
@click.option("--demo-pageviews", type=click.IntRange(min=0), default=DEMO_PAGEVIEWS,
              show_default=True, help="emulator demo traffic over the last 90 days")
@click.option("--redis-url", default=None, metavar="URL",
              help="share the rate limits through Redis, e.g. redis://host:6379/0"
                   " (default: $FATHOM_REDIS_URL; needs fathom-async[redis])")
@click.option("--limiter-key", default=None, metavar="KEY",
              help="the shared budget's name on Redis; processes with the same key share"
                   " one budget (default: derived from the token)")
@click.option("--reserve-reports", type=click.IntRange(0, 9), default=0, show_default=True,
              metavar="N",
              help="report slots of every minute that bulk work (an export) leaves to"
                   " interactive calls on the shared budget; every process sharing the key"
                   " must use the same N (needs --redis-url)")
@click.pass_context
def cli(ctx: click.Context, token: str | None, base_url: str | None, config: Path | None,
        emulator: bool, seed: int, demo_pageviews: int, redis_url: str | None,
        limiter_key: str | None, reserve_reports: int) -> None:
    """Talk to the Fathom Analytics API: list, report, export.

    \b
    Every command but `emulator` needs a token: --token, $FATHOM_API_TOKEN or the
    config file. Without one it exits with code 2 before any request. For the demo,
    add --emulator: fathom-async --emulator export

    \b
    --redis-url (or $FATHOM_REDIS_URL) shares one rate-limit budget between
    processes, e.g. export --shard 0/4 ... export --shard 3/4 with one --limiter-key.

    Exit codes: 0 done, 1 API error, 2 usage error, 130 interrupted.
    """
    redis_url = redis_url or os.environ.get("FATHOM_REDIS_URL") or None
    if limiter_key is not None and not redis_url:
        raise click.UsageError(
            "--limiter-key names a budget shared on Redis: give --redis-url"
            " (or set $FATHOM_REDIS_URL) too"
        )
    if reserve_reports and not redis_url:
        raise click.UsageError(
            "--reserve-reports is the reserve of a budget shared on Redis: give"
            " --redis-url (or set $FATHOM_REDIS_URL) too"
        )
    file_token, file_base = _config_token(config)
    ctx.obj = Settings(
        token=token or os.environ.get("FATHOM_API_TOKEN") or file_token or None,
        base_url=base_url or os.environ.get("FATHOM_BASE_URL") or file_base,
        emulator=emulator,
        seed=seed,
        demo_pageviews=demo_pageviews,
        config=_config_file(config),
        redis_url=redis_url,
        limiter_key=limiter_key,
        reserve_reports=reserve_reports,
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
            # The strings are checked by the library (a ValidationError names the bad one).
            rows = await fathom.aggregations.query(  # type: ignore[call-overload, misc]
                entity=entity,
                site_id=site,
                entity_id=entity_id,
                entity_name=entity_name,
                aggregates=_csv_option(aggregates) or list(AGGREGATES[entity]),
                date_grouping=date_grouping,
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


progress_interval_option = click.option(
    "--progress-interval", type=click.FloatRange(min=0), default=PROGRESS_INTERVAL,
    show_default=True, metavar="SECONDS",
    help="when stderr is not a terminal: seconds between progress lines (0: one per step)",
)


_SELECTION = (
    click.option("--sites", "site_ids", default=None, help="comma list (default: every site)"),
    click.option("--from", "date_from", default=None,
                 help="YYYY-MM-DD (default: 89 days before --to's default: 90 days)"),
    click.option("--to", "date_to", default=None,
                 help="YYYY-MM-DD (default: today, the UTC date)"),
    click.option("--granularity", type=click.Choice(DATE_GROUPINGS), default="day",
                 show_default=True),
    click.option("--pageview-aggregates", default=",".join(AGGREGATES["pageview"]),
                 show_default=True),
    click.option("--pageview-grouping", default="pathname", show_default=True,
                 help="comma list ('' for none)"),
    click.option("--event-aggregates", default=",".join(AGGREGATES["event"]),
                 show_default=True),
    click.option("--event-grouping", default="", help="comma list (default: none)"),
    click.option("--shard", default="0/1", show_default=True,
                 help="INDEX/COUNT: this process's share of the plan"),
    click.option("--concurrency", type=int, default=16, show_default=True),
    click.option("--quiet", is_flag=True, help="no progress bar and no progress lines"),
    progress_interval_option,
)


def selection_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options that pick the rows, shared by `export` and `load` (one spelling)."""
    for option in reversed(_SELECTION):
        command = option(command)
    return command


@cli.command()
@click.option("--out", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("fathom-export"), show_default=True)
@click.option("--entities", default=",".join(EXPORT_ENTITIES), show_default=True,
              help="comma list")
@click.option("--format", "file_format", type=click.Choice(EXPORT_FORMATS), default="jsonl",
              show_default=True)
@selection_options
@click.pass_obj
def export(settings: Settings, directory: Path, site_ids: str | None, entities: str,
           date_from: str | None, date_to: str | None, granularity: str,
           pageview_aggregates: str, pageview_grouping: str, event_aggregates: str,
           event_grouping: str, file_format: str, shard: str, concurrency: int,
           quiet: bool, progress_interval: float) -> None:
    """Export sites, events, milestones and reports to files; run again to resume."""
    today = datetime.now(timezone.utc).date()
    try:
        first = _day(date_from, "--from") or today - timedelta(days=89)
        last = _day(date_to, "--to") or today
    except ValidationError as exc:
        _usage_error(exc)

    async def work() -> None:
        spec = ExportSpec(
            date_from=first,
            date_to=last,
            sites=_csv_option(site_ids),
            entities=_csv_option(entities) or [],  # type: ignore[arg-type]
            granularity=granularity,  # type: ignore[arg-type]
            pageview_aggregates=_csv_option(pageview_aggregates) or [],  # type: ignore[arg-type]
            pageview_grouping=_csv_option(pageview_grouping) or [],  # type: ignore[arg-type]
            event_aggregates=_csv_option(event_aggregates) or [],  # type: ignore[arg-type]
            event_grouping=_csv_option(event_grouping) or [],  # type: ignore[arg-type]
            format=file_format,  # type: ignore[arg-type]
        )
        async with connect(settings) as fathom:
            job = Export(fathom, spec, directory, shard=_shard(shard), concurrency=concurrency)
            await report_progress(job.progress(), quiet=quiet, interval=progress_interval,
                                  label="export")
        summary = job.summary
        assert summary is not None
        _summary_table(job)

    pinned = (("--from", first.isoformat()), ("--to", last.isoformat()))
    _run(work, resume=_resume_command(sys.argv[1:], pinned))


async def report_progress(
    events: AsyncIterator[ExportProgress],
    *,
    quiet: bool = False,
    interval: float = PROGRESS_INTERVAL,
    label: str = "export",
    console: Console | None = None,
    clock: Callable[[], float] | None = None,
) -> ExportProgress | None:
    """Run the work behind `events` to its end, showing where it stands on stderr.

    Any command whose work reports `ExportProgress` (an export, a load) shows it so:

    - `quiet`: nothing; the events are still consumed, so the work still runs.
    - on a terminal: a bar with requests done/planned, rows, the budget left in each
      bucket and the ETA.
    - elsewhere (a log file, CI, cron): plain lines, because a bar redrawn in place
      is unreadable in a log. One for each `started`, `discovered` and `finished`
      event, and one every `interval` seconds with requests done/planned, rows, budget
      left and ETA: from a timer, so that a stalled export still says it is alive
      (and for how long nothing has changed), or from the first event once a line is
      overdue. `interval=0`: a line for every event, and no timer.

    `label` starts every line. `console` defaults to the module's stderr console.
    `clock` (seconds, monotonic) decides when a line is due; the default,
    `progress_clock` or else the running loop's `time()`, is also what the timer sleeps
    on, so under a fake loop clock (looptime) the interval passes in fake time.
    Returns the last event, or None. An exception raised by the work propagates;
    leaving early (cancellation) closes `events`, which stops an `Export`.
    """
    out = console or stderr
    if quiet:
        last = None
        async for event in events:
            last = event
        return last
    if out.is_terminal:
        return await _progress_bar(events, label=label, console=out)
    clock = clock or progress_clock or asyncio.get_running_loop().time
    return await _progress_lines(events, interval=interval, label=label, console=out,
                                 clock=clock)


#: The clock `report_progress` uses when given none (None: the running loop's time()).
#: Tests set it to drive the interval without waiting.
progress_clock: Callable[[], float] | None = None


async def _progress_bar(
    events: AsyncIterator[ExportProgress], *, label: str, console: Console
) -> ExportProgress | None:
    last = None
    columns = (TextColumn(f"[bold]{escape(label)}[/bold]"), BarColumn(),
               TextColumn("{task.completed}/{task.total} requests"),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=None, detail="")
        async for event in events:
            last = event
            bar.update(task, completed=event.requests_done, total=event.requests_planned,
                       detail=escape(_figures(event)))
    return last


@attrs.define
class _LineState:
    """What the progress lines and their timer share: the last event and when."""

    last: ExportProgress | None
    seen_at: float
    due: float


async def _progress_lines(
    events: AsyncIterator[ExportProgress],
    *,
    interval: float,
    label: str,
    console: Console,
    clock: Callable[[], float],
) -> ExportProgress | None:
    started = clock()
    state = _LineState(last=None, seen_at=started, due=started + interval)

    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False)
        state.due = clock() + interval

    async def timer() -> None:
        while True:
            await asyncio.sleep(max(state.due - clock(), 0.0))
            now = clock()
            if now < state.due:
                continue  # a line went out meanwhile: the next one is due later
            if state.last is None:
                state.due = now + interval  # nothing to report yet
                continue
            since = now - state.seen_at
            line(describe_progress(state.last, label=label, elapsed=now - started,
                                   since_event=since, stalled=since >= interval))

    ticker = asyncio.ensure_future(timer()) if interval > 0 else None
    try:
        async for event in events:
            now = clock()
            state.last, state.seen_at = event, now
            if event.kind in MILESTONE_KINDS or now >= state.due:
                line(describe_progress(event, label=label, elapsed=now - started))
    finally:
        if ticker is not None:
            ticker.cancel()
            with suppress(asyncio.CancelledError):
                await ticker
    return state.last


def describe_progress(
    event: ExportProgress,
    *,
    label: str = "export",
    elapsed: float | None = None,
    since_event: float = 0.0,
    stalled: bool = False,
) -> str:
    """One progress line: requests done/planned, rows, budget left, ETA (and elapsed).

    `started`, `discovered` and `finished` events name themselves (with their
    message). `since_event` (seconds since the event was seen) counts as spent in
    the ETA; `stalled` adds how long nothing has changed, so a log tells a slow
    export from a stuck one.
    """
    head = label
    if event.kind in MILESTONE_KINDS:
        head += f" {event.kind}" + (f" ({event.message})" if event.message else "")
    text = (f"{head}: {event.requests_done}/{event.requests_planned} requests, "
            f"{_figures(event, spent=since_event)}")
    if elapsed is not None:
        text += f", elapsed {_duration(elapsed)}"
    if stalled:
        text += f", no new step for {_duration(since_event)}"
    return text


def _figures(event: ExportProgress, *, spent: float = 0.0) -> str:
    budget = ", ".join(f"{name} {left}" for name, left in event.budget.items()
                       if left is not None)
    eta = "ETA ?"
    if event.eta_seconds is not None:
        eta = f"ETA {_duration(max(event.eta_seconds - spent, 0.0))}"
    return f"{event.rows} rows, budget left: {budget or 'unlimited'}, {eta}"


def _duration(seconds: float) -> str:
    """`42s`, `3m07s`, `2h05m`: short enough for a log line, exact enough for an ETA."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


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
@click.option("--destination", default="duckdb", show_default=True,
              help=f"a dlt destination; duckdb: the file {DUCKDB_FILE} here")
@click.option("--dataset", default="fathom", show_default=True,
              help="the dataset (schema) the tables go to")
@selection_options
@click.pass_obj
def load(settings: Settings, destination: str, dataset: str, site_ids: str | None,
         date_from: str | None, date_to: str | None, granularity: str,
         pageview_aggregates: str, pageview_grouping: str, event_aggregates: str,
         event_grouping: str, shard: str, concurrency: int, quiet: bool,
         progress_interval: float) -> None:
    """Load sites, events, milestones and reports into a warehouse, incrementally.

    Tables sites, events, milestones, pageviews and event_conversions, merged (never
    duplicated). Run it again (nightly) to add the periods that closed since and
    refresh the open one; an interrupted load resumes. Needs the `dlt` extra.
    """

    async def work() -> None:
        if dlt_missing():
            raise CliUsageError(
                "load needs dlt, which is not installed: pip install 'fathom-async[dlt]'")
        from .dlt import fathom_source

        start = _day(date_from, "--from")
        async with connect(settings) as fathom:
            loop = asyncio.get_running_loop()
            # (export name, event) from dlt's thread; then True (loaded) or False (failed).
            events: asyncio.Queue[tuple[str, ExportProgress] | bool] = asyncio.Queue()

            def seen(name: str, event: ExportProgress) -> None:  # called on dlt's thread
                loop.call_soon_threadsafe(events.put_nowait, (name, event))

            source = fathom_source(
                fathom, sites=_csv_option(site_ids), start_date=start,
                end_date=_day(date_to, "--to"), granularity=granularity,  # type: ignore[arg-type]
                pageview_aggregates=_csv_option(pageview_aggregates) or [],  # type: ignore[arg-type]
                pageview_grouping=_csv_option(pageview_grouping) or [],  # type: ignore[arg-type]
                event_aggregates=_csv_option(event_aggregates) or [],  # type: ignore[arg-type]
                event_grouping=_csv_option(event_grouping) or [],  # type: ignore[arg-type]
                shard=_shard(shard), concurrency=concurrency, progress=seen,
            )
            pipeline = make_pipeline(destination, dataset, _shard(shard))

            async def progress() -> AsyncIterator[ExportProgress]:
                latest: dict[str, ExportProgress] = {}  # per report export
                while not isinstance(item := await events.get(), bool):
                    latest.pop(item[0], None)  # the newest goes last
                    latest[item[0]] = item[1]
                    yield merge_progress(latest)
                if item and latest:
                    yield attrs.evolve(merge_progress(latest), kind="finished",
                                       message="loaded")

            def run() -> Any:
                loaded = False
                try:
                    info = pipeline.run(source, loader_file_format=file_format(destination))
                    loaded = True
                    return info
                finally:
                    loop.call_soon_threadsafe(events.put_nowait, loaded)

            shown = asyncio.ensure_future(report_progress(
                progress(), quiet=quiet, interval=progress_interval, label="load"))
            try:
                await in_thread(run)
            except Exception as exc:
                ours = load_failure(exc)
                if ours is None:
                    raise
                raise ours from None
            finally:
                await shown
        _load_summary(pipeline, destination)

    _run(work, resume=_resume_command(sys.argv[1:]))


def _load_summary(pipeline: Any, destination: str) -> None:
    """Rows this run loaded per table, and where they went."""
    counts: dict[str, int] = {}
    trace = pipeline.last_trace
    if trace is not None and trace.last_normalize_info is not None:
        counts = dict(trace.last_normalize_info.row_counts)
    where = str(Path.cwd() / DUCKDB_FILE) if destination == "duckdb" else destination
    table = Table("table", "rows loaded", title=f"Dataset {pipeline.dataset_name} in {where}")
    for name in EXPORT_ENTITIES:
        table.add_row(name, str(counts.get(name, 0)))
    Console().print(table)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8086, show_default=True)
@click.option("--pageviews", type=click.IntRange(min=0), default=None,
              help=f"demo pageviews over 90 days (default: --demo-pageviews, {DEMO_PAGEVIEWS})")
@click.option("--time-scale", type=float, default=1.0, show_default=True)
@click.option("--no-rate-limits", is_flag=True,
              help="do not enforce Fathom's limits (clients still keep their own)")
@click.pass_obj
def emulator(settings: Settings, host: str, port: int, pageviews: int | None,
             time_scale: float, no_rate_limits: bool) -> None:
    """Serve the emulator (a local Fathom API) until Ctrl-C; needs no token.

    The demo data (--seed, --demo-pageviews) is that of `fathom-async --emulator ...`
    and `python -m fathom_async.testing`.
    """
    from .testing.__main__ import main as serve

    if pageviews is None:
        pageviews = settings.demo_pageviews
    serve(["--host", host, "--port", str(port), "--seed", str(settings.seed),
           "--pageviews", str(pageviews), "--time-scale", str(time_scale),
           *(["--no-rate-limits"] if no_rate_limits else [])])


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line (`fathom_async.__main__.main` is the installed entry)."""
    cli.main(args=argv, prog_name="fathom-async")
