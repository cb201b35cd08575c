"""Every Python example in README.md runs, in order, against the emulator.

The examples are written as a user would write them (`FathomClient()` with the token
from the environment), so the test points `FATHOM_API_TOKEN` and `FATHOM_BASE_URL` at
an emulator that holds the README's site, CDBUGS.
"""

from __future__ import annotations

import ast
import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fathom_async.testing import FakeFathom, Pageview
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, for pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


@pytest.fixture
async def readme_api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[FakeFathom]:
    async with FakeFathom(seed=9, pageviews=500, enforce_rate_limits=False) as fake:
        site = fake.store.add_site("Bugs Bunny Portfolio", id="CDBUGS")
        fake.store.add_event(site.id, "Signed up")
        now = datetime.now(timezone.utc)
        fake.store.add_pageviews(
            Pageview(site_id=site.id, timestamp=now - timedelta(days=i % 20, hours=1),
                     pathname=f"/page/{i % 7}", country_code="NL")
            for i in range(200)
        )
        monkeypatch.setenv("FATHOM_API_TOKEN", fake.token)
        monkeypatch.setenv("FATHOM_BASE_URL", fake.url)
        monkeypatch.setenv("REDIS_URL", redis_server.url)
        monkeypatch.chdir(tmp_path)
        yield fake


def test_the_readme_has_examples_of_every_resource() -> None:
    text = "\n".join(BLOCKS)
    for call in ("account.get", "token.get", "sites.create", "sites.update", "sites.delete",
                 "events.create", "events.set_currency", "events.delete_by_name",
                 "milestones.create", "aggregations.query", "current_visitors.get",
                 "with_options", "ExportSpec", "FakeFathom", "RedisRateLimits",
                 "ReportCache", "to_pandas", "plan("):
        assert call in text, call


def _is_program(block: str) -> bool:
    """A complete program (`asyncio.run(...)`): it runs as its own process."""
    return "asyncio.run(" in block and not _test_file(block)


def _test_file(block: str) -> str | None:
    """The file name of a block that is a pytest file (`# conftest.py`, `# test_x.py`)."""
    first = block.split("\n", 1)[0]
    match = re.fullmatch(r"# ((?:conftest|test_\w+)\.py)", first)
    return match.group(1) if match else None


# Snippets run in fake loop time (the export example waits for report slots), except
# the Redis ones: redis-py's socket timeouts must see real time. Complete programs run
# as a user runs them, in their own interpreter, against the emulator in this loop.
@pytest.mark.parametrize("index", [
    pytest.param(
        index,
        marks=[] if "RedisRateLimits" in block or _is_program(block) else [pytest.mark.looptime],
    )
    for index, block in enumerate(BLOCKS)
    if not _test_file(block)
])
async def test_readme_example_runs(
    readme_api: FakeFathom, index: int, capsys: pytest.CaptureFixture[str]
) -> None:
    if _is_program(BLOCKS[index]):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BLOCKS[index],
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=100)
        assert process.returncode == 0, err.decode()
        assert out.strip(), "a README program should show what it did"
        return
    code = compile(BLOCKS[index], f"README.md example {index + 1}", "exec",
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, {"__name__": "__readme__"})  # our own README
    if result is not None:
        await result
    assert capsys.readouterr().out.strip() or index > 0


async def test_the_readme_pytest_files_pass_as_a_test_suite(
    readme_api: FakeFathom, tmp_path: Path
) -> None:
    files = {_test_file(block): block for block in BLOCKS if _test_file(block)}
    assert "conftest.py" in files
    assert any(name.startswith("test_") for name in files if name)
    for name, block in files.items():
        assert name is not None
        (tmp_path / name).write_text(block, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
        "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
        str(tmp_path), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=100)
    assert process.returncode == 0, out.decode()
    assert " passed" in out.decode()


def test_ci_runs_the_readme_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    command = text.split("<!-- test-command -->\n```bash\n", 1)[1].split("\n", 1)[0]
    assert "python3 -m venv .venv && " in command
    assert "apt-get install -y -qq redis-server" in command
    assert "pytest --cov" in command
    script = (README.parent / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in script
    shown = subprocess.run(
        ["sed", "-n", "/<!-- test-command -->/{n;n;p;}", str(README)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert shown == command


def test_the_readme_opens_with_the_two_commands() -> None:
    commands = re.findall(r"```bash\n(.*?)\n```", README.read_text(encoding="utf-8"))
    assert commands[0].endswith("fathom-async export")
    assert "pip install -q -e '.[cli,speedups]'" in commands[0]
    assert "pip install -q -e '.[dev]'" in commands[1]
