"""The public surface is exactly what __all__ says, and every name in it is importable."""

from __future__ import annotations

import importlib
import importlib.resources
import pkgutil

import fathom_async

EXPECTED = {
    "DEFAULT_BASE_URL", "NOT_GIVEN", "APIConnectionError", "APIResponseError",
    "APIStatusError", "APITimeoutError", "AcquireTimeoutError", "Account", "AggregationRow",
    "AsyncPager", "AuthenticationError", "BadRequestError",
    "ClientClosedError", "CurrentPage", "CurrentReferrer", "CurrentVisitors", "Deleted",
    "Event", "FathomClient", "FathomError", "Filter", "GoneError", "Milestone",
    "NotFoundError", "NotGiven", "Page", "PermissionDeniedError",
    "RateLimitError", "RateLimits", "RawResponse", "ServerError",
    "Site", "TokenInfo", "UnprocessableEntityError", "ValidationError", "Wiped",
    "__version__",
    # the scheduler on Redis
    "RateLimiterUnavailableError", "RedisRateLimits",
    # reports
    "AggregationRows", "CacheStats", "RedisReportCache", "ReportCache", "ReportCacheBackend",
    "ReportPlan",
}


PUBLIC_SUBPACKAGES = {"testing", "export", "dlt", "limits", "types"}
EXPORT_NAMES = {
    "ChunkRecord", "Export", "ExportEntity", "ExportFormat", "ExportProgress", "ExportSpec",
    "ExportSummary", "Manifest", "PlanMismatchError", "read_rows", "run_export",
}


def test_export_all_is_exactly_its_public_names() -> None:
    from fathom_async import export

    assert set(export.__all__) == EXPORT_NAMES
    assert all(getattr(export, name) is not None for name in export.__all__)


def test_limits_holds_the_names_for_writing_a_backend() -> None:
    from fathom_async import limits

    assert set(limits.__all__) == {"BucketSnapshot", "Permit", "RateLimitBackend",
                                   "ServerFeedback"}
    assert limits.RateLimitBackend in type(fathom_async.RateLimits()).__mro__
    for name in limits.__all__:
        assert not hasattr(fathom_async, name), f"{name} belongs in fathom_async.limits"


def test_dlt_all_is_exactly_its_public_names() -> None:
    from fathom_async import dlt

    assert set(dlt.__all__) == {"RESOURCES", "fathom_source"}
    assert dlt.RESOURCES == ("sites", "events", "milestones", "pageviews", "event_conversions")
    public = {name for name in vars(dlt) if not name.startswith("_")
              and callable(getattr(dlt, name)) and getattr(getattr(dlt, name), "__module__",
                                                           None) == dlt.__name__}
    assert public <= set(dlt.__all__)


def test_all_is_exactly_the_public_names() -> None:
    assert set(fathom_async.__all__) == EXPECTED
    assert len(fathom_async.__all__) == len(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in fathom_async.__all__:
        assert getattr(fathom_async, name) is not None


def test_no_public_attribute_is_left_out_of_all() -> None:
    public = {
        name for name in vars(fathom_async)
        if not name.startswith("_") and not isinstance(getattr(fathom_async, name), type(pkgutil))
    }
    assert public <= set(fathom_async.__all__)


def test_implementation_modules_are_private() -> None:
    for module in pkgutil.iter_modules(fathom_async.__path__):
        if module.name not in PUBLIC_SUBPACKAGES:
            assert module.name.startswith("_"), module.name
        importlib.import_module(f"fathom_async.{module.name}")


def test_package_is_typed() -> None:
    assert importlib.resources.files("fathom_async").joinpath("py.typed").is_file()
