"""kill -9 at random chunks (several seeds), then resume: no lost, no duplicated rows."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fathom_async import FathomClient
from fathom_async.export import Manifest, run_export
from fathom_async.testing import FakeFathom
from tests.test_export import data_files, make_spec, rows_of


@pytest.fixture
async def fake() -> AsyncIterator[FakeFathom]:
    async with FakeFathom(seed=11, pageviews=4_000, enforce_rate_limits=False) as server:
        yield server


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_kill_9_mid_export_then_resume(
    fake: FakeFathom, tmp_path: Path, seed: int
) -> None:
    spec = make_spec()
    async with FathomClient(fake.token, base_url=fake.url, rate_limits=None) as fathom:
        whole = await run_export(fathom, spec, tmp_path / "whole")
        rng = random.Random(seed)
        kill_at = rng.randint(1, whole.chunks - 1)
        mode = rng.choice(["before", "after"])
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.export_driver", fake.url, fake.token,
            str(tmp_path / "killed"), spec.date_from.isoformat(), spec.date_to.isoformat(),
            str(kill_at), mode,
        )
        assert await child.wait() == -signal.SIGKILL
        journal = Manifest(tmp_path / "killed")
        journal.load()
        assert len(journal.chunks) < whole.chunks
        resumed = await run_export(fathom, spec, tmp_path / "killed")
    assert resumed.chunks_resumed == len(journal.chunks)
    assert rows_of(tmp_path / "killed") == rows_of(tmp_path / "whole")
    final = Manifest(tmp_path / "killed")
    final.load()
    assert data_files(tmp_path / "killed") == set(final.files())
