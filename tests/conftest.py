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


aioresponses.core.ClientResponse = _CompatClientResponse  # type: ignore[misc]
