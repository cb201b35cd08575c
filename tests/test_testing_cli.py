"""The command line (`python -m fathom_async.testing`) and the pytest fixture."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal

import aiohttp
import pytest

from fathom_async.testing import FakeFathom
from fathom_async.testing import __main__ as cli

pytest_plugins = ["fathom_async.testing.pytest_plugin"]


async def test_fixture_serves_a_started_emulator(fake_fathom: FakeFathom) -> None:
    headers = {"Authorization": f"Bearer {fake_fathom.token}", "Accept": "application/json"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{fake_fathom.url}/sites") as r,
    ):
        assert r.status == 200
    assert fake_fathom.store.count_pageviews() == 2_000


@pytest.fixture
def marked(request: pytest.FixtureRequest) -> None:
    # Users write `@pytest.mark.fake_fathom(...)`; here the plugin is only registered
    # once this module is imported, so the marker is added at run time instead.
    request.node.add_marker(pytest.mark.fake_fathom(pageviews=0, enforce_rate_limits=False))


async def test_fixture_takes_options_from_the_marker(marked: None, fake_fathom: FakeFathom) -> None:
    assert fake_fathom.store.count_pageviews() == 0


class TestOptionsFixture:
    @pytest.fixture
    def fake_fathom_options(self) -> dict[str, object]:
        return {"seed": 9, "pageviews": 10}

    async def test_fixture_takes_options_from_an_overridden_fixture(
        self, fake_fathom: FakeFathom
    ) -> None:
        assert fake_fathom.store.count_pageviews() == 10


async def test_serve_prints_url_token_and_sites(capsys: pytest.CaptureFixture[str]) -> None:
    options = cli.parse_args(
        [
            "--port",
            "0",
            "--seed",
            "3",
            "--pageviews",
            "100",
            "--time-scale",
            "60",
            "--no-rate-limits",
        ]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(cli.serve(options, stop))
    out = ""
    while "Ctrl-C" not in out:
        await asyncio.sleep(0.01)
        out += capsys.readouterr().out
    url = next(line.split(" at ")[1] for line in out.splitlines() if " at " in line)
    token = next(line.split(": ")[1] for line in out.splitlines() if line.startswith("Admin"))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{url}/sites") as r,
    ):
        assert len((await r.json())["data"]) == 3
    assert "Site " in out
    stop.set()
    await task


async def test_parse_args_defaults() -> None:
    options = cli.parse_args([])
    assert (options.host, options.port, options.seed, options.pageviews) == (
        "127.0.0.1",
        8086,
        0,
        20_000,
    )
    assert options.time_scale == 1.0
    assert options.no_rate_limits is False
    assert options.database == ":memory:"


def test_main_serves_until_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    served = []

    async def serve(options: object, stop: asyncio.Event) -> None:
        served.append(options)
        os.kill(os.getpid(), signal.SIGINT)
        await stop.wait()

    monkeypatch.setattr(cli, "serve", serve)
    assert cli.main(["--port", "0"]) == 0
    assert len(served) == 1


async def test_database_file_on_request(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "traffic.db"
    async with FakeFathom(seed=1, pageviews=50, database=str(path)) as fake:
        assert fake.store.count_pageviews() == 50
    assert path.stat().st_size > 0
    async with FakeFathom(seed=1, pageviews=20, database=str(path)) as again:
        assert again.store.count_pageviews() == 20  # the file's tables were replaced
