"""A large aggregation through the public API: bytes on a socket in, typed rows out.

    python -m benchmarks.aggregations [--rows 100000] [--rounds 7] [--memory-runs 3]

A loopback aiohttp server, in its own process, answers `GET /v1/aggregations` with a
fixed, precomputed body: what the live API sends (FACTS.md), a bare JSON array whose
numbers are strings, here 100,000 rows of 10 fields. Each contender asks for

    entity="pageview", site_id="CDBUGS", date_grouping="day",
    aggregates=["visits", "uniques", "pageviews", "avg_duration", "bounce_rate"],
    field_grouping=["hostname", "pathname", "browser", "country_code"]

and a figure is the time of one call, from the request sent to the typed rows
returned (so the transfer, the JSON decoding and the typing are all in it):

- pydantic v2 (the peer and the baseline of every ratio): raw aiohttp and
  `TypeAdapter(list[Model]).validate_json(await response.read())`;
- msgspec (the floor): raw aiohttp and `msgspec.json.Decoder(list[Struct],
  strict=False)`; both models mirror `AggregationRow` (32 optional fields);
- fathom_async with the `speedups` extra: `FathomClient(...).aggregations.query(...)`,
  the scheduler on with its limits far above the load, no report cache; the
  client decodes with msgspec;
- fathom_async on the standard library only: the same, in a process where
  `import msgspec` fails, so the client decodes with `json`.

Every contender also gets a second figure, "query + touch every row": the same
call, then a loop that reads `visits` of every row. A result that makes its rows
only when they are read looks fast in the first figure; the second is the one to
compare with the peers, whose rows are all built before the call returns.

Each contender runs under the default asyncio loop and under uvloop (the column
says "not installed" when uvloop does not import), each pair in its own worker
process, reused across rounds, so that imports (and the missing msgspec) do not
leak from one to another. Rounds are interleaved: every worker makes one call,
in an order that turns round by round, then every worker makes one touched call.
A full garbage collection comes before each call; the result is freed (and
collected) after the timer stops, before the next worker starts. Figures are the
median (min-max) over the rounds; ratios are ratios of medians.

Memory: for each contender (asyncio loop), a fresh process imports everything,
makes one small warm-up call, then one full call: the peak RSS during that call
over the RSS just before it (`ru_maxrss`), the RSS still held while the result is
alive, and the RSS held once every row has been touched (Linux: RSS read from
/proc), median (min-max) over several fresh processes.

Targets, on the asyncio loop: fathom_async with speedups <= 0.50x pydantic, on the
standard library only <= 0.80x pydantic. The exit status is 1 when a figure could
not be produced (a missed target is reported, not an error).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from benchmarks import _workers
from benchmarks._loopback import decoder, new_loop, serve, server
from benchmarks._workers import Answer, reply

if TYPE_CHECKING:  # the library is imported where it is measured
    from fathom_async.types import FieldGrouping, PageviewAggregate

TOKEN = "benchmark-token"
SITE_ID = "CDBUGS"
AGGREGATES: list[PageviewAggregate] = [
    "visits", "uniques", "pageviews", "avg_duration", "bounce_rate",
]
FIELD_GROUPING: list[FieldGrouping] = ["hostname", "pathname", "browser", "country_code"]
WARM_UP_ROWS = 10
# What the client sends for the query above; the raw contenders send the same.
RAW_QUERY = [
    ("entity", "pageview"),
    ("entity_id", SITE_ID),
    ("aggregates", ",".join(AGGREGATES)),
    ("date_grouping", "day"),
    ("field_grouping", ",".join(FIELD_GROUPING)),
]
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}

# The fields of `fathom_async.AggregationRow`, in its order, mirrored by the peers' models.
ROW_ORDER = (
    "visits", "uniques", "pageviews", "avg_duration", "bounce_rate", "conversions",
    "unique_conversions", "value", "date", "hostname", "pathname", "entry_page", "exit_page",
    "referrer_hostname", "referrer_pathname", "referrer_source", "browser", "country_code",
    "city", "state", "region", "device_type", "operating_system", "utm_campaign",
    "utm_content", "utm_medium", "utm_source", "utm_term", "keyword", "ref", "q", "s",
)
INT_FIELDS = frozenset(
    {"visits", "uniques", "pageviews", "conversions", "unique_conversions", "value"})
FLOAT_FIELDS = frozenset({"avg_duration", "bounce_rate"})
ROW_FIELDS: dict[str, Any] = {
    name: int | None if name in INT_FIELDS else float | None if name in FLOAT_FIELDS
    else str | None
    for name in ROW_ORDER
}

CONTENDERS = {
    "pydantic": "pydantic v2 TypeAdapter.validate_json (raw aiohttp)",
    "msgspec": "msgspec Decoder(list[Struct]) (raw aiohttp; floor)",
    "speedups": "fathom_async, speedups",
    "stdlib": "fathom_async, standard library only",
}
BASELINE = "pydantic"
TARGETS = {"speedups": 0.50, "stdlib": 0.80}
LOOPS = ("asyncio", "uvloop")


def payload(rows: int, seed: int = 7) -> bytes:
    """`rows` aggregation rows with 10 fields, every number a string."""
    rng = random.Random(seed)
    data = [
        {
            "visits": str(rng.randrange(100_000)),
            "uniques": str(rng.randrange(100_000)),
            "pageviews": str(rng.randrange(1_000_000)),
            "avg_duration": f"{rng.random() * 600:.2f}",
            "bounce_rate": f"{rng.random():.4f}",
            "date": f"2024-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
            "hostname": rng.choice(["example.com", "www.example.com", "blog.example.com"]),
            "pathname": f"/articles/{rng.randrange(5_000)}",
            "browser": rng.choice(["Chrome", "Firefox", "Safari", "Edge"]),
            "country_code": rng.choice(["NL", "DE", "US", "GB", "FR", "JP"]),
        }
        for n in range(rows)
    ]
    return json.dumps(data).encode()


# -- the server ------------------------------------------------------------------------


def _serve(rows: int) -> None:
    body = payload(rows)
    small = payload(WARM_UP_ROWS)

    async def aggregations(request: web.Request) -> web.Response:
        # The query string is not read, except that a warm-up call (limit given)
        # gets a small answer.
        chosen = small if "limit" in request.query else body
        return web.Response(body=chosen, content_type="application/json")

    serve({"/v1/aggregations": aggregations})


# -- one contender, in its own process ---------------------------------------------------

Call = Callable[[bool], Awaitable[Any]]  # small -> rows


async def _open(name: str, base: str) -> tuple[Call, Callable[[], Awaitable[None]], str]:
    """(call, close, decoder label) for a contender, made on the running loop."""
    if name in ("speedups", "stdlib"):
        if name == "stdlib":
            # Before fathom_async is imported: `import msgspec` now raises ImportError.
            sys.modules["msgspec"] = None  # type: ignore[assignment]
        from fathom_async import FathomClient, RateLimits

        # One answer of 100,000 rows is more than any `limit` (the live API sends at
        # most 1000 a call), so the client warns, every call, that rows may be
        # missing: the warning is kept off stderr (the check still runs).
        logging.getLogger("fathom_async").setLevel(logging.ERROR)
        limits = RateLimits(entity=(10**9, 3600), reports=(10**9, 60))
        fathom = FathomClient(TOKEN, base_url=base, rate_limits=limits)

        async def query(small: bool) -> Any:
            return await fathom.aggregations.query(
                entity="pageview", site_id=SITE_ID, aggregates=AGGREGATES,
                date_grouping="day", field_grouping=FIELD_GROUPING,
                limit=WARM_UP_ROWS if small else None,
            )

        return query, fathom.close, decoder()

    decode: Callable[[bytes], Any]
    if name == "pydantic":
        import pydantic

        fields: dict[str, Any] = {key: (kind, None) for key, kind in ROW_FIELDS.items()}
        model: Any = pydantic.create_model("AggregationRowModel", **fields)
        decode = pydantic.TypeAdapter(list[model]).validate_json
        label = f"pydantic-core {pydantic.VERSION}"
    elif name == "msgspec":
        import msgspec

        struct: Any = msgspec.defstruct(
            "AggregationRowStruct", [(key, kind, None) for key, kind in ROW_FIELDS.items()]
        )
        decode = msgspec.json.Decoder(list[struct], strict=False).decode
        label = f"msgspec {msgspec.__version__} typed"
    else:
        raise ValueError(f"unknown contender {name!r}")
    session = aiohttp.ClientSession()
    url = f"{base}/aggregations"

    async def raw(small: bool) -> Any:
        query = [*RAW_QUERY, ("limit", str(WARM_UP_ROWS))] if small else RAW_QUERY
        async with session.get(url, params=query, headers=HEADERS) as response:
            response.raise_for_status()
            return decode(await response.read())

    return raw, session.close, label


def _touch(rows: Iterable[Any]) -> int:
    """Read one field of every row."""
    total = 0
    for row in rows:
        total += row.visits
    return total


def _worker(name: str, kind: str, base: str) -> int:
    """Answer `query` / `touch` commands on stdin with one timed call each."""
    try:
        loop = new_loop(kind)
        call, close, label = loop.run_until_complete(_open(name, base))

        async def timed(touch: bool) -> tuple[float, int, int]:
            gc.collect()
            started = time.perf_counter()
            rows = await call(False)
            total = _touch(rows) if touch else 0
            elapsed = time.perf_counter() - started
            count = len(rows)
            if not touch:
                total = _touch(rows)  # the check, after the timer
            del rows
            gc.collect()
            return elapsed, count, total

        _, count, total = loop.run_until_complete(timed(True))  # warm up, and check
    except Exception as exc:
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    reply({"decoder": label, "loop": type(loop).__module__, "rows": count, "visits": total})
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        try:
            elapsed, count, total = loop.run_until_complete(timed(command == "touch"))
        except Exception as exc:
            reply({"error": f"{type(exc).__name__}: {exc}"})
            continue
        reply({"seconds": elapsed, "rows": count, "visits": total})
    loop.run_until_complete(close())
    loop.close()
    return 0


def _rss_now() -> int | None:
    """The current resident set size in bytes (Linux), or None."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _max_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _memory(name: str, base: str) -> int:
    """One fresh process: RSS around one full call, printed as one JSON line."""
    loop = new_loop("asyncio")
    try:
        call, close, label = loop.run_until_complete(_open(name, base))
        loop.run_until_complete(call(True))  # a small warm-up call
    except Exception as exc:
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    gc.collect()
    before = _rss_now()
    if before is None:
        reply({"error": "no current RSS on this system (/proc/self/statm)"})
        return 1
    rows = loop.run_until_complete(call(False))
    peak = _max_rss() - before
    gc.collect()
    held = (_rss_now() or 0) - before
    total = _touch(rows)
    gc.collect()
    touched = (_rss_now() or 0) - before
    count = len(rows)
    del rows
    loop.run_until_complete(close())
    loop.close()
    reply({"decoder": label, "peak": peak, "held": held, "touched": touched,
           "rows": count, "visits": total})
    return 0


# -- the coordinator ---------------------------------------------------------------------


def _died(why: str) -> Answer:
    return {"error": why}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.aggregations", *args]


class Worker(_workers.Worker):
    """The worker process of the contender `name` on the loop `kind`."""

    def __init__(self, name: str, kind: str, base: str) -> None:
        super().__init__(_command("--worker", name, "--loop", kind, "--base", base), _died)
        self.name = name
        self.kind = kind
        self.ready: dict[str, Any] = {}
        self.error: str | None = None


def _uvloop_error() -> str | None:
    try:
        importlib.import_module("uvloop")
    except ImportError as exc:
        return f"not installed ({exc})"
    return None


def _summary(values: list[float], scale: float = 1e3, form: str = ".0f") -> str:
    if not values:
        return "n/a"
    return (f"{statistics.median(values) * scale:{form}}"
            f" ({min(values) * scale:{form}}-{max(values) * scale:{form}})")


def _ratio(values: list[float], baseline: list[float]) -> float | None:
    if not values or not baseline:
        return None
    return statistics.median(values) / statistics.median(baseline)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aggregations")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--memory-runs", type=int, default=3,
                        help="fresh processes per contender for the memory figures")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--memory", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve:
        _serve(options.rows)
        return 0
    if options.worker:
        return _worker(options.worker, options.loop, options.base)
    if options.memory:
        return _memory(options.memory, options.base)

    expected_visits = sum(int(row["visits"]) for row in json.loads(payload(options.rows)))
    body_mb = len(payload(options.rows)) / 1e6
    uvloop_error = _uvloop_error()
    kinds = [kind for kind in LOOPS if kind == "asyncio" or uvloop_error is None]
    errors: list[str] = []
    times: dict[tuple[str, str, str], list[float]] = {
        (name, kind, what): [] for name in CONTENDERS for kind in kinds
        for what in ("query", "touch")
    }
    memory: dict[str, dict[str, list[float]]] = {
        name: {"peak": [], "held": [], "touched": []} for name in CONTENDERS
    }
    decoders: dict[str, set[str]] = {name: set() for name in CONTENDERS}

    def check(who: str, answer: dict[str, Any]) -> bool:
        if "error" in answer:
            errors.append(f"{who}: {answer['error']}")
            return False
        if answer["rows"] != options.rows or answer["visits"] != expected_visits:
            errors.append(f"{who}: {answer['rows']} rows, visits summing to"
                          f" {answer['visits']}; expected {options.rows}, {expected_visits}")
            return False
        return True

    workers: list[Worker] = []
    started = time.perf_counter()
    with server("benchmarks.aggregations", "--rows", str(options.rows)) as base:
        try:
            for name in CONTENDERS:
                for kind in kinds:
                    workers.append(Worker(name, kind, base))
            for worker in workers:  # they import and warm up at once; wait for each
                worker.ready = worker.ask()
                who = f"{CONTENDERS[worker.name]} ({worker.kind})"
                if not check(who, worker.ready):
                    worker.error = worker.ready.get("error", "wrong rows")
                elif not worker.ready["loop"].startswith(worker.kind):
                    worker.error = f"ran on {worker.ready['loop']}"
                    errors.append(f"{who}: {worker.error}")
                else:
                    decoders[worker.name].add(worker.ready["decoder"])
            for number in range(options.rounds):
                turn = number % len(workers)
                order = workers[turn:] + workers[:turn]
                for what in ("query", "touch"):
                    for worker in order:
                        if worker.error is not None:
                            continue
                        answer = worker.ask(what)
                        if check(f"{CONTENDERS[worker.name]} ({worker.kind}, {what})", answer):
                            times[worker.name, worker.kind, what].append(answer["seconds"])
                        else:
                            worker.error = answer.get("error", "wrong rows")
            for worker in workers:
                if worker.process.poll() is None:
                    assert worker.process.stdin is not None
                    worker.process.stdin.write("quit\n")
                    worker.process.stdin.flush()
                    worker.process.wait(timeout=60)
            timing_took = time.perf_counter() - started
            for _ in range(options.memory_runs):  # interleaved, one fresh process each
                for name in CONTENDERS:
                    fresh = _workers.Worker(_command("--memory", name, "--base", base), _died)
                    answer = fresh.ask()
                    fresh.process.wait(timeout=60)
                    if check(f"{CONTENDERS[name]} (memory)", answer):
                        decoders[name].add(answer["decoder"])
                        for key in ("peak", "held", "touched"):
                            memory[name][key].append(answer[key])
        finally:
            for worker in workers:
                if worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait()
    took = time.perf_counter() - started

    for name, expected in (("speedups", "msgspec"), ("stdlib", "json")):
        if decoders[name] and decoders[name] != {expected}:
            errors.append(f"{CONTENDERS[name]}: decoded with {', '.join(sorted(decoders[name]))},"
                          f" not {expected}")

    print(f"One `aggregations.query` of {options.rows:,} rows (10 fields, numbers as"
          f" strings, {body_mb:.1f} MB of JSON) from a loopback server in its own"
          f" process: request sent -> typed rows returned. Median (min-max) of"
          f" {options.rounds} interleaved rounds, each contender and loop in its own"
          f" worker process; Python {sys.version.split()[0]}; timing {timing_took:.0f} s,"
          f" all {took:.0f} s.\n")
    header = "| contender | decoder |"
    rule = "| --- | --- |"
    for kind in LOOPS:
        header += (f" query, {kind} (ms) | x pydantic ({kind}) |"
                   f" query + touch every row, {kind} (ms) |")
        rule += " --- | --- | --- |"
    print(header)
    print(rule)
    for name, title in CONTENDERS.items():
        row = f"| {title} | {', '.join(sorted(decoders[name])) or 'n/a'} |"
        for kind in LOOPS:
            if kind not in kinds:
                row += f" {uvloop_error} | | |"
                continue
            query = times[name, kind, "query"]
            ratio = _ratio(query, times[BASELINE, kind, "query"])
            row += (f" {_summary(query)} | {'n/a' if ratio is None else f'{ratio:.2f}'} |"
                    f" {_summary(times[name, kind, 'touch'])} |")
        print(row)

    added = []
    for name, title in CONTENDERS.items():
        query, touch = times[name, "asyncio", "query"], times[name, "asyncio", "touch"]
        if query and touch:
            change = (statistics.median(touch) - statistics.median(query)) * 1e3
            added.append(f"{title} {change:+.0f} ms")
    print("\nReading `visits` of every row after the call (\"query + touch every row\","
          " medians, asyncio) adds: " + "; ".join(added) + ". The peers build every row"
          " before the call returns; a result that makes its rows when they are read pays"
          " for them here, so that is the column to compare.")
    print(f"\nMemory of one call ({options.rows:,} rows), asyncio loop, fresh process each;"
          f" MB over the RSS just before the call (after imports and a small warm-up call),"
          f" median (min-max) of {options.memory_runs} processes.\n")
    print("| contender | peak RSS increase during the call (MB) | x pydantic |"
          " RSS held, result alive (MB) | RSS held after touching every row (MB) |")
    print("| --- | --- | --- | --- | --- |")
    for name, title in CONTENDERS.items():
        figures = memory[name]
        ratio = _ratio(figures["peak"], memory[BASELINE]["peak"])
        print(f"| {title} | {_summary(figures['peak'], 1e-6)} |"
              f" {'n/a' if ratio is None else f'{ratio:.2f}'} |"
              f" {_summary(figures['held'], 1e-6)} | {_summary(figures['touched'], 1e-6)} |")

    print("\n| target (asyncio loop, ratio of medians) | measured | met |")
    print("| --- | --- | --- |")
    for name, goal in TARGETS.items():
        ratio = _ratio(times[name, "asyncio", "query"], times[BASELINE, "asyncio", "query"])
        touched = _ratio(times[name, "asyncio", "touch"], times[BASELINE, "asyncio", "touch"])
        measured = "n/a" if ratio is None else f"{ratio:.2f}x"
        if touched is not None:
            measured += f" (query + touch every row: {touched:.2f}x)"
        verdict = "n/a" if ratio is None else ("met" if ratio <= goal else "NOT met")
        print(f"| {CONTENDERS[name]} <= {goal:.2f}x pydantic | {measured} | {verdict} |")

    for name in CONTENDERS:
        for kind in kinds:
            for what in ("query", "touch"):
                if len(times[name, kind, what]) != options.rounds:
                    errors.append(f"{CONTENDERS[name]} ({kind}, {what}): "
                                  f"{len(times[name, kind, what])} of {options.rounds} rounds")
        if len(memory[name]["peak"]) != options.memory_runs:
            errors.append(f"{CONTENDERS[name]} (memory): {len(memory[name]['peak'])} of"
                          f" {options.memory_runs} runs")
    if errors:
        print("\nfigures missing: " + "; ".join(dict.fromkeys(errors)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
