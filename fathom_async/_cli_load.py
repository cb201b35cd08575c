"""What `fathom-async load` needs beyond the other commands: a dlt pipeline in a thread.

dlt's `pipeline.run` blocks, and runs the source's async generators on an event loop
of its own, in its own thread. The command's loop stays free meanwhile (it serves the
emulator with `--emulator`, and shows progress), so the run goes to a daemon thread:
on Ctrl-C the process exits at once instead of waiting for the load to finish, and
the next run resumes from the journaled chunks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs

from ._exceptions import FathomError, ValidationError
from .export import ExportProgress, PlanMismatchError

__all__ = ["DUCKDB_FILE", "in_thread", "load_failure", "make_pipeline", "merge_progress"]

T = TypeVar("T")
# Not `fathom.duckdb`: DuckDB names the database after its file, and a database and a
# dataset (schema) both called `fathom` make every `fathom.pageviews` ambiguous.
DUCKDB_FILE = "fathom_warehouse.duckdb"


def dlt_missing() -> bool:
    return importlib.util.find_spec("dlt") is None


def make_pipeline(destination: str, dataset: str, shard: tuple[int, int]) -> Any:
    """A dlt pipeline: DuckDB in the working directory, or any destination by name.

    Other destinations read their credentials the way dlt always does (environment
    variables such as `DESTINATION__POSTGRES__CREDENTIALS`, `.dlt/secrets.toml`). Each
    shard keeps its own pipeline (its own incremental state) under its own name.
    """
    # dlt reports usage to its makers unless told not to; a cron job should not phone
    # home unasked. Setting the variable yourself wins.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt

    index, count = shard
    name = f"fathom_{dataset}" + (f"_shard_{index}_of_{count}" if count > 1 else "")
    target: Any = destination
    if destination == "duckdb":
        target = dlt.destinations.duckdb(str(Path.cwd() / DUCKDB_FILE))
    return dlt.pipeline(pipeline_name=name, destination=target, dataset_name=dataset)


def file_format(destination: str) -> str | None:
    """Parquet into DuckDB when pyarrow is there: dlt's default, one INSERT per file,
    took 3.9 s and 880 MB for 43,800 rows where parquet took 0.3 s."""
    if destination == "duckdb" and importlib.util.find_spec("pyarrow") is not None:
        return "parquet"
    return None


async def in_thread(work: Callable[[], T]) -> T:
    """`work()` in a daemon thread, awaited without blocking the loop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(error: BaseException | None, result: Any = None) -> None:  # on the loop
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        error: BaseException | None = None
        result: Any = None
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting task, raised there
            error = exc
        if not loop.is_closed():
            loop.call_soon_threadsafe(settle, error, result)

    threading.Thread(target=run, name="fathom-load", daemon=True).start()
    return await done


def merge_progress(latest: dict[str, ExportProgress]) -> ExportProgress:
    """One picture of the load's report exports: counts summed, the latest budget.

    `latest` holds each export's last event, the newest last. The picture names a
    step (`started`, `discovered`) only once every export seen has reached it, and
    never `finished`: the load has finished only when dlt has loaded the rows, which
    the command says itself.
    """
    events = list(latest.values())
    newest = events[-1]
    kind = newest.kind
    if kind == "finished" or any(e.kind != kind for e in events):
        kind = "chunk"
    etas = [e.eta_seconds for e in events if e.eta_seconds is not None]
    return attrs.evolve(
        newest,
        kind=kind,
        requests_done=sum(e.requests_done for e in events),
        requests_planned=sum(e.requests_planned for e in events),
        rows=sum(e.rows for e in events),
        chunks_done=sum(e.chunks_done for e in events),
        chunks_resumed=sum(e.chunks_resumed for e in events),
        truncated=sum(e.truncated for e in events),
        eta_seconds=max(etas) if etas else None,
        record=None,
    )


def load_failure(error: BaseException) -> BaseException | None:
    """The error of ours that a dlt step failure wraps, if any (for the exit code)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (FathomError, ValidationError, PlanMismatchError)):
            return current
        current = current.__cause__ or current.__context__
    return None
