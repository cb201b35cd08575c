"""The Redis backend with 1, 4 and 16 processes sharing one compressed limit.

Run it with `python -m benchmarks.redis` (needs `redis-server` on PATH; it starts its
own on a free loopback port, as the tests do, with `tests.redis_server`). For each
process count, every run starts that many worker processes (`python -m
tests.redis_server worker`), each with 4 tasks acquiring in a loop, 240 grants in all
(a whole number of windows, split evenly between 1, 4 or 16 processes) under 20 per
1 s: a burst of 20, then 11 s at the limit (long enough that sixteen interpreters
starting up do not decide the figure). From the merged log of Redis grant times:

- throughput: grants after the first burst per second of the run;
- round trips per grant: script calls (NOSCRIPT reloads included) over grants;
- max grants in any 1 s window [t_i, t_i + 1) (the limit is 20);
- utilisation: the exact schedule's time over the time taken. The exact schedule is
  what a perfect limiter does from the same first burst (the processes do not start
  at the same instant): grant `i` at grant `i - 20` plus one period. 100 % means no
  slot was left unused; it is independent of how the first burst was spread.
- the old figure, grants after the first burst over `limit * span`, is shown beside
  it: it also counts against us the spread of the first burst (interpreters starting
  a little apart repeat that spread in every later window) and, when the total is
  not a whole number of windows, the part of the last window nobody asked for.

Each figure is the median of several runs with the spread (min-max). The table is
Markdown. The exit status is 1 when a figure could not be made.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks.scheduler import max_in_any_window
from tests.redis_server import RedisServer, worker_command

LIMIT, PERIOD, TOTAL, CONCURRENCY = 20, 1.0, 240, 4
PROCESS_COUNTS = (1, 4, 16)


@dataclass
class Figures:
    throughput: list[float] = field(default_factory=list)
    round_trips: list[float] = field(default_factory=list)
    max_window: list[float] = field(default_factory=list)
    utilisation: list[float] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_once(server: RedisServer, processes: int, figures: Figures) -> None:
    each = TOTAL // processes
    start = time.time() + 1.0 + 0.1 * processes  # interpreters start and import
    key = uuid.uuid4().hex  # one budget shared by every worker of the run
    workers = [
        subprocess.Popen(
            worker_command(
                server.url, key, LIMIT, PERIOD, each, CONCURRENCY, start
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        if worker.returncode != 0:
            raise RuntimeError(f"a worker failed: {err.decode()[-500:]}")
        results.append(json.loads(out))
    grants = sorted(t for r in results for t in r["grants"])
    if len(grants) != each * processes:
        raise RuntimeError(f"{len(grants)} grants, expected {each * processes}")
    span = grants[-1] - grants[0]
    figures.throughput.append((len(grants) - LIMIT) / span)
    figures.round_trips.append(sum(r["stats"]["round_trips"] for r in results) / len(grants))
    figures.max_window.append(max_in_any_window(grants, PERIOD))
    figures.utilisation.append((exact_schedule(grants)[-1] - grants[0]) / span)
    figures.naive.append((len(grants) - LIMIT) / (LIMIT / PERIOD * span))


def exact_schedule(grants: Sequence[float]) -> list[float]:
    """A perfect limiter's grant times for the same backlog, from the same first burst."""
    ideal = list(grants[:LIMIT])
    for i in range(LIMIT, len(grants)):
        ideal.append(ideal[i - LIMIT] + PERIOD)
    return ideal


def summary(values: Sequence[float], form: str) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):{form}} ({min(values):{form}}-{max(values):{form}})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    args = parser.parse_args(argv)
    results = {n: Figures() for n in PROCESS_COUNTS}
    started = time.perf_counter()
    server = RedisServer()
    server.start()
    try:
        for _ in range(args.runs):
            for processes, figures in results.items():
                try:
                    run_once(server, processes, figures)
                except Exception as exc:  # a figure we cannot make is reported, not hidden
                    figures.errors.append(repr(exc))
    finally:
        server.stop()
    elapsed = time.perf_counter() - started
    print(
        f"Median (min-max) of {args.runs} runs; {TOTAL} grants under {LIMIT}/{PERIOD:g} s"
        f" shared through one redis-server, {CONCURRENCY} tasks per process"
        f" ({elapsed:.0f} s)."
    )
    print()
    print(
        "| processes | throughput (grants/s, limit 20) | Redis round trips per grant"
        f" | max grants in any {PERIOD:g} s window (limit {LIMIT}) | utilisation"
        " | old figure: (n - limit) / (limit x span) | met |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    failed = False
    for processes, figures in results.items():
        print(
            f"| {processes} | {summary(figures.throughput, '.1f')}"
            f" | {summary(figures.round_trips, '.2f')}"
            f" | {summary(figures.max_window, '.0f')}"
            f" | {summary([100 * u for u in figures.utilisation], '.1f')} %"
            f" | {summary([100 * u for u in figures.naive], '.1f')} %"
            f" | {verdict(figures)} |"
        )
        for error in figures.errors:
            print(f"error: {processes} processes: {error}", file=sys.stderr)
        if figures.errors or len(figures.max_window) != args.runs:
            failed = True
    return 1 if failed else 0


def verdict(figures: Figures) -> str:
    """The targets: exact windows, utilisation >= 97 %, at most 2 round trips a grant."""
    if not figures.max_window:
        return "NO (no figure)"
    misses = []
    if max(figures.max_window) > LIMIT:
        misses.append("a window over the limit")
    if statistics.median(figures.utilisation) < 0.97:
        misses.append("utilisation under 97 %")
    if statistics.median(figures.round_trips) > 2:
        misses.append("over 2 round trips a grant")
    return "yes" if not misses else "NO: " + ", ".join(misses)


if __name__ == "__main__":
    sys.exit(main())
