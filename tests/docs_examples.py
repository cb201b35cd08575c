"""The code blocks of README.md and docs/, and the emulator they run against.

Every ```python block is one of:

- a **program** (it calls `asyncio.run(...)`, or ends with a plain `main()` for dlt's
  blocking runs): run as it stands, in its own interpreter;
- a **file** (its first line is `# name.py`): part of a set a page shows together
  (`conftest.py` and `test_*.py` run as a pytest suite; a recipe's `worker.py` or
  `app.py` is run by that recipe's test);
- a **notebook cell** (its first line is `# notebook cell`): a page's cells run in
  order in one namespace on one running loop, with top-level `await`, as Jupyter
  runs them.

Programs read the token and base URL from `$FATHOM_API_TOKEN` and `$FATHOM_BASE_URL`,
as a user's would; `emulator_process()` serves `fathom-async emulator`'s demo data,
whose site ids (CDBUGS, ...) are the ones the examples use.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
_FILE = re.compile(r"# ([\w./-]+\.py)")
CELL = "# notebook cell"


@dataclass(frozen=True)
class Block:
    page: Path
    number: int  # 1-based, within the page
    line: int  # where the block starts in the page
    code: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        """`name.py` for a block whose first line is `# name.py`."""
        match = _FILE.fullmatch(self.code.split("\n", 1)[0])
        return match.group(1) if match else None

    @property
    def is_cell(self) -> bool:
        return self.code.split("\n", 1)[0].strip() == CELL

    @property
    def is_program(self) -> bool:
        runs = "asyncio.run(" in self.code or self.code.rstrip().endswith("\nmain()")
        return runs and self.file_name is None and not self.is_cell


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [
        Block(page, number, text.count("\n", 0, match.start()) + 1, match.group(1))
        for number, match in enumerate(_BLOCK.finditer(text), start=1)
    ]


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page)]


def page_files(page: Path) -> dict[str, str]:
    """The `# name.py` blocks of one page, by file name."""
    return {b.file_name: b.code for b in blocks(page) if b.file_name is not None}


async def run(argv: list[str], env: dict[str, str], cwd: Path,
              timeout: float) -> tuple[int, str, str]:
    """Run a user's command to its end: (exit code, stdout, stderr); fail after `timeout` s."""
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.communicate()
        raise AssertionError(f"{argv} took more than {timeout} s") from None
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@dataclass(frozen=True)
class Emulator:
    url: str
    token: str

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a user's program sees: token and base URL, nothing else of ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FATHOM_")}
        env.update(FATHOM_API_TOKEN=self.token, FATHOM_BASE_URL=self.url,
                   RUNTIME__DLTHUB_TELEMETRY="false", **extra)
        return env


@contextmanager
def emulator_process(*options: str) -> Iterator[Emulator]:
    """`fathom-async emulator` on a free port, as a user starts it, until the block ends.

    The tests pass `--no-rate-limits`: each example is a process of its own whose
    client keeps Fathom's limits itself, and one example's report calls must not
    leave the next a spent window (the data is the same).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "fathom_async", "emulator", "--port", "0", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        url = token = None
        for line in process.stdout:
            if line.startswith("Fake Fathom API at "):
                url = line.split(" at ", 1)[1].strip()
            elif line.startswith("Admin token: "):
                token = line.split(": ", 1)[1].strip()
            elif line.startswith("Press Ctrl-C"):
                break
        if url is None or token is None:
            error = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"the emulator did not start: {error}")
        yield Emulator(url, token)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


#: Runs a page's notebook cells (a JSON list of their sources) as Jupyter does: one
#: namespace, one running loop, top-level `await` allowed.
NOTEBOOK_RUNNER = """
import ast, asyncio, json, sys

async def run(cells):
    namespace = {"__name__": "__main__"}
    for cell in cells:
        code = compile(cell, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            await result

with open(sys.argv[1], encoding="utf-8") as cells:
    asyncio.run(run(json.load(cells)))
"""
