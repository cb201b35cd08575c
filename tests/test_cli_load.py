"""`fathom-async load`: the emulator into DuckDB from the command line."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

from fathom_async import _cli, _cli_load
from fathom_async.export import ExportProgress
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, for pytest

EMULATOR = ["--emulator", "--demo-pageviews", "2000"]
TABLES = {"sites", "events", "milestones", "pageviews", "event_conversions"}


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test in its own folder, its dlt state there too (never the user's ~/.dlt)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    return tmp_path


def run(*args: str) -> Result:
    environment = {"FATHOM_API_TOKEN": "", "FATHOM_BASE_URL": "", "FATHOM_CONFIG": "/nonexistent"}
    return CliRunner().invoke(_cli.cli, list(args), env=environment, catch_exceptions=False)


def tables(path: Path, schema: str = "fathom") -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as db:
        names = [name for (name,) in db.sql(
            "select table_name from information_schema.tables where table_schema = ?",
            params=[schema]).fetchall()]
        return {name: db.sql(f'select count(*) from {schema}."{name}"').fetchall()[0][0]
                for name in names if not name.startswith("_dlt")}


def test_load_fills_the_default_duckdb_file_and_dataset(workdir: Path) -> None:
    result = run(*EMULATOR, "load", "--from", "2026-01-01", "--quiet")
    assert result.exit_code == 0, result.output
    counts = tables(workdir / _cli_load.DUCKDB_FILE)
    assert set(counts) == TABLES
    assert counts["sites"] == 3
    assert counts["pageviews"] > 0
    assert "rows loaded" in result.stdout
    assert "pageviews" in result.stdout


def _loaded(output: str, table: str) -> int:
    [count] = re.findall(rf"{table}\s*│\s*(\d+)", output)
    return int(count)


def test_a_second_load_asks_only_for_the_open_period(workdir: Path) -> None:
    args = (*EMULATOR, "load", "--from", "2026-01-01", "--quiet",
            "--dataset", "analytics", "--granularity", "month", "--pageview-grouping", "")
    first_run = run(*args)
    assert first_run.exit_code == 0
    first = tables(workdir / _cli_load.DUCKDB_FILE, "analytics")
    second_run = run(*args)  # the same demo data again
    assert second_run.exit_code == 0
    assert tables(workdir / _cli_load.DUCKDB_FILE, "analytics") == first  # merged
    # Only this month's rows (one per site) came again; the closed months did not.
    assert _loaded(first_run.stdout, "pageviews") > _loaded(second_run.stdout, "pageviews")
    assert _loaded(second_run.stdout, "pageviews") == 3


def test_load_shares_a_redis_budget(workdir: Path, redis_server: RedisServer) -> None:
    result = run(*EMULATOR, "--redis-url", redis_server.url, "--limiter-key", "loads",
                 "load", "--from", "2026-11-01", "--progress-interval", "0")
    assert result.exit_code == 0, result.output
    assert tables(workdir / _cli_load.DUCKDB_FILE)["pageviews"] > 0
    assert redis_server.url not in result.output
    assert "load finished (loaded)" in result.stderr


def test_progress_lines_without_a_terminal(workdir: Path) -> None:
    result = run(*EMULATOR, "load", "--from", "2026-06-01", "--progress-interval", "0")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("load")]
    assert any("requests" in line and "budget left" in line and "ETA" in line
               for line in lines)
    assert sum("load finished" in line for line in lines) == 1
    assert lines[-1].startswith("load finished (loaded)")


def test_shards_keep_their_own_pipelines(workdir: Path) -> None:
    for index in (0, 1):
        result = run(*EMULATOR, "load", "--from", "2026-09-01", "--quiet", "--shard",
                     f"{index}/2", "--destination", "duckdb")
        assert result.exit_code == 0, result.output
    pipelines = {p.name for p in (workdir / "dlt" / "pipelines").iterdir()}
    assert pipelines == {"fathom_fathom_shard_0_of_2", "fathom_fathom_shard_1_of_2"}
    counts = tables(workdir / _cli_load.DUCKDB_FILE)
    assert counts["sites"] == 3  # one shard loads the list, the other none of it


def test_an_unknown_site_is_a_usage_error_not_a_dlt_traceback(workdir: Path) -> None:
    result = run(*EMULATOR, "load", "--sites", "NOSUCH", "--quiet")
    assert result.exit_code == 2
    assert "NOSUCH" in result.stderr
    assert "Traceback" not in result.output


def test_no_token_is_refused_before_anything_is_loaded(workdir: Path) -> None:
    result = run("load", "--quiet")
    assert result.exit_code == 2
    assert "--emulator" in result.stderr
    assert not (workdir / _cli_load.DUCKDB_FILE).exists()


def test_without_dlt_the_extra_to_install_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cli, "dlt_missing", lambda: True)
    result = run(*EMULATOR, "load")
    assert result.exit_code == 2
    assert "fathom-async[dlt]" in result.stderr


def _event(kind: str, done: int, rows: int, eta: float | None = None) -> ExportProgress:
    return ExportProgress(kind=kind, requests_done=done, requests_planned=done + 1,  # type: ignore[arg-type]
                          rows=rows, chunks_done=done, chunks_resumed=0, truncated=0,
                          budget={"entity": 1, "reports": 2}, eta_seconds=eta)


def test_progress_of_several_exports_is_summed_and_never_finishes_by_itself() -> None:
    views = _event("finished", 5, 100, 0.0)
    merged = _cli_load.merge_progress({"pageviews": views})
    assert merged.kind == "chunk"  # finished is the command's to say, once dlt loaded
    merged = _cli_load.merge_progress(
        {"pageviews": views, "event_conversions": _event("chunk", 2, 10, 4.0)})
    assert (merged.kind, merged.requests_done, merged.rows, merged.eta_seconds) == (
        "chunk", 7, 110, 4.0)
    both_started = {"a": _event("started", 0, 0), "b": _event("started", 0, 0)}
    assert _cli_load.merge_progress(both_started).kind == "started"
    one_ahead = {"a": _event("discovered", 1, 0), "b": _event("started", 0, 0)}
    assert _cli_load.merge_progress(one_ahead).kind == "chunk"
