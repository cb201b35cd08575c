"""Request overhead: the client against raw aiohttp doing the same requests.

Run it with `python -m benchmarks.overhead`. A loopback aiohttp server (its own
process, so it does not share the client's core) answers `GET /v1/sites/{id}` with a
site. In one run, interleaved round by round, three clients make the same requests
at concurrency 64:

- raw aiohttp: `session.get` with the same headers, read the body, `json.loads`;
- fathom_async with `rate_limits=None`: validation, the request layer, retries
  armed, structuring into a `Site`;
- fathom_async with the scheduler on, its limit far above the load.

Figures are throughput ratios to raw aiohttp (median and spread of the rounds).
Targets: >= 0.90x without the limiter, >= 0.85x with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

SITE = {"id": "CDBUGS", "object": "site", "name": "Bugs Bunny Portfolio", "sharing": "none",
        "created_at": "2020-07-27 12:01:01"}
CONCURRENCY = 64
REQUESTS = 4000
TOKEN = "benchmark-token"


async def _serve() -> None:
    from aiohttp import web

    body = json.dumps(SITE).encode()

    async def site(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/sites/{site_id}", site)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}/v1", flush=True)
    await asyncio.Event().wait()


async def _drive(call: Callable[[], Awaitable[object]]) -> float:
    """Requests per second for REQUESTS calls at CONCURRENCY."""
    left = REQUESTS

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return REQUESTS / (time.perf_counter() - started)


async def _round(base: str) -> dict[str, float]:
    from fathom_async import FathomClient, RateLimits

    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    results: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def raw() -> object:
            async with session.get(f"{base}/sites/CDBUGS", headers=headers) as response:
                return json.loads(await response.read())

        results["raw aiohttp"] = await _drive(raw)
    async with FathomClient(TOKEN, base_url=base, rate_limits=None) as fathom:
        results["fathom_async, limiter off"] = await _drive(lambda: fathom.sites.get("CDBUGS"))
    limits = RateLimits(entity=(10**9, 3600), reports=(10**9, 60))
    async with FathomClient(TOKEN, base_url=base, rate_limits=limits) as fathom:
        results["fathom_async, scheduler on"] = await _drive(
            lambda: fathom.sites.get("CDBUGS"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve:
        asyncio.run(_serve())
        return 0
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.overhead", "--serve"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        asyncio.run(_round(base))  # warm up both sides
        rounds = [asyncio.run(_round(base)) for _ in range(options.rounds)]
    finally:
        server.kill()
        server.wait()
    raw = [r["raw aiohttp"] for r in rounds]
    print(f"GET site, {REQUESTS} requests at concurrency {CONCURRENCY}, loopback server in"
          f" its own process; median (min-max) of {options.rounds} interleaved rounds.\n")
    print("| client | requests/s | ratio to raw aiohttp | target | met |")
    print("| --- | --- | --- | --- | --- |")
    targets = {"raw aiohttp": None, "fathom_async, limiter off": 0.90,
               "fathom_async, scheduler on": 0.85}
    for name, target in targets.items():
        speeds = [r[name] for r in rounds]
        ratios = [r[name] / base_speed for r, base_speed in zip(rounds, raw, strict=True)]
        middle = statistics.median(ratios)
        verdict = "" if target is None else ("yes" if middle >= target else "NO")
        print(f"| {name} | {statistics.median(speeds):,.0f} ({min(speeds):,.0f}-"
              f"{max(speeds):,.0f}) | {middle:.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
              f" | {'' if target is None else f'>= {target:.2f}x'} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
