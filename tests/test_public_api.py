"""The public surface is exactly what __all__ says, and every name in it is importable."""

from __future__ import annotations

import importlib
import importlib.resources
import pkgutil

import fathom_async

EXPECTED = {
    "DEFAULT_BASE_URL", "NOT_GIVEN", "APIConnectionError", "APIResponseError",
    "APIStatusError", "APITimeoutError", "AcquireTimeoutError", "Account", "AggregationRow",
    "AsyncPager", "AuthenticationError", "BadRequestError", "BucketSnapshot",
    "ClientClosedError", "CurrentPage", "CurrentReferrer", "CurrentVisitors", "Deleted",
    "Event", "FathomClient", "FathomError", "Filter", "GoneError", "Milestone",
    "NotFoundError", "NotGiven", "Page", "PermissionDeniedError", "Permit",
    "RateLimitBackend", "RateLimitError", "RateLimits", "ServerError", "ServerFeedback",
    "Site", "TokenInfo", "UnprocessableEntityError", "ValidationError", "Wiped",
    "__version__",
    # the scheduler on Redis
    "RateLimiterUnavailableError", "RedisRateLimits",
    # reports
    "AggregationRows", "CacheStats", "RedisReportCache", "ReportCache", "ReportCacheBackend",
    "ReportPlan",
}


PUBLIC_SUBPACKAGES = {"testing", "export", "dlt"}
EXPORT_NAMES = {
    "ChunkRecord", "Export", "ExportEntity", "ExportFormat", "ExportProgress", "ExportSpec",
    "ExportSummary", "Manifest", "PlanMismatchError", "read_rows", "run_export",
}


def test_export_all_is_exactly_its_public_names() -> None:
    from fathom_async import export

    assert set(export.__all__) == EXPORT_NAMES
    assert all(getattr(export, name) is not None for name in export.__all__)


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
