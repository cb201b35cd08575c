"""fathom_async: the async-first Python SDK for the Fathom Analytics API.

    async with FathomClient() as fathom:            # token from $FATHOM_API_TOKEN
        async for site in fathom.sites.list():
            print(site.id, site.name)

Every call waits for a slot in its rate-limit bucket (2000/hour for entities,
10/minute for reports), is retried when that is safe, and returns typed models.
"""

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
from ._frames import AggregationRows
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
from ._redis import RateLimiterUnavailableError, RedisRateLimits
from ._reports import (
    CacheStats,
    RedisReportCache,
    ReportCache,
    ReportCacheBackend,
    ReportPlan,
)
from ._scheduler import BucketSnapshot, Permit, RateLimitBackend, RateLimits, ServerFeedback
from ._types import NOT_GIVEN, NotGiven
from ._version import __version__

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
    "BucketSnapshot",
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
    "Permit",
    "RateLimitBackend",
    "RateLimitError",
    "RateLimiterUnavailableError",
    "RateLimits",
    "RedisRateLimits",
    "RedisReportCache",
    "ReportCache",
    "ReportCacheBackend",
    "ReportPlan",
    "ServerError",
    "ServerFeedback",
    "Site",
    "TokenInfo",
    "UnprocessableEntityError",
    "ValidationError",
    "Wiped",
    "__version__",
]
