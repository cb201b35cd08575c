"""fathom_async: the async-first Python SDK for the Fathom Analytics API.

Make one `FathomClient` (the token comes from `$FATHOM_API_TOKEN`) and call its
resources: `fathom.sites.list()`, `fathom.aggregations.query(...)`. Every call waits
for a slot in its rate-limit bucket (2000/hour for entities, 10/minute for reports),
is retried when that is safe, and returns typed models.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._client import DEFAULT_BASE_URL, FathomClient
from ._exceptions import (
    AcquireTimeoutError,
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    FathomError,
    GoneError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
    ValidationError,
)
from ._filters import Filter
from ._models import (
    Account,
    AggregationRow,
    CurrentPage,
    CurrentReferrer,
    CurrentVisitors,
    Deleted,
    Event,
    Milestone,
    Page,
    Site,
    TokenInfo,
    Wiped,
)
from ._pagination import AsyncPager
from ._scheduler import RateLimits
from ._types import NOT_GIVEN, NotGiven
from ._version import __version__

if _TYPE_CHECKING:
    from ._frames import AggregationRows
    from ._raw import RawResponse
    from ._redis import RateLimiterUnavailableError, RedisRateLimits
    from ._reports import (
        CacheStats,
        RedisReportCache,
        ReportCache,
        ReportCacheBackend,
        ReportPlan,
    )

# The Redis backend and the reports layer load on first use: `import fathom_async`
# should cost little more than `import aiohttp` (see benchmarks/imports.py).
_LAZY = {
    "AggregationRows": "._frames",
    "CacheStats": "._reports",
    "RateLimiterUnavailableError": "._redis",
    "RawResponse": "._raw",
    "RedisRateLimits": "._redis",
    "RedisReportCache": "._reports",
    "ReportCache": "._reports",
    "ReportCacheBackend": "._reports",
    "ReportPlan": "._reports",
}


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DEFAULT_BASE_URL",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AcquireTimeoutError",
    "Account",
    "AggregationRow",
    "AggregationRows",
    "AsyncPager",
    "AuthenticationError",
    "BadRequestError",
    "CacheStats",
    "ClientClosedError",
    "CurrentPage",
    "CurrentReferrer",
    "CurrentVisitors",
    "Deleted",
    "Event",
    "FathomClient",
    "FathomError",
    "Filter",
    "GoneError",
    "Milestone",
    "NotFoundError",
    "NotGiven",
    "Page",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimiterUnavailableError",
    "RateLimits",
    "RawResponse",
    "RedisRateLimits",
    "RedisReportCache",
    "ReportCache",
    "ReportCacheBackend",
    "ReportPlan",
    "ServerError",
    "Site",
    "TokenInfo",
    "UnprocessableEntityError",
    "ValidationError",
    "Wiped",
    "__version__",
]
