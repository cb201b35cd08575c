"""Shared fixtures, and the aioresponses shim for aiohttp >= 3.14.

aioresponses 0.7.9 builds `ClientResponse` without the `stream_writer` argument that
aiohttp 3.14 made required (pnuckowski/aioresponses#289). A response that was fully
sent only reads `stream_writer.output_size`, so a stand-in with that one attribute is
enough. We patch aioresponses' reference, never aiohttp itself.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aioresponses.core
from aiohttp import ClientResponse
from yarl import URL


class _CompatClientResponse(ClientResponse):
    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


aioresponses.core.ClientResponse = _CompatClientResponse  # type: ignore[attr-defined]


# -- fixtures ---------------------------------------------------------------------

import asyncio  # noqa: E402
import inspect  # noqa: E402
import re  # noqa: E402
from collections.abc import AsyncIterator, Iterator  # noqa: E402

import pytest  # noqa: E402
from aioresponses import aioresponses as _aioresponses  # noqa: E402

from fathom_async import FathomClient  # noqa: E402
from fathom_async._client import _forget_default_rate_limits  # noqa: E402

TOKEN = "test-token-9f8e7d6c5b4a-SECRET"
BASE = "https://api.usefathom.com/v1"
#: A site as the API sends it, and the budget headers of an entity answer.
SITE = {"id": "CDBUGS", "object": "site", "name": "Bugs", "sharing": "none",
        "created_at": "2024-01-01 00:00:00"}
LIMIT_HEADERS = {"X-RateLimit-Limit": "2000", "X-RateLimit-Remaining": "1999"}


def url(path: str) -> re.Pattern[str]:
    """Match `BASE + path` with any query string."""
    return re.compile(re.escape(BASE + path) + r"(\?.*)?$")


@pytest.fixture
def api() -> Iterator[_aioresponses]:
    with _aioresponses() as mocked:
        yield mocked


@pytest.fixture
async def fathom(api: _aioresponses) -> AsyncIterator[FathomClient]:
    async with FathomClient(TOKEN, rate_limits=None, strict=True) as client:
        client._shared.sleep = no_sleep
        yield client


async def no_sleep(seconds: float) -> None:
    """A retry's backoff that takes no time (set as `client._shared.sleep`)."""


def calls(api: _aioresponses) -> list[tuple[str, str, dict[str, Any]]]:
    """Every request aioresponses saw: (method, full URL, keyword arguments)."""
    return [
        (method, str(request_url), call.kwargs)
        for (method, request_url), recorded in api.requests.items()
        for call in recorded
    ]


@pytest.fixture(autouse=True)
def _fresh_default_rate_limits() -> Iterator[None]:
    """Every test starts with untouched budgets.

    Clients made without `rate_limits=` share a process-wide `RateLimits` per token
    and base URL, so a test's calls would otherwise count in the next test's window.
    """
    _forget_default_rate_limits()
    yield
    _forget_default_rate_limits()


@pytest.fixture(autouse=True)
def _no_stray_loop_in_sync_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Give sync tests a loop that is closed afterwards.

    looptime's plugin asks the event-loop policy for the current loop before every
    test (pytest-asyncio's `event_loop_policy` fixture is autouse), and in a sync test
    that makes a new loop nobody closes: a ResourceWarning, an error under
    `filterwarnings = error`, in whichever test runs when it is collected.
    """
    if inspect.iscoroutinefunction(request.function):
        yield
        return
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()
