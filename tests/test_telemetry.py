"""OpenTelemetry: every public call a span, the budget in metrics, and nothing when off.

The SDK's in-memory span exporter and metric reader stand in for a collector. Each
test sets the global providers afresh and takes them away after (as
opentelemetry-test-utils does), so the client must follow the providers in force.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from aioresponses import aioresponses
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from fathom_async import (
    FathomClient,
    NotFoundError,
    RateLimits,
    RedisRateLimits,
    ReportCache,
    ServerError,
    ValidationError,
    _telemetry,
)
from fathom_async._calls import CALL
from fathom_async.testing import FakeFathom
from tests.conftest import LIMIT_HEADERS, SITE, TOKEN, calls, no_sleep, url
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, for pytest

REPORT: dict[str, Any] = {"entity": "pageview", "site_id": "CDBUGS", "aggregates": "visits"}
PAST: dict[str, Any] = {"date_from": date(2020, 1, 1), "date_to": date(2020, 1, 31)}


def _unset_providers() -> None:
    """Back to "no provider set", as opentelemetry-test-utils resets its globals."""
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None


class Otel:
    """The providers in force for one test, and what they saw."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [span for span in found if name is None or span.name == name]

    def points(self, metric: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """Each data point of a metric by its attributes: a sum's value, a histogram
        point as (count, sum), a gauge's value."""
        data = self.reader.get_metrics_data()
        found: dict[frozenset[tuple[str, Any]], Any] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name != metric:
                        continue
                    assert scope.scope.name == "fathom_async"
                    for point in item.data.data_points:
                        key = frozenset((point.attributes or {}).items())
                        if isinstance(point, HistogramDataPoint):
                            found[key] = (point.count, point.sum)
                        else:
                            found[key] = getattr(point, "value", None)
        return found


def at(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes."""
    return dict(span.attributes or {})


def attrs(**values: Any) -> frozenset[tuple[str, Any]]:
    return frozenset((f"fathom.{key}", value) for key, value in values.items())


@pytest.fixture
def otel() -> Iterator[Otel]:
    _unset_providers()
    telemetry = Otel()
    trace.set_tracer_provider(telemetry.tracer_provider)
    metrics.set_meter_provider(telemetry.meter_provider)
    yield telemetry
    _unset_providers()
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()



# -- spans ----------------------------------------------------------------------------


async def test_a_call_is_a_span_with_its_terms(otel: Otel, api: aioresponses) -> None:
    api.get(url("/sites/CDBUGS"), payload=SITE, headers=LIMIT_HEADERS)
    async with FathomClient(TOKEN, rate_limits=RateLimits()) as fathom:
        site = await fathom.sites.get("CDBUGS")
    assert site.id == "CDBUGS"
    [span] = otel.spans()
    assert span.name == "fathom sites.get"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "fathom_async"
    assert span.kind == SpanKind.INTERNAL
    assert span.status.status_code == StatusCode.UNSET
    assert at(span) == {
        "fathom.bucket": "entity",
        "fathom.priority": "interactive",
        "fathom.wait_seconds": 0.0,
        "fathom.attempts": 1,
        "fathom.coalesced": False,
        "fathom.cache_hit": False,
        "http.response.status_code": 200,
    }


async def test_a_view_s_priority_is_on_its_spans(otel: Otel, api: aioresponses) -> None:
    api.get(url("/account"), payload={"id": 1, "object": "account", "name": "A",
                                      "email": "a@example.com"})
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        await fathom.with_options(priority="bulk").account.get()
    [span] = otel.spans("fathom account.get")
    assert at(span)["fathom.priority"] == "bulk"


async def test_an_error_is_recorded_on_the_span(otel: Otel, api: aioresponses) -> None:
    api.get(url("/sites/NOPE"), status=404, payload={"error": "not found"})
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        with pytest.raises(NotFoundError):
            await fathom.sites.get("NOPE")
        with pytest.raises(ValidationError):
            await fathom.sites.get("")  # refused before any request: a span all the same
    failed, refused = otel.spans("fathom sites.get")
    for span, error in ((failed, "NotFoundError"), (refused, "ValidationError")):
        assert span.status.status_code == StatusCode.ERROR
        assert at(span)["error.type"] == error
        [event] = span.events
        assert event.name == "exception"
        assert str(dict(event.attributes or {})["exception.type"]).endswith(error)
    assert at(failed)["http.response.status_code"] == 404
    assert (at(failed)["fathom.attempts"], at(refused)["fathom.attempts"]) == (1, 0)
    assert "http.response.status_code" not in at(refused)
    assert TOKEN not in repr([span.to_json() for span in otel.spans()])


async def test_retries_are_attempts_of_one_span_and_counted_by_reason(
    otel: Otel, api: aioresponses
) -> None:
    api.get(url("/sites/CDBUGS"), status=503, payload={"error": "busy"})
    api.get(url("/sites/CDBUGS"), status=503, payload={"error": "busy"})
    api.get(url("/sites/CDBUGS"), payload=SITE)
    api.get(url("/sites/DOWN"), status=500, payload={"error": "down"}, repeat=True)
    async with FathomClient(TOKEN, rate_limits=None, max_retries=2) as fathom:
        fathom._shared.sleep = no_sleep
        await fathom.sites.get("CDBUGS")
        with pytest.raises(ServerError):
            await fathom.sites.get("DOWN")
    ok, down = otel.spans("fathom sites.get")
    assert (at(ok)["fathom.attempts"], at(ok)["http.response.status_code"]) == (
        3, 200
    )
    assert (at(down)["fathom.attempts"], at(down)["http.response.status_code"]) == (
        3, 500
    )
    assert down.status.status_code == StatusCode.ERROR
    assert otel.points("fathom.retries") == {attrs(bucket="entity", reason="server_error"): 4}
    assert otel.points("fathom.requests") == {
        attrs(bucket="entity", status_class="5xx"): 5,
        attrs(bucket="entity", status_class="2xx"): 1,
    }


async def test_every_page_fetched_is_a_span(otel: Otel, api: aioresponses) -> None:
    first = {"object": "list", "has_more": True, "data": [SITE]}
    second = {"object": "list", "has_more": False, "data": [{**SITE, "id": "ACMEIN"}]}
    api.get(url("/sites"), payload=first)
    api.get(url("/sites"), payload=second)
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        ids = [site.id async for site in fathom.sites.list(limit=1)]
    assert ids == ["CDBUGS", "ACMEIN"]
    pages = otel.spans("fathom sites.list")
    assert len(pages) == 2
    assert all(at(span)["fathom.attempts"] == 1 for span in pages)


@pytest.mark.looptime
async def test_wait_seconds_and_the_wait_metrics_show_time_spent_waiting_for_slots(
    otel: Otel, api: aioresponses
) -> None:
    api.get(url("/sites/CDBUGS"), payload=SITE, repeat=True)
    loop = asyncio.get_running_loop()
    async with FathomClient(TOKEN, rate_limits=RateLimits(entity=(1, 10))) as fathom:
        await fathom.sites.get("CDBUGS")  # the window's one slot, at t=0
        waiting = asyncio.ensure_future(fathom.sites.get("CDBUGS"))
        await asyncio.sleep(4)
        assert otel.points("fathom.ratelimit.waiting")[
            attrs(bucket="entity", priority="interactive")
        ] == 1
        await waiting
        assert loop.time() == pytest.approx(10)
    first, second = otel.spans("fathom sites.get")
    assert at(first)["fathom.wait_seconds"] == 0.0
    assert at(second)["fathom.wait_seconds"] == pytest.approx(10, abs=0.01)
    interactive = attrs(bucket="entity", priority="interactive")
    assert otel.points("fathom.ratelimit.grants") == {interactive: 2}
    count, total = otel.points("fathom.ratelimit.wait")[interactive]
    assert (count, round(total, 2)) == (2, 10.0)
    waiting_now = otel.points("fathom.ratelimit.waiting")
    assert waiting_now[interactive] == 0
    assert waiting_now[attrs(bucket="reports", priority="bulk")] == 0


@pytest.mark.looptime
async def test_a_caller_that_joined_a_shared_report_is_coalesced_and_linked(
    otel: Otel, api: aioresponses
) -> None:
    api.get(url("/aggregations"), payload=[{"visits": "7"}], repeat=True)
    async with FathomClient(TOKEN, rate_limits=RateLimits(reports=(1, 10))) as fathom:
        await fathom.aggregations.query(**{**REPORT, "site_id": "OTHER"})  # spends t=0's slot
        starter = asyncio.ensure_future(fathom.aggregations.query(**REPORT))
        await asyncio.sleep(4)
        joiner = asyncio.ensure_future(fathom.aggregations.query(**REPORT))
        await asyncio.gather(starter, joiner)
    assert len(calls(api)) == 2
    _, sent, joined = otel.spans("fathom aggregations.query")
    assert at(sent)["fathom.coalesced"] is False
    assert at(joined)["fathom.coalesced"] is True
    assert at(sent)["fathom.wait_seconds"] == pytest.approx(10, abs=0.01)
    assert at(joined)["fathom.wait_seconds"] == pytest.approx(6, abs=0.01)
    for span in (sent, joined):
        assert (at(span)["fathom.attempts"], at(span)["fathom.bucket"]) == (
            1, "reports"
        )
        assert at(span)["http.response.status_code"] == 200
    assert sent.context is not None
    assert [link.context.span_id for link in joined.links] == [sent.context.span_id]
    assert not sent.links


async def test_a_cached_report_is_a_cache_hit(otel: Otel, api: aioresponses) -> None:
    api.get(url("/aggregations"), payload=[{"visits": "7"}])
    async with FathomClient(
        TOKEN, rate_limits=None, report_cache=ReportCache(ttl=600)
    ) as fathom:
        await fathom.aggregations.query(**REPORT, **PAST)
        rows = await fathom.aggregations.query(**REPORT, **PAST)
    assert rows[0].visits == 7
    fetched, cached = otel.spans("fathom aggregations.query")
    assert at(fetched)["fathom.cache_hit"] is False
    assert at(cached)["fathom.cache_hit"] is True
    assert at(cached)["fathom.attempts"] == 0
    assert "http.response.status_code" not in at(cached)
    assert otel.points("fathom.report_cache") == {
        frozenset({("fathom.cache_result", "miss")}): 1,
        frozenset({("fathom.cache_result", "hit")}): 1,
    }


async def test_a_split_query_is_one_span_over_its_requests(otel: Otel, api: aioresponses) -> None:
    api.get(url("/aggregations"), payload=[{"visits": "1", "date": "2020-01-01 00:00:00"}],
            repeat=True)
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        plan = fathom.aggregations.plan(**REPORT, **PAST, date_grouping="hour")
        await fathom.aggregations.query(**REPORT, **PAST, date_grouping="hour", split=True)
    assert plan.calls > 1
    [span] = otel.spans("fathom aggregations.query")
    assert at(span)["fathom.attempts"] == plan.calls == len(calls(api))


async def test_aiohttp_client_spans_nest_under_the_call(otel: Otel) -> None:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    try:
        async with (
            FakeFathom(pageviews=50, enforce_rate_limits=False) as fake,
            FathomClient(fake.token, base_url=fake.url) as fathom,
        ):
            await fathom.sites.get("CDBUGS")
            await asyncio.gather(
                fathom.aggregations.query(**REPORT), fathom.aggregations.query(**REPORT)
            )
    finally:
        instrumentor.uninstrument()
    http = [span for span in otel.spans() if span.kind == SpanKind.CLIENT]
    ours = {span.context.span_id: span.name for span in otel.spans() if span.context
            and span.kind == SpanKind.INTERNAL}
    assert len(http) == 2  # one request each: the second query shared the first's
    assert sorted(ours[span.parent.span_id] for span in http if span.parent) == [
        "fathom aggregations.query", "fathom sites.get"
    ]
    assert TOKEN not in repr([span.to_json() for span in otel.spans()])


async def test_the_client_follows_the_providers_in_force(api: aioresponses) -> None:
    api.get(url("/sites/CDBUGS"), payload=SITE, repeat=True)
    _unset_providers()
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        await fathom.sites.get("CDBUGS")  # no provider: nothing recorded, nothing fails
        assert _telemetry.tracer() is None
        assert _telemetry.meters() is None
        for _ in range(2):
            telemetry = Otel()
            _unset_providers()
            trace.set_tracer_provider(telemetry.tracer_provider)
            metrics.set_meter_provider(telemetry.meter_provider)
            await fathom.sites.get("CDBUGS")
            assert len(telemetry.spans("fathom sites.get")) == 1
            assert telemetry.points("fathom.requests") == {
                attrs(bucket="entity", status_class="2xx"): 1
            }
            telemetry.tracer_provider.shutdown()
            telemetry.meter_provider.shutdown()
    _unset_providers()


async def test_a_connection_failure_counts_as_no_response(otel: Otel, api: aioresponses) -> None:
    import aiohttp

    api.get(url("/sites/CDBUGS"), exception=aiohttp.ClientConnectionError("reset"))
    api.get(url("/sites/CDBUGS"), payload=SITE)
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        fathom._shared.sleep = no_sleep
        await fathom.sites.get("CDBUGS")
    assert otel.points("fathom.requests") == {
        attrs(bucket="entity", status_class="no_response"): 1,
        attrs(bucket="entity", status_class="2xx"): 1,
    }
    assert otel.points("fathom.retries") == {attrs(bucket="entity", reason="connection"): 1}


# -- nothing imported, nothing paid ------------------------------------------------------

ABSENT = textwrap.dedent("""
    import asyncio, sys
    sys.modules["opentelemetry"] = None  # as if the API were not installed

    from fathom_async import FathomClient, _telemetry
    from fathom_async._resources.sites import SitesResource
    from fathom_async.testing import FakeFathom

    async def main() -> None:
        async with FakeFathom(pageviews=10, enforce_rate_limits=False) as fake:
            async with FathomClient(fake.token, base_url=fake.url) as fathom:
                site = await fathom.sites.get("CDBUGS")
                raw = await fathom.with_raw_response.sites.get("CDBUGS")
        assert site.id == raw.parse().id == "CDBUGS"
        assert raw.status_code == 200

    asyncio.run(main())
    assert _telemetry.AVAILABLE is False
    assert not hasattr(SitesResource.get, "__wrapped__")  # the plain method
    print(sorted(name for name, module in sys.modules.items()
                 if name.startswith("opentelemetry") and module is not None))
""")

UNUSED = textwrap.dedent("""
    import asyncio, sys

    from fathom_async import FathomClient, _telemetry
    from fathom_async.testing import FakeFathom

    async def main() -> None:
        async with FakeFathom(pageviews=10, enforce_rate_limits=False) as fake:
            async with FathomClient(fake.token, base_url=fake.url) as fathom:
                await fathom.sites.get("CDBUGS")

    asyncio.run(main())
    assert _telemetry.AVAILABLE is True
    print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
""")


@pytest.mark.parametrize("program", [ABSENT, UNUSED], ids=["absent", "installed-unused"])
def test_without_the_api_or_a_provider_nothing_of_opentelemetry_is_imported(
    program: str,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_a_raw_call_is_traced_and_still_has_its_response(
    otel: Otel, api: aioresponses
) -> None:
    api.get(url("/sites/CDBUGS"), status=503, payload={"error": "busy"})
    api.get(url("/sites/CDBUGS"), payload=SITE, headers=LIMIT_HEADERS)
    async with FathomClient(TOKEN, rate_limits=None) as fathom:
        fathom._shared.sleep = no_sleep
        response = await fathom.with_raw_response.sites.get("CDBUGS")
    assert (response.status_code, response.headers["X-RateLimit-Remaining"]) == (200, "1999")
    assert response.parse().id == "CDBUGS"
    [span] = otel.spans("fathom sites.get")
    assert (at(span)["fathom.attempts"], at(span)["http.response.status_code"]) == (
        2, 200
    )


class _DropThenKeep(IdGenerator):
    """Trace ids that a 50 % ratio sampler drops, then keeps, in turn."""

    def __init__(self) -> None:
        self._traces = itertools.cycle([(1 << 64) - 1, 1])
        self._spans = itertools.count(1)

    def generate_span_id(self) -> int:
        return next(self._spans)

    def generate_trace_id(self) -> int:
        return next(self._traces)


async def test_a_call_the_sampler_drops_takes_its_http_span_with_it() -> None:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    _unset_providers()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(0.5)), id_generator=_DropThenKeep()
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        async with (
            FakeFathom(pageviews=5, enforce_rate_limits=False) as fake,
            FathomClient(fake.token, base_url=fake.url) as fathom,
        ):
            await fathom.sites.get("CDBUGS")  # dropped: its trace id is over the ratio
            await fathom.sites.get("CDBUGS")  # kept
    finally:
        instrumentor.uninstrument()
        _unset_providers()
        provider.shutdown()
    # Not a lone GET for the dropped call, sampled on its own as a trace of its own.
    kept = exporter.get_finished_spans()
    [http] = [span for span in kept if span.kind == SpanKind.CLIENT]
    [ours] = [span for span in kept if span.kind == SpanKind.INTERNAL]
    assert ours.context is not None
    assert http.parent is not None
    assert http.parent.span_id == ours.context.span_id


class _BrokenTracers(trace.TracerProvider):
    """A tracer provider that cannot make tracers."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise TypeError("no tracers here")


class _BrokenSpans(trace.TracerProvider):
    """A tracer provider whose spans fail to start (a span processor that raises)."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        class Failing(trace.NoOpTracer):
            def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
                raise RuntimeError("the span processor failed")

        return Failing()


async def test_the_redis_limiter_s_background_work_runs_under_no_call(
    otel: Otel, api: aioresponses, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its driver task is started by the first call that waits, and serves every later
    # call's grants: it must not carry that first call's span and record along.
    api.get(url("/sites/CDBUGS"), payload=SITE, repeat=True)
    seen: list[tuple[bool, bool]] = []
    take = RedisRateLimits._take

    async def watched(self: RedisRateLimits, *args: Any, **kwargs: Any) -> Any:
        span = trace.get_current_span().get_span_context()
        seen.append((span.is_valid, CALL.get() is not None))
        return await take(self, *args, **kwargs)

    monkeypatch.setattr(RedisRateLimits, "_take", watched)
    limits = RedisRateLimits(redis_server.url, key=uuid.uuid4().hex, entity=(2, 0.2))
    try:
        async with FathomClient(TOKEN, rate_limits=limits) as fathom:
            await asyncio.gather(*(fathom.sites.get("CDBUGS") for _ in range(3)))
    finally:
        await limits.aclose()
    assert seen
    assert not any(span or record for span, record in seen), seen
    assert len(otel.spans("fathom sites.get")) == 3


class _BrokenMeters(metrics.MeterProvider):
    """A meter provider that cannot make meters (an SDK too old or too new, say)."""

    def get_meter(self, *args: Any, **kwargs: Any) -> metrics.Meter:
        raise TypeError("no meters here")


def _set_tracers(provider: Any) -> None:
    trace.set_tracer_provider(provider)


def _set_meters(provider: Any) -> None:
    metrics.set_meter_provider(provider)


@pytest.mark.parametrize(
    ("provider", "set_provider", "kind", "why"),
    [
        (_BrokenTracers, _set_tracers, "traces", "TypeError: no tracers here"),
        (_BrokenSpans, _set_tracers, "traces", "RuntimeError: the span processor failed"),
        (_BrokenMeters, _set_meters, "metrics", "TypeError: no meters here"),
    ],
)
async def test_telemetry_that_fails_never_fails_a_call(
    api: aioresponses,
    caplog: pytest.LogCaptureFixture,
    provider: Callable[[], Any],
    set_provider: Callable[[Any], None],
    kind: str,
    why: str,
) -> None:
    api.get(url("/sites/CDBUGS"), payload=SITE)
    _unset_providers()
    _telemetry._told.clear()  # it says so once per process
    set_provider(provider())
    try:
        async with FathomClient(TOKEN, rate_limits=None) as fathom:
            site = await fathom.sites.get("CDBUGS")
    finally:
        _unset_providers()
    assert site.id == "CDBUGS"
    assert f"OpenTelemetry {kind} failed" in caplog.text
    assert why in caplog.text
