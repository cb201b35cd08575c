"""What the app and its handlers share: the emulator's state and the request keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._faults import Faults
from ._ratelimit import RateLimiter
from ._store import Store, Token

__all__ = ["BODY", "STATE", "TOKEN", "AppState"]


@dataclass
class AppState:
    store: Store
    limiter: RateLimiter
    faults: Faults
    clock: Callable[[], float]
    enforce_rate_limits: bool = True


STATE = web.AppKey("fathom_state", AppState)
TOKEN = web.RequestKey("fathom_token", Token)
BODY: web.RequestKey[dict[str, Any]] = web.RequestKey("fathom_body", dict)
