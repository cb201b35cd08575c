"""A pytest fixture serving the emulator: `fake_fathom`.

Enable it in a `conftest.py` with
`pytest_plugins = ["fathom_async.testing.pytest_plugin"]`. Each test gets a fresh,
started `FakeFathom` (seed 0, 2,000 demo pageviews); change its options with the
marker, e.g. `@pytest.mark.fake_fathom(pageviews=0, enforce_rate_limits=False)`, or
for a whole module or class by overriding the `fake_fathom_options` fixture.
Needs pytest-asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ._fake import FakeFathom

__all__ = ["fake_fathom", "fake_fathom_options"]

DEFAULTS: dict[str, Any] = {"seed": 0, "pageviews": 2_000}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fake_fathom(**options): FakeFathom options for the fake_fathom fixture"
    )


@pytest.fixture
def fake_fathom_options() -> dict[str, Any]:
    """FakeFathom options for `fake_fathom`; override it to change them for a module."""
    return dict(DEFAULTS)


@pytest_asyncio.fixture
async def fake_fathom(
    request: pytest.FixtureRequest, fake_fathom_options: dict[str, Any]
) -> AsyncIterator[FakeFathom]:
    """A started FakeFathom, closed after the test."""
    options = dict(fake_fathom_options)
    marker = request.node.get_closest_marker("fake_fathom")
    if marker is not None:
        options.update(marker.kwargs)
    async with FakeFathom(**options) as fake:
        yield fake
