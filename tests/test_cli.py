"""The `fathom-async` command line, run in process with click's runner."""

from __future__ import annotations

import json
import re
import signal
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fathom_async import _cli
from fathom_async.export import Export, Manifest

SECRET = "cli-secret-token-0123456789"
EMULATOR = ["--emulator", "--demo-pageviews", "3000"]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    environment = {"FATHOM_API_TOKEN": "", "FATHOM_BASE_URL": "", "FATHOM_CONFIG": "/nonexistent"}
    environment.update(env or {})
    return CliRunner().invoke(_cli.cli, list(args), env=environment, catch_exceptions=False)


def test_export_against_the_emulator_writes_files_and_a_summary(tmp_path: Path) -> None:
    result = run(*EMULATOR, "export", "--out", str(tmp_path), "--quiet")
    assert result.exit_code == 0, result.output
    assert "pageviews" in result.stdout
    assert "requests this run" in result.stdout
    manifest = Manifest(tmp_path)
    assert manifest.load()
    assert len(manifest.chunks) > 3
    assert (tmp_path / "sites.jsonl").exists()


def test_the_emulator_on_request_serves_demo_data_and_says_so(tmp_path: Path) -> None:
    result = run("--emulator", "--demo-pageviews", "500", "sites", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "built-in emulator" in result.stderr
    assert len(json.loads(result.stdout)) == 3


def test_no_token_is_a_usage_error_not_demo_data(tmp_path: Path) -> None:
    result = run("--demo-pageviews", "500", "sites", "list", "--format", "json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "built-in emulator with demo data" not in result.stderr
    assert "--emulator" in result.stderr


def test_a_changed_export_plan_is_a_usage_error(tmp_path: Path) -> None:
    assert run(*EMULATOR, "export", "--out", str(tmp_path), "--quiet",
               "--entities", "sites").exit_code == 0
    result = run(*EMULATOR, "export", "--out", str(tmp_path), "--quiet",
                 "--entities", "events")
    assert result.exit_code == 2
    assert "other arguments" in result.stderr


def test_an_interrupted_export_exits_130_with_a_resume_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Export.progress

    async def interrupted(self: Export) -> Any:
        async for event in original(self):
            yield event
            if event.kind == "discovered":
                signal.raise_signal(signal.SIGINT)  # Ctrl-C, as the terminal sends it

    monkeypatch.setattr(Export, "progress", interrupted)
    monkeypatch.setattr("sys.argv", ["fathom-async", "--token", SECRET, "export", "--out",
                                     str(tmp_path)])
    started = datetime.now(timezone.utc).date()
    result = run(*EMULATOR, "export", "--out", str(tmp_path))
    assert result.exit_code == 130
    assert "Resume with:" in result.stderr
    assert f"export --out {tmp_path}" in result.stderr
    assert SECRET not in result.output
    # The default dates move at midnight: the resume command pins the ones this run used.
    pinned = re.search(r"--from (\S+) --to (\S+)", result.stderr)
    assert pinned is not None
    first, last = (date.fromisoformat(day) for day in pinned.groups())
    assert last - first == timedelta(days=89)
    assert last in {started, datetime.now(timezone.utc).date()}


def test_the_resume_command_keeps_dates_the_user_gave() -> None:
    command = _cli._resume_command(["export", "--from=2024-01-01"],
                                   [("--from", "2024-03-01"), ("--to", "2024-03-31")])
    assert command == "fathom-async export --from=2024-01-01 --to 2024-03-31"


def test_a_bad_export_date_exits_2_before_any_request(tmp_path: Path) -> None:
    result = run(*EMULATOR, "export", "--out", str(tmp_path), "--from", "yesterday")
    assert result.exit_code == 2
    assert "--from" in result.stderr
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_the_token_is_never_echoed(tmp_path: Path) -> None:
    result = run("--token", SECRET, "--base-url", "http://127.0.0.1:9/v1", "sites", "list")
    assert result.exit_code == 1
    assert "could not connect" in result.stderr
    assert SECRET not in result.output
    config = tmp_path / "config.ini"
    config.write_text(f"[fathom]\ntoken = {SECRET}\nbase_url = http://127.0.0.1:9/v1\n")
    result = run("--config", str(config), "sites", "list")
    assert result.exit_code == 1
    assert SECRET not in result.output


def test_a_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("--config", str(tmp_path / "nope.ini"), "sites", "list")
    assert result.exit_code == 2


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_reads_in_every_format(fmt: str) -> None:
    for args in (["sites", "list"], ["events", "list"], ["current", "--detailed"],
                 ["aggregate", "--field-grouping", "pathname", "--limit", "3",
                  "--sort-by", "pageviews:desc", "--from", "2020-01-01",
                  "--filter", "pathname:is not:/nothing"]):
        result = run(*EMULATOR, *args, "--format", fmt)
        assert result.exit_code == 0, (args, result.output)
        assert result.stdout.strip()
        if fmt == "json":
            json.loads(result.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ["aggregate", "--limit", "5000"],
        ["aggregate", "--filter", "pathname-is-/"],
        ["aggregate", "--from", "2024-13-01"],
        ["export", "--shard", "3/2", "--quiet"],
        ["export", "--shard", "half", "--quiet"],
        ["export", "--from", "yesterday", "--quiet"],
        ["export", "--entities", "visitors", "--quiet"],
        ["aggregate", "--entity", "session"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    result = run(*EMULATOR, *args)
    assert result.exit_code == 2, result.output


def test_resume_command_drops_the_token() -> None:
    command = _cli._resume_command(["--token", SECRET, "export", f"--token={SECRET}",
                                    "--out", "my dir"])
    assert command == "fathom-async export --out 'my dir'"


def test_emulator_command_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr("fathom_async.testing.__main__.main", lambda argv: seen.append(argv))
    result = run("--seed", "3", "emulator", "--port", "0", "--time-scale", "60")
    assert result.exit_code == 0
    assert seen == [["--host", "127.0.0.1", "--port", "0", "--seed", "3",
                     "--pageviews", "20000", "--time-scale", "60.0"]]
    result = run("emulator", "--no-rate-limits")
    assert result.exit_code == 0
    assert seen[1][-1] == "--no-rate-limits"
