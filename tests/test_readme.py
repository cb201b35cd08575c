"""Every Python example in README.md runs as it stands, against the emulator.

The examples are written as a user would write them (`FathomClient()` with the token
from the environment), so the test points `FATHOM_API_TOKEN` and `FATHOM_BASE_URL` at
an emulator that holds the README's site, CDBUGS.
"""

from __future__ import annotations

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
        monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))  # not the user's ~/.dlt
        monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
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
    """A complete program (`asyncio.run(...)`, or a plain `main()` for dlt's blocking
    runs): it runs as its own process."""
    runs = "asyncio.run(" in block or block.rstrip().endswith("\nmain()")
    return runs and not _test_file(block)


def _test_file(block: str) -> str | None:
    """The file name of a block that is a pytest file (`# conftest.py`, `# test_x.py`)."""
    first = block.split("\n", 1)[0]
    match = re.fullmatch(r"# ((?:conftest|test_\w+)\.py)", first)
    return match.group(1) if match else None


def test_every_example_is_a_complete_program_or_a_test_file() -> None:
    """Nothing to paste into a running loop: each example runs as it stands."""
    for index, block in enumerate(BLOCKS):
        assert _is_program(block) or _test_file(block), f"README example {index + 1}"
        assert not re.search(r"(?m)^(async with|await|async for) ", block), index + 1


# Each program runs as a user runs it, in its own interpreter, against the emulator in
# this loop. Report slots are Fathom's (10 a minute, shared by the process), so an
# example stays within ten report calls and never waits for a slot.
@pytest.mark.parametrize("index", [
    index for index, block in enumerate(BLOCKS) if _is_program(block)
])
async def test_readme_program_runs(readme_api: FakeFathom, index: int) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BLOCKS[index],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=100)
    assert process.returncode == 0, err.decode()
    assert out.strip(), "a README program should show what it did"


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
    assert commands[0].endswith("fathom-async --emulator export")
    assert "pip install -q -e '.[cli,speedups]'" in commands[0]
    assert "pip install -q -e '.[dev]'" in commands[1]
