"""The recipes' pieces that the generic runner (tests/test_docs.py) cannot judge alone.

test_docs.py runs every program, every page's pytest files and every page's notebook
cells, and checks only that they exit 0 and print something. Here the recipes whose
point is a behaviour are run again and that behaviour is checked:

- the dashboard answers 503 with `Retry-After` once its reserved report slots are
  spent, and sends nothing for those 503s;
- two `arq worker.WorkerSettings --burst` processes run the page's jobs on one
  `RedisRateLimits` budget: every job succeeds, the emulator sees no 429, and the
  shared window is left holding exactly the grants of the jobs;
- the cron page's shell script, run verbatim with `bash`, exports a day, a rerun
  resumes without a request, and a missing token fails it with exit code 2.

The code is extracted from the pages, never copied here. The emulator runs in this
process (`FakeFathom`, with Fathom's real limits), so the test can read the requests
it received; the user's processes get its URL and token from the environment, as they
would get `fathom-async emulator`'s.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest
import redis.asyncio
from arq import create_pool
from arq.connections import RedisSettings

from fathom_async import AcquireTimeoutError, RedisRateLimits
from fathom_async.testing import FakeFathom, RecordedRequest
from tests.docs_examples import DOCS, Block, blocks, page_files
from tests.docs_examples import run as run_command
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, for pytest

RECIPES = DOCS / "recipes"
BIN = Path(sys.executable).parent  # the venv's scripts: fathom-async, arq
REPORT_ROUTES = ("/aggregations", "/current_visitors")


def program(page: Path) -> Block:
    """The page's one complete program."""
    [found] = [block for block in blocks(page) if block.is_program]
    return found


def shell_script(page: Path) -> str:
    """The page's ```bash block that is a script (its first line is a `#!`)."""
    text = page.read_text(encoding="utf-8")
    scripts: list[str] = re.findall(r"(?ms)^```bash\n(.*?)^```", text)
    [found] = [code for code in scripts if code.startswith("#!")]
    return found


async def run(argv: list[str], env: dict[str, str], cwd: Path,
              timeout: float = 90) -> tuple[int, str, str]:
    return await run_command(argv, env, cwd, timeout)


def user_env(**extra: str) -> dict[str, str]:
    """Our environment without any FATHOM_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FATHOM_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
    return env


@asynccontextmanager
async def emulator() -> AsyncIterator[FakeFathom]:
    """The demo data of `fathom-async emulator`, with Fathom's real limits, served here."""
    async with FakeFathom() as fake:
        yield fake


def reports(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    return [request for request in requests if request.route in REPORT_ROUTES]


def test_every_recipe_has_what_its_test_runs() -> None:
    """What test_docs.py and this module run is on the pages, under these names."""
    assert program(RECIPES / "dashboard.md")
    assert program(RECIPES / "warehouse-load.md")
    assert {"worker.py", "enqueue.py"} <= set(page_files(RECIPES / "arq-workers.md"))
    pytest_files = set(page_files(RECIPES / "pytest.md"))
    assert "conftest.py" in pytest_files
    assert any(name.startswith("test_") for name in pytest_files)
    assert sum(block.is_cell for block in blocks(RECIPES / "notebook.md")) >= 3
    assert shell_script(RECIPES / "cron-export.md").startswith("#!/usr/bin/env bash\n")


# -- the dashboard ------------------------------------------------------------------------


async def test_the_dashboard_answers_503_with_retry_after_once_its_reserve_is_spent(
    tmp_path: Path,
) -> None:
    (tmp_path / "dashboard.py").write_text(program(RECIPES / "dashboard.md").code,
                                           encoding="utf-8")
    async with emulator() as fake:
        env = user_env(FATHOM_API_TOKEN=fake.token, FATHOM_BASE_URL=fake.url)
        code, out, err = await run([sys.executable, "dashboard.py"], env, tmp_path)
        assert code == 0, err
        # "SITE STATUS Retry-After: N {json}" per visit
        visits = [line.split(maxsplit=4) for line in out.splitlines()]
        assert [(site, int(status)) for site, status, *_ in visits] == [
            ("CDBUGS", 200), ("ACMEIN", 200), ("DAFFYB", 503), ("CDBUGS", 503)
        ], out
        for _, status, header, retry_after, _ in visits:
            assert header == "Retry-After:"
            if status == "503":  # the minute turns over within a minute
                assert 1 <= int(retry_after) <= 60, out
        sent = reports(fake.store.requests)
    # The backfill's 8 bulk calls and the 2 reserved visits: the 503s sent nothing,
    # and Fathom's own limit (10 a minute) was never hit.
    assert sorted(request.route or "" for request in sent) == (
        ["/aggregations"] * 8 + ["/current_visitors"] * 2
    )
    assert all(request.status == 200 for request in sent)


# -- arq workers --------------------------------------------------------------------------


async def test_two_arq_workers_run_every_job_on_one_shared_budget(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    files = page_files(RECIPES / "arq-workers.md")
    for name in ("worker.py", "enqueue.py"):
        (tmp_path / name).write_text(files[name], encoding="utf-8")
    # The budget this test checks afterwards is the page's: key "acme", reserve 2.
    assert 'key="acme", reserve={"reports": 2}' in files["worker.py"]
    flush = redis.asyncio.Redis.from_url(redis_server.url)
    await flush.flushdb()  # a fresh queue and a fresh budget
    await flush.aclose()

    async with emulator() as fake:
        env = user_env(FATHOM_API_TOKEN=fake.token, FATHOM_BASE_URL=fake.url,
                       REDIS_URL=redis_server.url)
        code, out, err = await run([sys.executable, "enqueue.py"], env, tmp_path)
        assert code == 0, err
        assert out.count("queued ") == 8, out
        workers = await asyncio.gather(*(
            run([str(BIN / "arq"), "worker.WorkerSettings", "--burst"], env, tmp_path)
            for _ in range(2)
        ))
        for code, out, err in workers:
            assert code == 0, out + err
        sent = reports(fake.store.requests)

    # Every job ran once and succeeded, with the day's figures.
    pool = await create_pool(RedisSettings.from_dsn(redis_server.url))
    try:
        results = await pool.all_job_results()
    finally:
        await pool.aclose()
    assert all(result.success for result in results), results
    days = [(date.today() - timedelta(days=n)).isoformat() for n in range(1, 5)]
    assert sorted((r.result["site_id"], r.result["day"]) for r in results) == sorted(
        (site, day) for site in ("CDBUGS", "ACMEIN") for day in days
    )
    assert all(isinstance(r.result["pageviews"], int) for r in results)
    # The emulator, with Fathom's limits, saw the 8 report calls and refused none.
    assert len(sent) == 8
    assert all(request.status == 200 for request in sent)
    # The workers' grants are in the shared window: bulk work (8 of every minute's
    # 10) has none left for a minute, while an interactive caller still gets one of
    # the 2 reserved slots at once; the refusal says the next bulk slot is most of a
    # minute away.
    limits = RedisRateLimits(redis_server.url, key="acme", reserve={"reports": 2})
    try:
        with pytest.raises(AcquireTimeoutError) as refused:
            await limits.acquire("reports", priority="bulk", timeout=1.0)
        assert refused.value.next_slot_in is not None
        assert refused.value.next_slot_in > 30
        permit = await limits.acquire("reports", priority="interactive", timeout=1.0)
        permit.revoke()  # not used: the slot goes back
    finally:
        await limits.aclose()


# -- the cron export ----------------------------------------------------------------------


async def test_the_cron_script_exports_a_day_and_a_rerun_resumes(tmp_path: Path) -> None:
    script = tmp_path / "fathom-nightly"
    script.write_text(shell_script(RECIPES / "cron-export.md"), encoding="utf-8")
    home = tmp_path / "home"
    env_file = home / ".config" / "fathom-async" / "export.env"
    env_file.parent.mkdir(parents=True)
    env = user_env(HOME=str(home))  # no token in the environment: only in the file
    yesterday = {(date.today() - timedelta(days=1)).isoformat()}

    async with emulator() as fake:
        env_file.write_text(f"FATHOM_API_TOKEN={shlex.quote(fake.token)}\n"
                            f"FATHOM_BASE_URL={shlex.quote(fake.url)}\n", encoding="utf-8")
        code, out, err = await run(["bash", str(script)], env, tmp_path)
        assert code == 0, out + err
        first_run = list(fake.store.requests)
        yesterday.add((date.today() - timedelta(days=1)).isoformat())  # midnight passed?
        [day] = [path.name for path in (home / "fathom-export").iterdir()]
        assert day in yesterday
        # Off a terminal: plain progress lines on stderr, no bar.
        assert "export finished (done)" in err
        assert "\r" not in err
        assert "\x1b[" not in err

        # Last night's run again, as the page says to after a failure: nothing to redo.
        code, out, err = await run(["bash", str(script), day], env, tmp_path)
        assert code == 0, out + err
        assert "0 requests this run" in out
        rerun = fake.store.requests[len(first_run):]

        # The secret went missing: exit code 2, and no request.
        env_file.write_text(f"FATHOM_BASE_URL={shlex.quote(fake.url)}\n", encoding="utf-8")
        code, out, err = await run(["bash", str(script)], env, tmp_path)
        assert code == 2, out + err
        assert "token" in err
        assert len(fake.store.requests) == len(first_run)

    assert rerun == []
    # Yesterday of the three demo sites: the site list, events, milestones, pageviews
    # by pathname and six events' conversions; 9 report calls, all within the minute.
    export = home / "fathom-export" / day
    assert (export / "manifest.jsonl").is_file()
    assert len((export / "sites.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    for part in ("events", "milestones"):
        assert sorted(path.stem for path in (export / part).iterdir()) == [
            "ACMEIN", "CDBUGS", "DAFFYB"
        ]
    assert len(list((export / "pageviews").glob("*/*.jsonl"))) == 3
    assert len(list((export / "event_conversions").glob("*/*/*.jsonl"))) == 6
    assert len(reports(first_run)) == 9
    assert all(request.status == 200 for request in first_run)
