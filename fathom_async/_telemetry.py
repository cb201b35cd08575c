"""OpenTelemetry traces and metrics, when the application has set them up.

Nothing here imports OpenTelemetry. An application that configures it (a tracer or
meter provider, by hand or with `opentelemetry-instrument`) has imported the API
already; we read it from `sys.modules` and ask for the tracer and meter
`fathom_async` from the providers in force, again whenever they change. So:

- without `opentelemetry-api` installed (the `otel` extra), the public calls are the
  plain methods (`public_call` leaves them as they are) and the request layer reads
  one module global;
- installed but not configured (no SDK provider set), each call pays a look at the
  API's globals and a wrapper's await, measured in benchmarks/RESULTS.md;
- configured, each public call is a span `fathom <resource>.<method>` and the
  request layer records the metrics below.

Telemetry never fails a call: instruments that cannot be made (an API too old for
them) are logged once and left out.

Spans carry `fathom.bucket`, `fathom.priority`, `fathom.wait_seconds`,
`fathom.attempts`, `fathom.coalesced`, `fathom.cache_hit` and
`http.response.status_code`. Metrics (meter `fathom_async`): `fathom.ratelimit.wait`
(histogram, s), `fathom.ratelimit.grants`, `fathom.ratelimit.waiting` (gauge),
`fathom.requests`, `fathom.retries` and `fathom.report_cache`.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.machinery
import importlib.util
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._calls import CALL, CallRecord
from ._exceptions import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    RateLimitError,
    ServerError,
)
from ._logging import logger
from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
    from opentelemetry.trace import Span, Tracer

    from ._client import FathomClient

__all__ = [
    "AVAILABLE",
    "Instruments",
    "current_span",
    "meters",
    "observed",
    "public_call",
    "retry_reason",
    "tracer",
    "waiting",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

NAME = "fathom_async"
BUCKETS = ("entity", "reports")
PRIORITIES = ("interactive", "bulk")

# Rate-limit waits run from nothing to an hour (a spent entity window).
WAIT_BOUNDARIES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0, 600.0, 1800.0, 3600.0)


def _installed() -> bool:
    """Whether `opentelemetry.trace` could be imported, found without importing it.

    `find_spec("opentelemetry.trace")` would import the namespace package
    `opentelemetry` first; the path finder looks in its folders without doing so.
    """
    try:
        top = importlib.util.find_spec("opentelemetry")
    except (ImportError, ValueError):  # blocked (None in sys.modules)
        return False
    if top is None or top.submodule_search_locations is None:
        return False
    places = list(top.submodule_search_locations)
    return importlib.machinery.PathFinder.find_spec("opentelemetry.trace", places) is not None


#: Whether `opentelemetry-api` can be imported at all (the `otel` extra).
AVAILABLE = _installed()


# -- finding the providers in force ------------------------------------------------------

# The API's stand-in until a meter provider is set (its class is not public).
_PROXY_METERS = "_ProxyMeterProvider"

_tracer_in_force: tuple[object, Tracer | None] = (None, None)
_meters_in_force: tuple[object, Instruments | None] = (None, None)


# Whether the API would load a provider named in the environment on first use.
_TRACER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_METER_FROM_ENV = "OTEL_PYTHON_METER_PROVIDER" in os.environ


def _none_set(module: str, attribute: str, from_env: bool) -> bool:
    """Whether surely no provider is set: the API is not loaded, or its global is empty.

    The API's getters look in `os.environ` on every call while none is set (a
    microsecond each, most of what an unconfigured API costs a call); its global is
    read here instead. When the global is not where this version of the API keeps it,
    the answer is False and the public getter decides.
    """
    api = sys.modules.get(module)
    return api is None or (getattr(api, attribute, True) is None and not from_env)


def tracer() -> Tracer | None:
    """The tracer `fathom_async` of the tracer provider in force, or None (none set)."""
    global _tracer_in_force
    if _none_set("opentelemetry.trace", "_TRACER_PROVIDER", _TRACER_FROM_ENV):
        return None  # nobody set a provider: every span would be a no-op
    from opentelemetry import trace as api

    provider = api.get_tracer_provider()
    seen, found = _tracer_in_force
    if provider is seen:
        return found
    if isinstance(provider, (api.ProxyTracerProvider, api.NoOpTracerProvider)):
        found = None  # no SDK: every span would be a no-op
    else:
        try:
            found = provider.get_tracer(NAME, __version__)
        except Exception as exc:  # a broken provider: no spans, no failure
            _failed("traces", exc)
            found = None
    _tracer_in_force = (provider, found)
    return found


def meters() -> Instruments | None:
    """Our instruments from the meter provider in force, or None (none set)."""
    global _meters_in_force
    if _none_set("opentelemetry.metrics._internal", "_METER_PROVIDER", _METER_FROM_ENV):
        return None
    from opentelemetry import metrics as api

    provider = api.get_meter_provider()
    seen, found = _meters_in_force
    if provider is seen:
        return found
    if isinstance(provider, api.NoOpMeterProvider) or type(provider).__name__ == _PROXY_METERS:
        found = None  # no SDK: every instrument would be a no-op
    else:
        try:
            found = Instruments(provider.get_meter(NAME, __version__))
        except Exception as exc:  # an API too old for one of them: no metrics, no failure
            _failed("metrics", exc)
            found = None
    _meters_in_force = (provider, found)
    return found


_told: set[str] = set()


def _failed(what: str, exc: Exception) -> None:
    """Say once per process that telemetry of a kind failed; the call goes on."""
    if what not in _told:
        _told.add(what)
        logger.warning("OpenTelemetry %s failed and are off where they fail: %s: %s",
                       what, type(exc).__name__, exc)


# -- metrics -------------------------------------------------------------------------------

_WAITING_LOCK = threading.Lock()
_waiting: dict[tuple[str, str], int] = {(b, p): 0 for b in BUCKETS for p in PRIORITIES}
_SLOT_ATTRS = {
    (b, p): {"fathom.bucket": b, "fathom.priority": p} for b in BUCKETS for p in PRIORITIES
}
_ANSWER_ATTRS = {
    (b, kind): {"fathom.bucket": b, "fathom.status_class": kind}
    for b in BUCKETS
    for kind in ("1xx", "2xx", "3xx", "4xx", "5xx", "no_response")
}


def waiting(bucket: str, priority: str, change: int) -> None:
    """A call of this process began (+1) or stopped (-1) waiting for a slot."""
    with _WAITING_LOCK:
        _waiting[bucket, priority] = _waiting.get((bucket, priority), 0) + change


def _observe_waiting(options: CallbackOptions) -> Iterable[Observation]:
    from opentelemetry.metrics import Observation

    with _WAITING_LOCK:
        counts = dict(_waiting)
    return [
        Observation(count, {"fathom.bucket": bucket, "fathom.priority": priority})
        for (bucket, priority), count in counts.items()
    ]


def status_class(status: int | None) -> str:
    """`"2xx"` ... `"5xx"`, or `"no_response"` when the request got no answer."""
    return "no_response" if status is None else f"{status // 100}xx"


def retry_reason(exc: BaseException | None) -> str:
    """Why a failed attempt is tried again, for `fathom.retries`."""
    if isinstance(exc, RateLimitError):
        return "rate_limited"
    if isinstance(exc, ServerError):
        return "server_error"
    if isinstance(exc, APITimeoutError):
        return "timeout"
    if isinstance(exc, APIConnectionError):
        return "connection"
    if isinstance(exc, APIResponseError):
        return "bad_response"
    return "other"


class Instruments:
    """The instruments of one meter provider, with the attributes each takes."""

    def __init__(self, meter: Meter) -> None:
        self.wait = meter.create_histogram(
            "fathom.ratelimit.wait",
            unit="s",
            description="Seconds a request waited for its rate-limit slot (0: one was free).",
            explicit_bucket_boundaries_advisory=WAIT_BOUNDARIES,
        )
        self.grants = meter.create_counter(
            "fathom.ratelimit.grants",
            unit="{grant}",
            description="Rate-limit slots granted to requests.",
        )
        meter.create_observable_gauge(
            "fathom.ratelimit.waiting",
            callbacks=[_observe_waiting],
            unit="{call}",
            description="Calls of this process waiting for a rate-limit slot now.",
        )
        self.requests = meter.create_counter(
            "fathom.requests",
            unit="{request}",
            description="Requests sent to the API, by bucket and status class.",
        )
        self.retries = meter.create_counter(
            "fathom.retries",
            unit="{retry}",
            description="Attempts tried again, by reason.",
        )
        self.report_cache = meter.create_counter(
            "fathom.report_cache",
            unit="{lookup}",
            description="Report cache lookups, by result (hit or miss).",
        )

    def granted(self, bucket: str, priority: str, seconds: float) -> None:
        attributes = _SLOT_ATTRS[bucket, priority]
        self.grants.add(1, attributes)
        self.wait.record(seconds, attributes)

    def answered(self, bucket: str, status: int | None) -> None:
        kind = status_class(status)
        attributes = _ANSWER_ATTRS.get((bucket, kind))
        if attributes is None:  # a status outside 1xx-5xx: made when seen
            attributes = {"fathom.bucket": bucket, "fathom.status_class": kind}
        self.requests.add(1, attributes)

    def retried(self, bucket: str, exc: BaseException | None) -> None:
        self.retries.add(1, {"fathom.bucket": bucket, "fathom.reason": retry_reason(exc)})

    def looked_up(self, hit: bool) -> None:
        self.report_cache.add(1, {"fathom.cache_result": "hit" if hit else "miss"})


# -- spans -----------------------------------------------------------------------------------


def current_span() -> object:
    """The context of the span in force here (a SpanContext), or None."""
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None
    context = api.get_current_span().get_span_context()
    return context if context.is_valid else None


def observed(name: str, bucket: str, client: FathomClient, call: Awaitable[T]) -> Awaitable[T]:
    """`call` itself, or `call` inside a span `fathom <name>` when tracing is set up."""
    if not AVAILABLE:
        return call
    found = tracer()
    if found is None:
        return call
    return _traced(found, name, bucket, client, call)


async def _traced(
    found: Tracer, name: str, bucket: str, client: FathomClient, call: Awaitable[T]
) -> T:
    from opentelemetry import context, trace

    try:
        span = found.start_span(
            f"fathom {name}",
            kind=trace.SpanKind.INTERNAL,
            attributes={"fathom.bucket": bucket, "fathom.priority": client.priority},
        )
        # Current even when not sampled: aiohttp's span then takes its decision.
        attached = context.attach(trace.set_span_in_context(span))
    except Exception as exc:  # a broken tracer or span processor: the call goes on
        _failed("traces", exc)
        return await call
    outer = CALL.get()
    record = None
    if span.is_recording():
        record = CallRecord(raw=outer is not None and outer.raw)
        current = CALL.set(record)
    try:
        return await call
    except Exception as exc:
        if record is not None:
            _record_error(span, exc)
        raise
    except asyncio.CancelledError:
        if record is not None:
            span.set_attribute("fathom.cancelled", True)
        raise
    finally:
        if record is not None:
            CALL.reset(current)
        context.detach(attached)
        try:
            if record is not None:
                _describe(span, record)
            span.end()
        except Exception as exc:  # a span processor that fails on end
            _failed("traces", exc)
        if outer is not None and record is not None:
            outer.take(record)


def _record_error(span: Span, exc: Exception) -> None:
    from opentelemetry import trace

    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.set_attribute("error.type", type(exc).__qualname__)


def _describe(span: Span, record: CallRecord) -> None:
    """Put what the call did on its span."""
    from opentelemetry import trace

    span.set_attributes({
        "fathom.wait_seconds": record.wait,
        "fathom.attempts": record.attempts,
        "fathom.coalesced": record.coalesced,
        "fathom.cache_hit": record.cache_hit,
    })
    if record.status is not None:
        span.set_attribute("http.response.status_code", record.status)
    if record.coalesced and isinstance(record.origin, trace.SpanContext):
        span.add_link(record.origin, {"fathom.link": "shared_request"})


def public_call(name: str, bucket: str) -> Callable[[F], F]:
    """Make a resource method a traced public call `fathom <name>` (in `bucket`).

    Without `opentelemetry-api` installed the method is returned as it is: nothing
    is added to any call.
    """

    def decorate(method: F) -> F:
        if not AVAILABLE:
            return method

        @functools.wraps(method)
        async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await observed(name, bucket, self._client, method(self, *args, **kwargs))

        return cast(F, call)

    return decorate
