"""Warehouse load: a year of daily pageviews into DuckDB, against the rate-limit floor.

Run it with `python -m benchmarks.load`. A year of daily pageviews by pathname for
several sites goes through the public calls a user makes (`dlt.pipeline(...).run(
fathom_source(client, ...))`) into a DuckDB file, against the emulator with its
limits sped up 6x (10 report calls per 10 seconds), in fresh processes: the emulator in
one, the load in another, so neither's memory counts for the other.

- wall time, divided by the floor the rate limits set: the report requests the load
  made (counted by the emulator) / rate. Entity calls (2000 per minute here) cost
  nothing next to that. Target: <= 1.1 (dlt's normalize and load steps run after the
  last request and are part of the wall time). Beside it, the ratio to the strictest
  floor an exact window allows: `(ceil(requests / limit) - 1) * period`.
- peak RSS of the load process, next to the same process that only imports
  `fathom_async.dlt`, dlt and duckdb.

Each figure is the median of several runs (spread beside it). The table is Markdown;
the exit status is 1 when a figure could not be produced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import Any

# 6x: the floor is long enough (about 50 s) that dlt's fixed cost of normalizing and
# loading after the last request does not stand in for the scheduler's figure.
from benchmarks._stats import against_floors, spread

TIME_SCALE = 6.0
YEAR = {"sites": 3, "days": 365, "pages": 40}


# -- child processes ----------------------------------------------------------------


async def _serve() -> None:
    from fathom_async.testing import FakeFathom, Pageview

    fake = FakeFathom(seed=5, demo=False, time_scale=TIME_SCALE)
    today = datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)
    with fake.store.bulk_load():
        for index in range(YEAR["sites"]):
            site = fake.store.add_site(f"Site {index}")
            fake.store.add_pageviews(
                Pageview(site_id=site.id, timestamp=today - timedelta(days=day),
                         pathname=f"/page/{page}")
                for day in range(YEAR["days"])
                for page in range(YEAR["pages"])
            )
    async with fake:
        print(json.dumps({"url": fake.url, "token": fake.token}), flush=True)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):  # "count" until EOF
            reports = sum(1 for r in fake.store.requests if r.path.endswith("/aggregations"))
            print(json.dumps({"report_requests": reports}), flush=True)


def _load(url: str, token: str, directory: str) -> dict[str, Any]:
    import dlt

    from fathom_async import FathomClient, RateLimits
    from fathom_async.dlt import fathom_source

    today = datetime.now(timezone.utc).date()
    limits = RateLimits(entity=(2000, 3600 / TIME_SCALE), reports=(10, 60 / TIME_SCALE))
    client = FathomClient(token, base_url=url, rate_limits=limits)
    pipeline = dlt.pipeline(
        pipeline_name="bench", destination=dlt.destinations.duckdb(f"{directory}/w.duckdb"),
        dataset_name="fathom", pipelines_dir=f"{directory}/pipelines",
    )
    source = fathom_source(client, start_date=today - timedelta(days=YEAR["days"] - 1),
                           end_date=today)
    started = time.monotonic()
    pipeline.run(source, loader_file_format="parquet")  # as the README advises for DuckDB
    elapsed = time.monotonic() - started
    asyncio.run(client.close())
    import duckdb

    with duckdb.connect(f"{directory}/w.duckdb", read_only=True) as con:
        [(rows,)] = con.sql("select count(*) from fathom.pageviews").fetchall()
    return {"elapsed": elapsed, "rows": rows,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(argv: list[str]) -> None:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    if argv[0] == "serve":
        asyncio.run(_serve())
    elif argv[0] == "load":
        print(json.dumps(_load(*argv[1:4])))
    elif argv[0] == "import":
        import dlt  # noqa: F401
        import duckdb  # noqa: F401

        import fathom_async.dlt  # noqa: F401

        print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# -- the parent --------------------------------------------------------------------


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.load", "--child", *args]


def _one_load() -> dict[str, Any]:
    server = subprocess.Popen(_python("serve"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        assert server.stdin is not None
        where = json.loads(server.stdout.readline())
        with tempfile.TemporaryDirectory() as directory:
            done = subprocess.run(_python("load", where["url"], where["token"], directory),
                                  capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(done.stderr[-3000:])
        server.stdin.write("count\n")
        server.stdin.flush()
        counted = json.loads(server.stdout.readline())
        result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
        return {**result, **counted}
    finally:
        server.kill()
        server.wait()



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    if options.child:
        _child(options.child)
        return 0

    runs = [_one_load() for _ in range(options.runs)]
    walls, floors, ratios, strict = against_floors(runs, TIME_SCALE)
    baseline = json.loads(subprocess.run(_python("import"), capture_output=True, text=True,
                                         check=True).stdout)["rss_mb"]
    expected = YEAR["sites"] * YEAR["days"] * YEAR["pages"]
    # Each site's year needs a request per 1000 rows at the least: the floor above is
    # from the requests made, so a wasteful plan shows here.
    least = YEAR["sites"] * math.ceil(YEAR["days"] * YEAR["pages"] / 1000)
    rows = min(r["rows"] for r in runs)
    ratio = statistics.median(ratios)
    print("| figure | measured | floor / peer | target | met |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| load wall time, {rows:,} rows ({YEAR['sites']} sites x {YEAR['days']} days x"
          f" {YEAR['pages']} pages), emulator at {TIME_SCALE:g}x | {spread(walls, '.2f')} s"
          f" | floor {spread(floors, '.2f')} s ({runs[0]['report_requests']} report requests,"
          f" {least} at the least);"
          f" ratio {spread(ratios, '.3f')} (to the strict floor: {spread(strict, '.3f')})"
          f" | <= 1.1x | {'yes' if ratio <= 1.1 else 'NO'} |")
    print(f"| load peak RSS | {spread([r['rss_mb'] for r in runs], '.1f')} MB"
          f" | import only: {baseline:.1f} MB | - | - |")
    if rows != expected:
        print(f"loaded {rows} rows, expected {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
