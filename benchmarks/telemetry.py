"""What OpenTelemetry support costs a public call: API absent, installed but not set up, on.

    python -m benchmarks.telemetry [--rounds 30] [--requests 320] [--workers 3]
                                   [--calls 10000] [--runs 3]

Through the public call a user makes, `await fathom.sites.get("CDBUGS")` on a
`FathomClient` against a loopback server in its own process (as in the overhead
benchmark), at concurrency 64, the scheduler on with its limits far above the load
(the overhead benchmark's "scheduler on"), on the default asyncio loop. Each
contender runs in `--workers` worker processes of its own (reused across rounds),
set up before `fathom_async` is imported, so that what one imports cannot leak into
another:

- otel absent: an import hook makes every `opentelemetry*` import fail, as when the
  `otel` extra is not installed. Checked: `_telemetry.AVAILABLE` is False,
  `sites.get` is the plain method, and no `opentelemetry` module was imported, before
  and after the rounds;
- otel absent again, in other workers (control): identical processes differ
  steadily, round after round, by up to 20% of a call's CPU time (hash seeds and
  memory layout differ from one process to the next). What the control reads "over
  absent", averaged over its workers, is what is left of that: the resolution of
  that column;
- otel installed, no SDK: `opentelemetry.trace` and `opentelemetry.metrics` imported
  (as an application using other instrumented libraries has them) and no provider
  set. Checked: `AVAILABLE` is True, `sites.get` is wrapped, and `_telemetry.tracer()`
  and `_telemetry.meters()` are None;
- otel SDK configured (what tracing costs when it is on): an SDK `TracerProvider`
  whose one span processor, a `SimpleSpanProcessor`, hands each ended span to an
  exporter that only counts it, and an SDK `MeterProvider` with an
  `InMemoryMetricReader` (nothing runs in the background). Checked: every call made
  one span `fathom sites.get`, and the `fathom.requests` counter counted every request.

Rounds are interleaved: each worker makes `--requests` calls in turn, in an order
that turns round by round. A contender's figures in a round: requests/s (the
harmonic mean of its workers'), CPU time (`time.process_time()`) per call (the mean
of its workers'), and "over absent": its CPU per call minus that of "otel absent"
in the same round; median (min-max) of the rounds.

A call through the loopback costs well over 100 us of CPU, and identical processes
differ by more than the hooks cost; so, in the same workers, the hooks alone:
`--calls` awaits of a method that does nothing, made a public call by
`_telemetry.public_call` (as `sites.get` is) and followed by the look-up the request
layer makes once per attempt (`_telemetry.meters()` when `AVAILABLE`), next to the
same awaits of the bare method; median (min-max) of `--runs` interleaved runs in each
worker. With the SDK, that is a span and the look-ups, not the recording of metrics.

The exit status is 1 when a check failed or a figure is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Any

from benchmarks._loopback import CONCURRENCY, drive, new_loop, serve, server, site
from benchmarks._stats import spread
from benchmarks._workers import Answer, Worker, reply

if TYPE_CHECKING:  # the library is imported in the workers, once each is set up
    from fathom_async import FathomClient

TOKEN = "benchmark-token"
SITE_ID = "CDBUGS"
SPAN = "fathom sites.get"
CONTENDERS = {
    "absent": "otel absent",
    "control": "otel absent again, other workers (control)",
    "installed": "otel installed, no SDK",
    "sdk": "otel SDK configured",
}
BASELINE = "absent"
ABSENT = ("absent", "control")


# -- one contender, in its own process ---------------------------------------------------


class _Blocked(importlib.abc.MetaPathFinder):
    """Every `opentelemetry*` import fails, as when the API is not installed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "opentelemetry" or fullname.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _otel_modules() -> list[str]:
    return sorted(name for name in sys.modules
                  if name == "opentelemetry" or name.startswith("opentelemetry."))


class _Contender:
    """The environment of one contender, set up before `fathom_async` is imported."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.spans: dict[str, int] = {}
        self.reader: Any = None
        if name in ABSENT:
            sys.meta_path.insert(0, _Blocked())
        elif name == "installed":
            import opentelemetry.metrics
            import opentelemetry.trace  # noqa: F401
        elif name == "sdk":
            self._configure()
        else:
            raise ValueError(f"unknown contender {name!r}")

    def _configure(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        spans = self.spans

        class Counted(SpanExporter):
            """Drops each span, counting it by name."""

            def export(self, batch: Sequence[ReadableSpan]) -> SpanExportResult:
                for span in batch:
                    spans[span.name] = spans.get(span.name, 0) + 1
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Counted()))
        trace.set_tracer_provider(provider)
        self.reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[self.reader]))

    def check(self, fathom: FathomClient, calls: int) -> list[str]:
        """What is wrong with this contender's environment, after `calls` calls."""
        from fathom_async import _telemetry

        wrapped = hasattr(type(fathom.sites).get, "__wrapped__")  # by `public_call`
        problems = []
        if self.name in ABSENT:
            if _telemetry.AVAILABLE is not False:
                problems.append("AVAILABLE is not False")
            if wrapped:
                problems.append("sites.get is wrapped")
            if _otel_modules():
                problems.append(f"imported {', '.join(_otel_modules())}")
            return problems
        if _telemetry.AVAILABLE is not True:
            problems.append("AVAILABLE is not True")
        if not wrapped:
            problems.append("sites.get is not wrapped")
        if self.name == "installed":
            if _telemetry.tracer() is not None:
                problems.append("a tracer is in force")
            if _telemetry.meters() is not None:
                problems.append("meters are in force")
            return problems
        if _telemetry.tracer() is None or _telemetry.meters() is None:
            problems.append("no tracer or no meters in force")
        if self.spans.get(SPAN) != calls:
            problems.append(f"{self.spans.get(SPAN)} spans {SPAN!r}, expected {calls}")
        requests = self._requests_counted()
        if requests != calls:
            problems.append(f"fathom.requests counted {requests}, expected {calls}")
        return problems

    def _requests_counted(self) -> int:
        data = self.reader.get_metrics_data()
        total = 0
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "fathom.requests":
                        total += sum(point.value for point in metric.data.data_points)
        return total


class _Nothing:
    """A resource whose method does nothing, for the hooks alone."""

    def __init__(self, client: FathomClient) -> None:
        self._client = client  # what `public_call` reads (the client's priority)

    async def nothing(self) -> int:
        return 1


async def _hooks(fathom: FathomClient, calls: int) -> dict[str, float]:
    """CPU microseconds per await of the bare method, and through the hooks."""
    from fathom_async import _telemetry

    resource = _Nothing(fathom)
    public = _telemetry.public_call("hooks.nothing", "entity")(_Nothing.nothing)

    async def bare(resource: _Nothing) -> int:
        return await _Nothing.nothing(resource)

    async def hooked(resource: _Nothing) -> int:
        result = await public(resource)
        if _telemetry.AVAILABLE:
            _telemetry.meters()  # the request layer's look-up, once per attempt
        return result

    figures = {}
    for name, method in (("bare", bare), ("hooked", hooked)):
        started = time.process_time()
        for _ in range(calls):
            await method(resource)
        figures[name] = (time.process_time() - started) / calls * 1e6
    return figures


def _worker(name: str, base: str, requests: int) -> int:
    """Answer `round` and `hooks N` on stdin with figures, and `quit` with the checks."""
    contender = _Contender(name)  # before fathom_async is imported
    from fathom_async import FathomClient, RateLimits

    loop = new_loop("asyncio")
    limits = RateLimits(entity=(10**9, 3600), reports=(10**9, 60))
    fathom = FathomClient(TOKEN, base_url=base, rate_limits=limits)

    def call() -> Awaitable[object]:
        return fathom.sites.get(SITE_ID)

    try:
        got = loop.run_until_complete(call())
        problems = [] if getattr(got, "id", None) == SITE_ID else [f"got {got!r}"]
        loop.run_until_complete(drive(call, requests))  # warm up
        loop.run_until_complete(_hooks(fathom, 1000))
        calls = 1 + requests
        reply({"problems": problems + contender.check(fathom, calls)})
        for line in sys.stdin:
            command, *args = line.split()
            if command == "round":
                speed, cpu = loop.run_until_complete(drive(call, requests))
                calls += requests
                reply({"speed": speed, "cpu": cpu})
            elif command == "hooks":
                reply(loop.run_until_complete(_hooks(fathom, int(args[0]))))
            else:
                break
        loop.run_until_complete(fathom.close())
        reply({"problems": contender.check(fathom, calls)})
    except Exception as exc:
        reply({"problems": [f"{type(exc).__name__}: {exc}"]})
        loop.run_until_complete(fathom.close())
        return 1
    finally:
        loop.close()
    return 0


# -- the coordinator ---------------------------------------------------------------------


def _died(why: str) -> Answer:
    return {"problems": [why]}


class _Worker(Worker):
    """One worker process of the contender `name`."""

    def __init__(self, name: str, base: str, requests: int) -> None:
        super().__init__(
            [sys.executable, "-m", "benchmarks.telemetry", "--worker", name, "--base", base,
             "--requests", str(requests)],
            _died)
        self.name = name


Figures = dict[str, tuple[float, float]]  # contender -> (requests/s, CPU us per call)
Hooks = dict[str, list[dict[str, float]]]  # contender -> per worker {"bare": us, "hooked": us}


def _measure(
    base: str, options: argparse.Namespace, problems: list[str]
) -> tuple[list[Figures], list[Hooks]]:
    """The interleaved rounds through the loopback, then the hooks' runs."""
    workers = [_Worker(name, base, options.requests)
               for _ in range(options.workers) for name in CONTENDERS]
    rounds: list[Figures] = []
    runs: list[Hooks] = []

    def ask(worker: _Worker, command: str | None) -> dict[str, Any]:
        answer = worker.ask(command)
        problems.extend(f"{CONTENDERS[worker.name]}: {problem}"
                        for problem in answer.get("problems", []))
        return answer

    try:
        for worker in workers:  # they import and warm up at once; wait for each
            ask(worker, None)
        if problems:
            return rounds, runs
        for turn in range(options.rounds + options.runs):
            order = workers[turn % len(workers):] + workers[:turn % len(workers)]
            command = "round" if turn < options.rounds else f"hooks {options.calls}"
            answers: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
            for worker in order:
                answers[worker.name].append(ask(worker, command))
            if problems:
                return rounds, runs
            if turn < options.rounds:
                # Each worker made the same number of calls: the contender's requests/s
                # is their harmonic mean, its CPU per call their mean.
                rounds.append({
                    name: (len(got) / sum(1 / answer["speed"] for answer in got),
                           statistics.fmean(answer["cpu"] for answer in got))
                    for name, got in answers.items()
                })
            else:
                runs.append(answers)
        for worker in workers:
            ask(worker, "quit")
    finally:
        for worker in workers:
            with contextlib.suppress(OSError):  # end of input: the worker closes and exits
                assert worker.process.stdin is not None
                worker.process.stdin.close()
        for worker in workers:
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
    return rounds, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telemetry")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve:
        serve({"/v1/sites/{site_id}": site})
        return 0
    if options.worker:
        return _worker(options.worker, options.base, options.requests)

    problems: list[str] = []
    started = time.perf_counter()
    with server("benchmarks.telemetry") as base:
        rounds, runs = _measure(base, options, problems)
    took = time.perf_counter() - started
    if problems or len(rounds) != options.rounds or len(runs) != options.runs:
        print(f"no figures ({len(rounds)} of {options.rounds} rounds, {len(runs)} of"
              f" {options.runs} runs): " + "; ".join(problems))
        return 1

    print(f"`await fathom.sites.get(...)`, scheduler on (limits far above the load), asyncio"
          f" loop, loopback server in its own process; each contender in {options.workers}"
          f" worker processes of its own, each making {options.requests} calls a round at"
          f" concurrency {CONCURRENCY}; median (min-max) of {options.rounds} interleaved"
          f" rounds ({took:.0f} s in all). CPU: the workers' CPU time per call; \"over"
          " absent\": what a contender adds to the CPU per call of \"otel absent\", round by"
          " round; the control is \"otel absent\" again in other processes (what it reads"
          " is the difference between identical processes). SDK configured:"
          " a `SimpleSpanProcessor` over an exporter that drops the spans, and an"
          " `InMemoryMetricReader`.\n")
    print("| contender | requests/s | client CPU per call (us) | over absent (us) |")
    print("| --- | --- | --- | --- |")
    over: dict[str, float] = {}
    for name, title in CONTENDERS.items():
        speeds = [r[name][0] for r in rounds]
        cpu = [r[name][1] for r in rounds]
        added = [r[name][1] - r[BASELINE][1] for r in rounds]
        over[name] = statistics.median(added)
        shown = "-" if name == BASELINE else spread(added, "+.1f")
        print(f"| {title} | {spread(speeds, ',.0f')} | {spread(cpu)} | {shown} |")

    print(f"\nThe hooks alone, in the same workers: CPU per await of a method that does"
          f" nothing, bare and made a public call by `public_call` (followed by the request"
          f" layer's `meters()` look-up); {options.calls:,} awaits, median (min-max) of"
          f" {options.runs} interleaved runs in each of a contender's workers. With the SDK:"
          f" a span, not the metrics.\n")
    print("| contender | bare method (us) | through the hooks (us) | added (us) |")
    print("| --- | --- | --- | --- |")
    hooks: dict[str, float] = {}
    for name, title in CONTENDERS.items():
        got = [figures for run in runs for figures in run[name]]
        bare = [figures["bare"] for figures in got]
        hooked = [figures["hooked"] for figures in got]
        added = [figures["hooked"] - figures["bare"] for figures in got]
        hooks[name] = statistics.median(added)
        print(f"| {title} | {spread(bare, '.2f')} | {spread(hooked, '.2f')} |"
              f" {spread(added, '+.2f')} |")

    def median(name: str, which: int) -> float:
        return statistics.median(r[name][which] for r in rounds)

    control = [r["control"][1] - r[BASELINE][1] for r in rounds]
    inside = min(control) <= over["installed"] <= max(control)
    print(f"\nMedians: a call costs {median(BASELINE, 1):.1f} us of client CPU with the API"
          f" absent. Installed without an SDK: {over['installed']:+.1f} us over absent"
          f" through the loopback, {'inside' if inside else 'outside'} the range the control"
          f" reads round by round ({spread(control, '+.1f')}); the hooks alone add"
          f" {hooks['installed']:+.2f} us a call ({hooks['absent']:+.2f} us absent). With the"
          f" SDK configured, a span and the metrics add {over['sdk']:+.1f} us a call: CPU per"
          f" call x{median('sdk', 1) / median(BASELINE, 1):.2f}, requests/s"
          f" x{median('sdk', 0) / median(BASELINE, 0):.2f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
