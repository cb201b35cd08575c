"""Every example in README.md and docs/ runs as it stands, against `fathom-async emulator`.

The examples are extracted from the pages here, never copied into the tests: a user
who pastes one into a file and runs it with `FATHOM_API_TOKEN` and `FATHOM_BASE_URL`
pointing at `fathom-async emulator` sees what the test sees.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import griffe
import pytest

from tests.docs_examples import (
    NOTEBOOK_RUNNER,
    PAGES,
    README,
    ROOT,
    Block,
    Emulator,
    all_blocks,
    blocks,
    emulator_process,
    page_files,
)
from tests.docs_examples import (
    run as run_command,
)
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, for pytest

BLOCKS = all_blocks()
PROGRAMS = [block for block in BLOCKS if block.is_program]
#: Public modules whose names the API reference documents.
REFERENCE = ("fathom_async", "fathom_async.types", "fathom_async.limits",
             "fathom_async.export", "fathom_async.dlt", "fathom_async.testing")


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with emulator_process("--no-rate-limits") as running:
        yield running


@pytest.fixture
def user_env(emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> dict[str, str]:
    return emulator.env(REDIS_URL=redis_server.url, DLT_DATA_DIR=str(tmp_path / "dlt"))


#: Seconds an example may take. They take one to five; the bound is under Fathom's
#: report minute, so an example that spends more than its ten report slots and waits
#: for the next minute fails here instead of slowing every run of the suite.
EXAMPLE_TIMEOUT = 50


async def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    return await run_command(argv, env, cwd, timeout=EXAMPLE_TIMEOUT)


# -- what the pages hold ------------------------------------------------------------------


def test_there_is_a_page_for_every_guide_and_recipe() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert str(page.relative_to(ROOT / "docs")) in nav, page


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
def test_every_example_is_a_complete_program_a_file_or_a_notebook_cell(block: Block) -> None:
    """Nothing to paste into a running loop (but a notebook): each example runs as it stands."""
    assert block.is_program or block.file_name or block.is_cell, block.name
    if not block.is_cell:
        assert not re.search(r"(?m)^(async with|await|async for) ", block.code), block.name


def test_the_examples_show_every_resource_and_tool() -> None:
    text = "\n".join(block.code for block in BLOCKS)
    for call in ("account.get", "token.get", "sites.create", "sites.update", "sites.delete",
                 "events.create", "events.set_currency", "events.delete_by_name",
                 "milestones.create", "aggregations.query", "current_visitors.get",
                 "with_options", "ExportSpec", "FakeFathom", "RedisRateLimits",
                 "ReportCache", "to_pandas", "plan(", "fathom_source"):
        assert call in text, call


# -- they run -----------------------------------------------------------------------------


# Each program runs as a user runs it: its own interpreter, the token and base URL in
# the environment, `fathom-async emulator` serving the demo data. Report slots are
# Fathom's (10 a minute, shared by the process), so an example stays within ten
# report calls and never waits for a slot.
@pytest.mark.parametrize("block", PROGRAMS, ids=lambda block: block.name)
async def test_the_example_program_runs(block: Block, user_env: dict[str, str],
                                        tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(block.code, encoding="utf-8")
    code, out, err = await run([sys.executable, "example.py"], user_env, tmp_path)
    assert code == 0, err
    assert out.strip(), "an example should show what it did"


PYTEST_PAGES = sorted({block.page for block in BLOCKS
                       if block.file_name and re.fullmatch(r"(conftest|test_\w+)\.py",
                                                           block.file_name)})


@pytest.mark.parametrize("page", PYTEST_PAGES, ids=lambda page: page.name)
async def test_the_pytest_files_of_a_page_pass_as_a_test_suite(
    page: Path, user_env: dict[str, str], tmp_path: Path
) -> None:
    files = page_files(page)
    assert any(name.startswith("test_") for name in files)
    for name, source in files.items():
        (tmp_path / name).write_text(source, encoding="utf-8")
    code, out, err = await run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
         str(tmp_path)], user_env, tmp_path)
    assert code == 0, out + err
    assert " passed" in out


NOTEBOOKS = sorted({block.page for block in BLOCKS if block.is_cell})


@pytest.mark.parametrize("page", NOTEBOOKS, ids=lambda page: page.name)
async def test_a_notebook_page_runs_cell_after_cell(
    page: Path, user_env: dict[str, str], tmp_path: Path
) -> None:
    cells = [block.code for block in blocks(page) if block.is_cell]
    (tmp_path / "cells.json").write_text(json.dumps(cells), encoding="utf-8")
    (tmp_path / "runner.py").write_text(NOTEBOOK_RUNNER, encoding="utf-8")
    code, out, err = await run([sys.executable, "runner.py", "cells.json"], user_env, tmp_path)
    assert code == 0, err
    assert out.strip()


# -- the API reference --------------------------------------------------------------------


@pytest.fixture(scope="module")
def package() -> Any:
    """The package as mkdocstrings sees it: read by griffe from the sources."""
    loader = griffe.GriffeLoader()
    loaded = loader.load("fathom_async")
    loader.resolve_aliases(implicit=False, external=False)
    return loaded


def _documented(package: Any, module_name: str) -> Iterator[tuple[str, Any]]:
    """Every public name of a module, and the public methods and properties of its
    classes, as griffe objects (an import is followed to what it names)."""
    module = package if module_name == "fathom_async" else package[module_name[13:]]
    for name in importlib.import_module(module_name).__all__:
        target = module[name]
        target = target.final_target if target.is_alias else target
        yield f"{module_name}.{name}", target
        if target.is_class:
            for member_name, member in target.members.items():
                if member_name.startswith("_") or member.is_alias:
                    continue
                if member.is_function or "property" in member.labels:
                    yield f"{module_name}.{name}.{member_name}", member


@pytest.mark.parametrize("module_name", REFERENCE)
def test_every_public_name_has_a_docstring(package: Any, module_name: str) -> None:
    """The API reference is made from docstrings: nothing public goes without one."""
    missing = [name for name, target in _documented(package, module_name)
               if target.docstring is None or not target.docstring.value.strip()]
    assert not missing


# -- the README's two commands and CI -----------------------------------------------------


def test_ci_runs_the_readme_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    command = text.split("<!-- test-command -->\n```bash\n", 1)[1].split("\n", 1)[0]
    assert "python3 -m venv .venv && " in command
    assert "apt-get install -y -qq redis-server" in command
    assert "pytest --cov" in command
    assert "mkdocs build --strict" in command
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


def _docstrings(package: Any) -> Iterator[tuple[str, str]]:
    """The docstring of every reference module and of every name it documents."""
    for module_name in REFERENCE:
        module = package if module_name == "fathom_async" else package[module_name[13:]]
        yield module_name, module.docstring.value if module.docstring else ""
        for name, target in _documented(package, module_name):
            yield name, target.docstring.value if target.docstring else ""


def test_the_reference_shows_no_example_that_could_not_run(package: Any) -> None:
    """Docstrings become reference pages: a snippet there is an example nobody runs.

    They say what to call in prose and leave whole programs to the guide, whose
    examples the tests above run.
    """
    snippets = []
    for name, doc in _docstrings(package):
        text = inspect.cleandoc(doc)
        if "```python" in text or re.search(r"\n\n    \S", text):
            snippets.append(name)
    assert not snippets
