"""The `fathom_async` logger, and `FATHOM_LOG=debug|info` to turn it on without code.

Nothing logged here carries the API token: headers pass through `redact_headers`
first, and URLs never contain it (the token travels only in the Authorization header).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Mapping

__all__ = ["logger", "redact_headers", "setup_logging", "warn_caller"]

logger = logging.getLogger("fathom_async")

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_configured = False


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        key: "<redacted>" if key.lower() in _SECRET_HEADERS else value
        for key, value in headers.items()
    }


def setup_logging() -> None:
    """Honour FATHOM_LOG once per process: attach a stderr handler at that level."""
    global _configured
    if _configured:
        return
    _configured = True
    level = os.environ.get("FATHOM_LOG", "").strip().lower()
    if level not in ("debug", "info"):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if level == "debug" else logging.INFO)


def warn_caller(message: str, category: type[Warning]) -> None:
    """`warnings.warn` pointed at the first frame outside this package: the caller's.

    A fixed `stacklevel` would point inside the package whenever a wrapper (a traced
    call, a retry) stands between the caller and us.
    """
    level = 1
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "fathom_async."
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level + 1)
