"""The command line as a cron job, CI step or shard worker runs it.

No terminal, no one watching: a missing token must fail loudly instead of exporting
demo data; progress must reach the log as plain lines at a steady interval; several
processes must share one rate-limit budget through Redis; the demo data is the same
from every entry point; and a missing `cli` extra says what to install.

The progress interval runs in fake time (looptime) or on a clock the test sets, never
on the wall clock.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from fathom_async import _cli
from fathom_async.export import ExportProgress
from fathom_async.testing import FakeFathom
from fathom_async.testing import __main__ as testing_main
from fathom_async.testing._fake import DEMO_PAGEVIEWS, DEMO_SEED
from tests.emulator_thread import emulator_thread
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, for pytest

Kind = Literal["started", "discovered", "chunk", "finished"]
ROOT = Path(__file__).resolve().parent.parent
SECRET = "cron-secret-token-0123456789"
PASSWORD = "redis-pass-5f4e3d2c1b"
EMULATOR = ["--emulator", "--demo-pageviews", "300"]
ENTITY_ONLY = ["--entities", "sites,events,milestones"]  # no report requests: fast
PROGRESS_LINE = re.compile(
    r"^export( (started|discovered|finished) \([^)]*\))?: \d+/\d+ requests, \d+ rows,"
    r" budget left: entity \d+, reports \d+, ETA (\?|\d+s|\d+m\d\ds|\d+h\d\dm),"
    r" elapsed \d+(s|m\d\ds|h\d\dm)$"
)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    environment = {"FATHOM_API_TOKEN": "", "FATHOM_BASE_URL": "", "FATHOM_CONFIG": "/nonexistent",
                   "FATHOM_REDIS_URL": ""}
    environment.update(env or {})
    return CliRunner().invoke(_cli.cli, list(args), env=environment, catch_exceptions=False)


def progress_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("export")]


# -- 1. no demo data by accident -------------------------------------------------------------


COMMANDS = [
    ["sites", "list"],
    ["events", "list", "SITE"],
    ["aggregate", "--site", "SITE", "--aggregates", "pageviews"],
    ["current", "SITE"],
    ["export", "--quiet"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_without_a_token_every_command_exits_2_before_any_request(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[object] = []  # a client made would be a request about to go out
    monkeypatch.setattr(_cli, "FathomClient", lambda *args, **kwargs: made.append(args))
    monkeypatch.chdir(tmp_path)
    result = run(*command)
    assert result.exit_code == 2, result.output
    assert made == []
    assert result.stdout == ""
    for named in ("--token", "$FATHOM_API_TOKEN", "/nonexistent", "--emulator"):
        assert named in result.stderr, named
    assert "built-in emulator with demo data (" not in result.stderr  # nothing was served
    assert list(tmp_path.iterdir()) == []  # export wrote nothing, not even a manifest


def test_the_message_names_the_config_file_in_use(tmp_path: Path) -> None:
    config = tmp_path / "fathom.ini"
    config.write_text("[fathom]\nbase_url = http://127.0.0.1:9/v1\n")  # no token in it
    result = run("--config", str(config), "sites", "list")
    assert result.exit_code == 2
    assert str(config) in result.stderr
    result = run("sites", "list", env={"FATHOM_CONFIG": str(config)})
    assert result.exit_code == 2
    assert str(config) in result.stderr


def test_the_default_config_file_is_named_with_its_full_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli.cli, ["sites", "list"], env={
        "FATHOM_API_TOKEN": "", "FATHOM_CONFIG": "", "HOME": str(tmp_path)})
    assert result.exit_code == 2
    assert str(tmp_path / ".config" / "fathom-async" / "config.ini") in result.stderr


@pytest.mark.parametrize("source", ["option", "environment", "config"])
def test_a_token_from_any_source_gets_past_the_check_and_is_never_printed(
    source: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.ini"
    config.write_text(f"[fathom]\ntoken = {SECRET}\n")
    args = {"option": ["--token", SECRET], "environment": [],
            "config": ["--config", str(config)]}[source]
    env = {"FATHOM_API_TOKEN": SECRET} if source == "environment" else {}
    result = run(*args, "--base-url", "http://127.0.0.1:9/v1", "sites", "list", env=env)
    assert result.exit_code == 1  # it tried the API (nothing listens there)
    assert "could not connect" in result.stderr
    assert SECRET not in result.output


def test_the_emulator_is_used_only_on_request_and_says_so_in_one_line(
    tmp_path: Path
) -> None:
    result = run(*EMULATOR, "--token", SECRET, "export", "--out", str(tmp_path), "--quiet",
                 *ENTITY_ONLY)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "Using the built-in emulator with demo data (--emulator; rate limits 60x faster)."
    ]
    assert (tmp_path / "sites.jsonl").exists()
    assert SECRET not in result.output


def test_the_help_says_a_token_or_emulator_is_needed() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "needs a token" in result.stdout
    assert "fathom-async --emulator export" in result.stdout
    assert "--redis-url" in result.stdout
    assert "--limiter-key" in result.stdout
    assert "--emulator" in (_cli.__doc__ or "")
    assert "demo data by accident" not in (_cli.__doc__ or "")  # a docstring, not a ticket


def test_subcommand_help_needs_no_token() -> None:
    result = run("export", "--help")
    assert result.exit_code == 0
    assert "--progress-interval" in result.stdout


def test_the_emulator_command_needs_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr("fathom_async.testing.__main__.main", seen.append)
    result = run("emulator", "--port", "0")
    assert result.exit_code == 0, result.output
    assert len(seen) == 1


# -- 2. progress without a terminal ----------------------------------------------------------


def test_export_off_a_terminal_logs_a_line_per_step_at_interval_zero(tmp_path: Path) -> None:
    result = run(*EMULATOR, "export", "--out", str(tmp_path), *ENTITY_ONLY,
                 "--progress-interval", "0")
    assert result.exit_code == 0, result.output
    lines = progress_lines(result)
    assert lines[0].startswith("export started (starting): 0/")
    assert lines[1].startswith("export discovered (3 sites): ")
    assert lines[-1].startswith("export finished (done): 7/7 requests, 9 rows, ")
    steps = [line for line in lines if line.startswith("export: ")]
    assert len(steps) == 7  # one per chunk: the site list, 3 x events, 3 x milestones
    for line in lines:
        assert PROGRESS_LINE.match(line), line
    assert "\r" not in result.stderr  # no bar redrawn in place
    assert "\x1b[" not in result.stderr  # no terminal escapes in a log


def test_export_off_a_terminal_logs_only_milestones_within_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cli, "progress_clock", lambda: 0.0)  # the interval never passes
    result = run(*EMULATOR, "export", "--out", str(tmp_path), *ENTITY_ONLY)
    assert result.exit_code == 0, result.output
    kinds = [line.split(":")[0] for line in progress_lines(result)]
    assert kinds == ["export started (starting)", "export discovered (3 sites)",
                     "export finished (done)"]


def test_quiet_logs_nothing_but_the_emulator_line(tmp_path: Path) -> None:
    result = run(*EMULATOR, "export", "--out", str(tmp_path), *ENTITY_ONLY, "--quiet",
                 "--progress-interval", "0")
    assert result.exit_code == 0, result.output
    assert progress_lines(result) == []


def test_the_interval_is_ten_seconds_unless_given() -> None:
    assert _cli.PROGRESS_INTERVAL == 10.0
    option = next(p for p in _cli.export.params if p.name == "progress_interval")
    assert option.default == _cli.PROGRESS_INTERVAL
    assert run("--emulator", "export", "--progress-interval", "-1").exit_code == 2


def event(kind: Kind = "chunk", done: int = 0, *, rows: int = 0, eta: float | None = 60.0,
          message: str = "") -> ExportProgress:
    return ExportProgress(kind=kind, requests_done=done, requests_planned=40, rows=rows,
                          chunks_done=done, chunks_resumed=0, truncated=0,
                          budget={"entity": 1990, "reports": 10 - done % 10},
                          eta_seconds=eta, message=message)


def log_console() -> tuple[Console, io.StringIO]:
    sink = io.StringIO()
    return Console(file=sink, force_terminal=False, soft_wrap=True), sink


@pytest.mark.looptime
async def test_lines_come_at_a_steady_interval_while_the_work_runs() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def events() -> AsyncIterator[ExportProgress]:
        yield event("started", message="starting")
        yield event("discovered", message="3 sites")
        for done in range(1, 10):  # a step every 3 s of fake time, t = 3 .. 27
            await asyncio.sleep(3)
            yield event(done=done, rows=100 * done, eta=90.0 - 3 * done)
        await asyncio.sleep(2)
        yield event("finished", 9, rows=900, eta=0.0, message="done")

    stamps: list[float] = []

    class Log(io.StringIO):
        def write(self, text: str) -> int:
            stamps.extend(loop.time() - start for _ in range(text.count("\n")))
            return super().write(text)

    sink = Log()
    console = Console(file=sink, force_terminal=False, soft_wrap=True)
    last = await _cli.report_progress(events(), interval=10, console=console)
    lines = sink.getvalue().splitlines()
    assert last is not None
    assert last.kind == "finished"
    assert stamps == pytest.approx([0, 0, 10, 20, 29])
    assert lines[0].startswith("export started (starting): 0/40 requests")
    assert lines[2] == ("export: 3/40 requests, 300 rows, budget left: entity 1990,"
                        " reports 7, ETA 1m20s, elapsed 10s")  # seen at t=9: ETA 81 - 1
    assert lines[3] == ("export: 6/40 requests, 600 rows, budget left: entity 1990,"
                        " reports 4, ETA 1m10s, elapsed 20s")
    assert lines[4].startswith("export finished (done): 9/40 requests, 900 rows")
    assert loop.time() - start == pytest.approx(29)  # the timer kept nobody waiting


@pytest.mark.looptime
async def test_a_stalled_export_still_logs_and_says_for_how_long() -> None:
    async def events() -> AsyncIterator[ExportProgress]:
        yield event("started")
        await asyncio.sleep(1)
        yield event(done=1, eta=100.0)
        await asyncio.sleep(35)  # stuck: e.g. waiting out a long 429 pause
        yield event("finished", 2, eta=0.0)

    console, sink = log_console()
    await _cli.report_progress(events(), interval=10, label="load", console=console)
    lines = sink.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[1].endswith("ETA 1m31s, elapsed 10s")  # 9 s since the step: not stalled
    assert lines[2].endswith("ETA 1m21s, elapsed 20s, no new step for 19s")
    assert lines[3].endswith("ETA 1m11s, elapsed 30s, no new step for 29s")
    assert all(line.startswith("load") for line in lines)


@pytest.mark.looptime
async def test_the_timer_counts_from_the_last_line_and_waits_for_a_first_event() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def events() -> AsyncIterator[ExportProgress]:
        await asyncio.sleep(25)  # e.g. a slow manifest load: nothing to report yet
        yield event("started")
        await asyncio.sleep(5)
        yield event("discovered")  # t=30: a line, so the next one is due at 40, not 35
        await asyncio.sleep(12)
        yield event("finished")

    stamps: list[float] = []

    class Log(io.StringIO):
        def write(self, text: str) -> int:
            stamps.extend(loop.time() - start for _ in range(text.count("\n")))
            return super().write(text)

    console = Console(file=Log(), force_terminal=False, soft_wrap=True)
    await _cli.report_progress(events(), interval=10, console=console)
    assert stamps == pytest.approx([25, 30, 40, 42])


async def test_an_overdue_line_goes_out_with_the_next_event() -> None:
    now = [0.0]  # a clock the events move: nothing waits on it

    async def events() -> AsyncIterator[ExportProgress]:
        for done in range(1, 7):
            now[0] += 4
            yield event(done=done)

    console, sink = log_console()
    await _cli.report_progress(events(), interval=10, console=console,
                               clock=lambda: now[0])
    lines = sink.getvalue().splitlines()
    assert [line.split(" requests")[0] for line in lines] == ["export: 3/40", "export: 6/40"]


async def test_interval_zero_is_a_line_per_event_and_quiet_is_none() -> None:
    async def events() -> AsyncIterator[ExportProgress]:
        for done in range(5):
            yield event(done=done)

    console, sink = log_console()
    await _cli.report_progress(events(), interval=0, console=console)
    assert len(sink.getvalue().splitlines()) == 5
    console, sink = log_console()
    last = await _cli.report_progress(events(), quiet=True, interval=0, console=console)
    assert sink.getvalue() == ""
    assert last is not None
    assert last.requests_done == 4


async def test_on_a_terminal_it_draws_a_bar() -> None:
    async def events() -> AsyncIterator[ExportProgress]:
        yield event(done=3, rows=30)

    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=120)
    last = await _cli.report_progress(events(), console=console, label="export")
    assert last is not None
    assert "3/40 requests" in sink.getvalue()
    assert "budget left: entity 1990, reports 7" in sink.getvalue()


async def test_the_work_failing_or_being_cancelled_ends_the_reporting() -> None:
    closed: list[bool] = []

    async def failing() -> AsyncIterator[ExportProgress]:
        yield event("started")
        raise ValueError("the export failed")

    console, _ = log_console()
    with pytest.raises(ValueError, match="the export failed"):
        await _cli.report_progress(failing(), interval=10, console=console)

    reached = asyncio.Event()

    async def endless() -> AsyncIterator[ExportProgress]:
        try:
            yield event("started")
            reached.set()
            await asyncio.Event().wait()  # an export that never ends
            yield event()
        finally:
            closed.append(True)

    task = asyncio.create_task(_cli.report_progress(endless(), interval=10, console=console))
    await reached.wait()
    task.cancel()  # Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [True]  # the events were closed: an Export stops its work


def test_durations_read_well_in_a_log() -> None:
    assert [_cli._duration(s) for s in (0, 42.4, 59.6, 187, 3599, 7500)] == [
        "0s", "42s", "1m00s", "3m07s", "59m59s", "2h05m"]
    stalled = _cli.describe_progress(event(eta=None), elapsed=75, since_event=75,
                                     stalled=True)
    assert stalled == ("export: 0/40 requests, 0 rows, budget left: entity 1990, reports 10,"
                       " ETA ?, elapsed 1m15s, no new step for 1m15s")


# -- 3. one budget from the command line, through Redis ---------------------------------------


@pytest.fixture(scope="module")
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The module's redis-server, password-protected: the URL carries a password."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.config_set("requirepass", PASSWORD)
    client.close()
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    try:
        yield url
    finally:
        client = redis.Redis.from_url(url)
        client.config_set("requirepass", "")
        client.close()


def grants(url: str, key: str, bucket: str = "entity") -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        count: Any = client.zcard(f"fathom_async:{{{key}}}:{bucket}:grants")  # an int
        return int(count)
    finally:
        client.close()


def finished_budget(result: Result) -> int:
    line = next(line for line in progress_lines(result) if line.startswith("export finished"))
    match = re.search(r"budget left: entity (\d+)", line)
    assert match is not None
    return int(match.group(1))


def requests_this_run(result: Result) -> int:
    match = re.search(r"(\d+) requests this run", result.stdout)
    assert match is not None
    return int(match.group(1))


def test_two_runs_sharing_a_key_spend_one_budget(redis_url: str, tmp_path: Path) -> None:
    key = f"cron-{uuid.uuid4().hex[:8]}"
    shared = [*EMULATOR, "--redis-url", redis_url, "--limiter-key", key]
    first = run(*shared, "export", "--out", str(tmp_path / "a"), *ENTITY_ONLY)
    second = run(*shared, "export", "--out", str(tmp_path / "b"), *ENTITY_ONLY)
    other = run(*EMULATOR, "--limiter-key", f"{key}-other", "export",
                "--out", str(tmp_path / "c"), *ENTITY_ONLY, env={"FATHOM_REDIS_URL": redis_url})
    for result in (first, second, other):
        assert result.exit_code == 0, result.output
        assert PASSWORD not in result.output
    spent_first, spent_second = requests_this_run(first), requests_this_run(second)
    assert spent_first == spent_second == 7
    # The emulator's window is an hour / 60 = a minute: both runs fall in one window.
    assert grants(redis_url, key) == spent_first + spent_second
    assert finished_budget(first) == 2000 - spent_first
    assert finished_budget(second) == 2000 - spent_first - spent_second  # the first's count
    assert finished_budget(other) == 2000 - requests_this_run(other)  # another budget


def test_against_the_api_the_default_key_is_per_token_and_hides_it(
    redis_url: str, tmp_path: Path
) -> None:
    with emulator_thread(pageviews=200, token_name="cron") as (fake, token):
        base = ["--token", token, "--base-url", fake.url, "--redis-url", redis_url]
        results = [run(*base, "sites", "list", "--format", "json") for _ in range(2)]
        served = len(fake.store.requests)
    for result in results:
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)) == 3
        assert token.split("|")[-1] not in result.output
        assert PASSWORD not in result.output
    assert served == 2
    key = _cli._default_limiter_key(token)
    assert grants(redis_url, key) == 2  # both processes counted in the token's budget
    assert token.split("|")[-1] not in key


def test_limiter_key_without_redis_url_is_a_usage_error() -> None:
    result = run("--emulator", "--limiter-key", "acme", "sites", "list")
    assert result.exit_code == 2
    assert "--redis-url" in result.stderr


def test_redis_url_without_redis_py_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # as if not installed
    url = f"redis://:{PASSWORD}@127.0.0.1:6379/0"
    for args in (["--emulator"], ["--token", SECRET]):
        result = run(*args, "--redis-url", url, "sites", "list")
        assert result.exit_code == 2, result.output
        assert "pip install 'fathom-async[redis]'" in result.stderr
        assert "built-in emulator" not in result.stderr  # stopped before anything ran
        assert PASSWORD not in result.output
        assert SECRET not in result.output


@pytest.mark.parametrize("url", [f"http://user:{PASSWORD}@127.0.0.1:6379/0",
                                 f"redis://user:{PASSWORD}@[::1"])
def test_a_bad_redis_url_is_a_usage_error_that_hides_the_password(url: str) -> None:
    result = run("--token", SECRET, "--redis-url", url, "sites", "list")
    assert result.exit_code == 2, result.output
    assert "--redis-url" in result.stderr
    assert PASSWORD not in result.output
    assert SECRET not in result.output


def test_unreachable_redis_fails_closed_without_showing_the_password(
    tmp_path: Path
) -> None:
    from tests.redis_server import free_port

    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    result = run(*EMULATOR, "--redis-url", url, "sites", "list")
    assert result.exit_code == 1
    assert "RateLimiterUnavailableError" in result.stderr
    assert PASSWORD not in result.output


def test_the_resume_command_keeps_no_secret() -> None:
    plain = "redis://127.0.0.1:6379/0"
    command = _cli._resume_command(["--token", SECRET, "--redis-url", plain, "--limiter-key",
                                    "acme", "export", "--shard", "1/4"])
    assert command == f"fathom-async --redis-url {plain} --limiter-key acme export --shard 1/4"
    for args in (["--redis-url", f"redis://:{PASSWORD}@h:6379/0"],
                 [f"--redis-url=redis://u:{PASSWORD}@h/0"],
                 ["--redis-url", f"redis://h/0?password={PASSWORD}"]):
        command = _cli._resume_command([*args, "export", f"--token={SECRET}"])
        assert command.startswith("fathom-async export  # with $FATHOM_REDIS_URL set")
        assert PASSWORD not in command
        assert SECRET not in command
    assert _cli._resume_command(["export", "--token"]) == "fathom-async export"


# -- 4. one set of emulator defaults ----------------------------------------------------------


def test_every_entry_point_serves_the_same_demo_data(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (DEMO_SEED, DEMO_PAGEVIEWS) == (0, 20_000)
    parameters = inspect.signature(FakeFathom).parameters
    fake_defaults = (parameters["seed"].default, parameters["pageviews"].default)
    options = testing_main.parse_args([])
    module_defaults = (options.seed, options.pageviews)

    served: list[list[str]] = []
    monkeypatch.setattr("fathom_async.testing.__main__.main", served.append)
    assert run("emulator").exit_code == 0
    argv = served[0]
    command_defaults = (int(argv[argv.index("--seed") + 1]),
                        int(argv[argv.index("--pageviews") + 1]))

    made: list[dict[str, Any]] = []

    class Recording(FakeFathom):
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)
            super().__init__(**{**kwargs, "pageviews": 100})  # the same sites, less traffic

    monkeypatch.setattr("fathom_async.testing.FakeFathom", Recording)
    result = run("--emulator", "sites", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    flag_defaults = (made[0]["seed"], made[0]["pageviews"])

    assert fake_defaults == module_defaults == command_defaults == flag_defaults == (
        DEMO_SEED, DEMO_PAGEVIEWS)
    reference = FakeFathom(pageviews=0)  # never started: only its store to close
    try:
        assert [site["id"] for site in json.loads(result.stdout)] == [
            site.id for site in reference.sites]
    finally:
        reference.store.close()


def test_the_emulator_command_takes_demo_pageviews_too(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[list[str]] = []
    monkeypatch.setattr("fathom_async.testing.__main__.main", served.append)
    assert run("--seed", "4", "--demo-pageviews", "123", "emulator").exit_code == 0
    assert run("emulator", "--pageviews", "77").exit_code == 0
    assert [argv[5:8] for argv in served] == [["4", "--pageviews", "123"],
                                              ["0", "--pageviews", "77"]]


# -- 5. without the cli extra -----------------------------------------------------------------


def script_target() -> str:
    """The `fathom-async` script's target, as pyproject.toml declares it."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^fathom-async = "([\w.]+:\w+)"$', text, re.MULTILINE)
    assert match is not None
    return match.group(1)


def without_click(tmp_path: Path) -> dict[str, str]:
    """An environment whose interpreters cannot import click (as without the extra)."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['click'] = None\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path), "FATHOM_API_TOKEN": ""}


@pytest.mark.parametrize("how", ["script", "module"])
def test_without_the_cli_extra_it_says_what_to_install(how: str, tmp_path: Path) -> None:
    module, function = script_target().split(":")
    if how == "script":
        command = [sys.executable, "-c",
                   f"from {module} import {function}; {function}()", "export"]
    else:
        command = [sys.executable, "-m", "fathom_async", "export"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env=without_click(tmp_path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "pip install 'fathom-async[cli]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_the_entry_runs_the_command_line_when_the_extra_is_there(tmp_path: Path) -> None:
    module, function = script_target().split(":")
    for command in ([sys.executable, "-c", f"from {module} import {function}; {function}()",
                     "--help"],
                    [sys.executable, "-m", "fathom_async", "--help"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Usage: fathom-async" in done.stdout


def test_the_entry_module_imports_nothing_of_the_extra(tmp_path: Path) -> None:
    code = "import sys, fathom_async.__main__; print('click' in sys.modules, 'rich' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.stdout.split() == ["False", "False"]


def test_the_entry_in_process(monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from fathom_async.__main__ import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "Usage: fathom-async" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "click", None)
    monkeypatch.delitem(sys.modules, "fathom_async._cli")  # imported afresh, without click
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == ("fathom-async: the command line needs the 'cli' extra (click is"
                            " not installed):\n  pip install 'fathom-async[cli]'\n")
    assert captured.out == ""


def test_other_import_errors_are_not_taken_for_a_missing_extra(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from fathom_async.__main__ import main

    monkeypatch.setitem(sys.modules, "fathom_async._cli", None)
    with pytest.raises(ModuleNotFoundError):
        main(["--help"])


# -- helpers ----------------------------------------------------------------------------------


