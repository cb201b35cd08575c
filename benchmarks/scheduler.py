"""The rate-limit scheduler side by side with aiolimiter and pyrate-limiter.

Run it with `python -m benchmarks.scheduler`. In one run, for every limiter:

- CPU per acquire: 10,000 tasks wait at once under 2000 per 0.25 s; the process CPU
  time of the whole run divided by 10,000 (task creation included, same for all).
- fairness: in that run, the fraction of waiter pairs granted in the opposite
  order of their arrival.
- accuracy: 300 tasks wait at once under 100 per 1 s, in real time; the most grants
  in any 1 s window [t_i, t_i + 1) of the recorded loop times (at 1 us resolution).
- utilisation: in that run, the ideal time to drain the backlog, (300/100 - 1) * 1 s,
  divided by the time it took.

Each figure is the median of several runs, with the spread (min-max) beside it. The
table is printed as Markdown. The exit status is 1 when a figure could not be made
(pyrate-limiter is optional: without it, its row is left out with a note).

aiolimiter and pyrate-limiter are benchmark peers, not dependencies of fathom_async:
both come with the `dev` extra (`pip install -e '.[dev]'`), which this benchmark needs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter

from fathom_async import RateLimits

Acquire = Callable[[], Awaitable[None]]
Factory = Callable[[int, float], Acquire]  # (limit, period) -> acquire, made in the loop

CPU_WAITERS = 10_000
CPU_LIMIT = (2000, 0.25)
ACCURACY_WAITERS = 300
ACCURACY_LIMIT = (100, 1.0)


def ours(limit: int, period: float) -> Acquire:
    limits = RateLimits(entity=(limit, period), max_in_flight={"entity": None})

    async def acquire() -> None:
        permit = await limits.acquire("entity")
        permit.release()

    return acquire


def aiolimiter(limit: int, period: float) -> Acquire:
    limiter = AsyncLimiter(limit, period)
    return limiter.acquire


def pyrate(limit: int, period: float) -> Acquire:
    from pyrate_limiter import InMemoryBucket, Limiter, Rate

    limiter = Limiter(InMemoryBucket([Rate(limit, round(period * 1000))]))

    async def acquire() -> None:
        if not await limiter.try_acquire_async("benchmark"):
            raise RuntimeError("pyrate-limiter refused a blocking acquire")

    return acquire


def contenders() -> dict[str, Factory]:
    found: dict[str, Factory] = {
        "fathom_async RateLimits": ours,
        "aiolimiter AsyncLimiter": aiolimiter,
    }
    try:
        import pyrate_limiter
    except ImportError:
        print("note: pyrate-limiter is not installed; its row is left out", file=sys.stderr)
    else:
        found[f"pyrate-limiter {pyrate_limiter.__version__} InMemoryBucket"] = pyrate
    return found


async def _drain(make: Factory, limit: int, period: float, waiters: int) -> list[float]:
    """Start `waiters` tasks at once; return each one's grant time, in arrival order."""
    acquire = make(limit, period)
    loop = asyncio.get_running_loop()
    granted = [math.nan] * waiters

    async def one(number: int) -> None:
        await acquire()
        granted[number] = loop.time()

    await asyncio.gather(*(one(n) for n in range(waiters)))
    return granted


def max_in_any_window(times: Sequence[float], period: float) -> int:
    ticks = sorted(round(t * 1_000_000) for t in times)
    span = round(period * 1_000_000)
    best = end = 0
    for start_index, start in enumerate(ticks):
        while end < len(ticks) and ticks[end] < start + span:
            end += 1
        best = max(best, end - start_index)
    return best


def out_of_order_fraction(granted: Sequence[float]) -> float:
    """Pairs (i < j by arrival) with j granted strictly before i, over all pairs."""
    order = sorted(range(len(granted)), key=lambda n: (granted[n], n))
    rank = [0] * len(granted)
    for position, number in enumerate(order):
        rank[number] = position
    # Inversions of `rank` in arrival order, counted with a Fenwick tree; equal grant
    # times count as in order (ties are broken by arrival above).
    size = len(rank)
    tree = [0] * (size + 1)
    inversions = 0
    for seen, r in enumerate(rank):
        i, below = r + 1, 0
        while i > 0:
            below += tree[i]
            i -= i & -i
        inversions += seen - below
        i = r + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    pairs = size * (size - 1) // 2
    return inversions / pairs if pairs else 0.0


@dataclass
class Figures:
    cpu_us: list[float] = field(default_factory=list)
    out_of_order: list[float] = field(default_factory=list)
    max_window: list[float] = field(default_factory=list)
    utilisation: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def measure_cpu(make: Factory, figures: Figures) -> None:
    gc.collect()
    started = time.process_time()
    granted = asyncio.run(_drain(make, *CPU_LIMIT, CPU_WAITERS))
    spent = time.process_time() - started
    figures.cpu_us.append(spent / CPU_WAITERS * 1e6)
    figures.out_of_order.append(out_of_order_fraction(granted))


def measure_accuracy(make: Factory, figures: Figures) -> None:
    limit, period = ACCURACY_LIMIT
    granted = asyncio.run(_drain(make, limit, period, ACCURACY_WAITERS))
    figures.max_window.append(max_in_any_window(granted, period))
    ideal = (math.ceil(ACCURACY_WAITERS / limit) - 1) * period
    figures.utilisation.append(ideal / (max(granted) - min(granted)))


def summary(values: list[float], form: str) -> str:
    if not values:
        return "n/a"
    middle = statistics.median(values)
    return f"{middle:{form}} ({min(values):{form}}-{max(values):{form}})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    args = parser.parse_args(argv)
    runners = contenders()
    results = {name: Figures() for name in runners}
    started = time.perf_counter()
    for _ in range(args.runs):  # interleaved, so drift in the machine hits all alike
        for name, make in runners.items():
            for measure in (measure_cpu, measure_accuracy):
                try:
                    measure(make, results[name])
                except Exception as exc:  # a figure we cannot make is reported, not hidden
                    results[name].errors.append(f"{measure.__name__}: {exc!r}")
    elapsed = time.perf_counter() - started

    limit, period = ACCURACY_LIMIT
    print(
        f"Median (min-max) of {args.runs} runs; {CPU_WAITERS} waiters under"
        f" {CPU_LIMIT[0]}/{CPU_LIMIT[1]} s for CPU and order; {ACCURACY_WAITERS} waiters"
        f" under {limit}/{period:g} s for accuracy and utilisation ({elapsed:.0f} s)."
    )
    print()
    print(
        "| limiter | CPU per acquire (us) | out-of-order pairs"
        f" | max grants in any {period:g} s window (limit {limit}) | utilisation |"
    )
    print("| --- | --- | --- | --- | --- |")
    failed = False
    for name, figures in results.items():
        print(
            f"| {name} | {summary(figures.cpu_us, '.1f')}"
            f" | {summary([100 * f for f in figures.out_of_order], '.2f')} %"
            f" | {summary(figures.max_window, '.0f')}"
            f" | {summary([100 * u for u in figures.utilisation], '.1f')} % |"
        )
        for error in figures.errors:
            print(f"error: {name}: {error}", file=sys.stderr)
        if figures.errors or not (len(figures.cpu_us) == len(figures.max_window) == args.runs):
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
