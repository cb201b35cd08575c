"""Bulk export: wall time against the floor the rate limits set, and peak memory.

Run it with `python -m benchmarks.export`. Two figures, each in fresh processes (the
emulator in one, the export in another, so neither's memory counts for the other):

- wall time: an export against the emulator with its limits sped up 60x (10 report
  calls per second), divided by the floor the rate limits set: report requests /
  rate (entity calls, 2000 per minute here, cost nothing next to that). Target:
  <= 1.05. Beside it, the ratio to the strictest floor an exact window allows:
  the first `limit` calls go at once and each later batch of `limit` one period
  after the one before, so the last call cannot go before
  `(ceil(requests / limit) - 1) * period`.
- peak RSS: an export of 1,000,000 aggregation rows (2 sites x 556 days x 900
  pages, limits off), measured as the export process's maximum resident set size,
  next to the same process that only imports the package. Target: < 150 MB.

Each figure is the median of several runs (spread beside it). The table is Markdown;
the exit status is 1 when a figure could not be produced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

from benchmarks._stats import against_floors, spread

TIME_SCALE = 60.0
WALL_DAYS = 89
MILLION = {"sites": 2, "days": 556, "pages": 900}


# -- child processes ----------------------------------------------------------------


async def _serve(dataset: str) -> None:
    from fathom_async.testing import FakeFathom, Pageview

    if dataset == "wall":
        fake = FakeFathom(seed=3, pageviews=60_000, time_scale=TIME_SCALE)
    else:
        fake = FakeFathom(seed=3, demo=False, enforce_rate_limits=False)
        start = datetime(2023, 1, 1, 12, tzinfo=timezone.utc)
        with fake.store.bulk_load():
            for index in range(MILLION["sites"]):
                site = fake.store.add_site(f"Site {index}")
                fake.store.add_pageviews(
                    Pageview(site_id=site.id, timestamp=start + timedelta(days=day),
                             pathname=f"/page/{page}")
                    for day in range(MILLION["days"])
                    for page in range(MILLION["pages"])
                )
    async with fake:
        print(json.dumps({"url": fake.url, "token": fake.token}), flush=True)
        await asyncio.Event().wait()  # until the parent kills us


async def _export(url: str, token: str, dataset: str, directory: str) -> dict[str, Any]:
    from fathom_async import FathomClient, RateLimits
    from fathom_async.export import ExportSpec, run_export

    if dataset == "wall":
        today = datetime.now(timezone.utc).date()
        spec = ExportSpec(date_from=today - timedelta(days=WALL_DAYS), date_to=today,
                          granularity="hour",
                          entities=("sites", "events", "pageviews", "event_conversions"))
        limits: RateLimits | None = RateLimits(entity=(2000, 3600 / TIME_SCALE),
                                               reports=(10, 60 / TIME_SCALE))
    else:
        first = date(2023, 1, 1)
        spec = ExportSpec(date_from=first, date_to=first + timedelta(days=MILLION["days"] - 1),
                          entities=("pageviews",), pageview_aggregates=("pageviews", "visits"))
        limits = None
    async with FathomClient(token, base_url=url, rate_limits=limits) as fathom:
        started = time.monotonic()
        summary = await run_export(fathom, spec, directory)
        elapsed = time.monotonic() - started
    return {
        "elapsed": elapsed,
        "requests": summary.requests,
        "report_requests": summary.report_requests,
        "rows": summary.rows,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(argv: list[str]) -> None:
    if argv[0] == "serve":
        asyncio.run(_serve(argv[1]))
    elif argv[0] == "export":
        url, token, dataset, directory = argv[1:5]
        print(json.dumps(asyncio.run(_export(url, token, dataset, directory))))
    elif argv[0] == "import":
        import fathom_async.export  # noqa: F401

        print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# -- the parent --------------------------------------------------------------------


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.export", "--child", *args]


def _one_export(dataset: str) -> dict[str, Any]:
    server = subprocess.Popen(_python("serve", dataset), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        where = json.loads(server.stdout.readline())
        with tempfile.TemporaryDirectory() as directory:
            done = subprocess.run(
                _python("export", where["url"], where["token"], dataset, directory),
                capture_output=True, text=True, check=True,
            )
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        server.kill()
        server.wait()



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    if options.child:
        _child(options.child)
        return 0

    timed = [_one_export("wall") for _ in range(options.runs)]
    walls, floors, ratios, strict = against_floors(timed, TIME_SCALE)
    memory = [_one_export("million") for _ in range(options.runs)]
    baseline = json.loads(subprocess.run(_python("import"), capture_output=True, text=True,
                                         check=True).stdout)["rss_mb"]
    rows = {m["rows"] for m in memory}
    print("| figure | measured | peer / floor | target | met |")
    print("| --- | --- | --- | --- | --- |")
    ratio = statistics.median(ratios)
    print(f"| export wall time, emulator at {TIME_SCALE:g}x | {spread(walls, '.2f')} s"
          f" | floor {spread(floors, '.2f')} s; ratio {spread(ratios, '.3f')}"
          f" (to the strict floor: {spread(strict, '.3f')})"
          f" | <= 1.05x | {'yes' if ratio <= 1.05 else 'NO'} |")
    peak = statistics.median(m["rss_mb"] for m in memory)
    print(f"| export peak RSS, {min(rows):,} rows | {spread([m['rss_mb'] for m in memory], '.1f')}"
          f" MB | import only: {baseline:.1f} MB | < 150 MB | {'yes' if peak < 150 else 'NO'} |")
    if min(rows) < 1_000_000:
        print(f"only {min(rows)} rows were exported", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
