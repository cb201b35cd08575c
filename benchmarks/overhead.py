"""Request overhead: the client against raw aiohttp doing the same requests.

Run it with `python -m benchmarks.overhead [--rounds 30] [--requests 640]`. A
loopback aiohttp server (its own process, so it does not share the client's core)
answers `GET /v1/sites/{id}` with a site. Three long-lived clients, made once per
event loop, make the same requests at concurrency 64, in many short rounds whose
order turns round by round, so that each client's figure is taken next to raw
aiohttp's at the same machine speed (a shared machine's speed drifts by more than
the differences measured here):

- raw aiohttp: `session.get` with the same headers, `await response.read()`, and
  `json.loads`: what a raw aiohttp user writes (`response.json()` is the same
  `json.loads`), so the peer keeps the standard library decoder even when the client
  decodes with msgspec (the `speedups` extra; the decoder it used is printed). On a
  body of 120 bytes the decoder is worth well under a microsecond either way;
- fathom_async with `rate_limits=None`: validation, the request layer, retries
  armed, structuring into a `Site`;
- fathom_async with the scheduler on, its limit far above the load.

The same runs under the default asyncio loop and again under uvloop (the uvloop
columns say "not installed" when it does not import; ratios there are to raw
aiohttp under uvloop). Figures: throughput and its ratio to raw aiohttp, and
the client process's CPU time (`time.process_time()`) per call, with what the client
adds to raw aiohttp's; the median and spread (min-max) of the rounds.
Targets, on the asyncio loop: >= 0.93x without the limiter, >= 0.90x with it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import sys
from collections.abc import Awaitable, Callable

import aiohttp

from benchmarks._loopback import CONCURRENCY, decoder, drive, new_loop, serve, server, site
from benchmarks._stats import spread

REQUESTS = 640
TOKEN = "benchmark-token"


Figures = dict[str, tuple[float, float]]  # client -> (requests/s, CPU us per call)
RAW = "raw aiohttp"
TARGETS = {RAW: None, "fathom_async, limiter off": 0.93, "fathom_async, scheduler on": 0.90}
LOOPS = ("asyncio", "uvloop")


async def _rounds(base: str, requests: int, rounds: int) -> list[Figures]:
    """`rounds` rounds of `requests` calls per client, the clients made once.

    Rounds are short and the order of the clients turns each round, so each
    client's figure is taken next to raw aiohttp's, at the same machine speed.
    """
    from fathom_async import FathomClient, RateLimits

    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    limits = RateLimits(entity=(10**9, 3600), reports=(10**9, 60))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    off = FathomClient(TOKEN, base_url=base, rate_limits=None)
    on = FathomClient(TOKEN, base_url=base, rate_limits=limits)

    async def raw() -> object:
        async with session.get(f"{base}/sites/CDBUGS", headers=headers) as response:
            return json.loads(await response.read())

    calls: dict[str, Callable[[], Awaitable[object]]] = {
        RAW: raw,
        "fathom_async, limiter off": lambda: off.sites.get("CDBUGS"),
        "fathom_async, scheduler on": lambda: on.sites.get("CDBUGS"),
    }
    names = list(calls)
    results: list[Figures] = []
    try:
        for name in names:  # warm up: connections open, code paths run once
            await drive(calls[name], requests)
        for turn in range(rounds):
            figures: Figures = {}
            for name in names[turn % len(names):] + names[:turn % len(names)]:
                figures[name] = await drive(calls[name], requests)
            results.append(figures)
    finally:
        await session.close()
        await off.close()
        await on.close()
    return results


def _run(kind: str, base: str, requests: int, rounds: int) -> list[Figures]:
    """The rounds on a fresh loop of `kind`."""
    loop = new_loop(kind)
    try:
        return loop.run_until_complete(_rounds(base, requests, rounds))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve:
        serve({"/v1/sites/{site_id}": site})
        return 0
    try:
        importlib.import_module("uvloop")
        kinds = list(LOOPS)
    except ImportError:
        kinds = ["asyncio"]
    rounds: dict[str, list[Figures]] = {}
    with server("benchmarks.overhead") as base:
        for kind in kinds:
            rounds[kind] = _run(kind, base, options.requests, options.rounds)
    print(f"GET site, {options.requests} requests at concurrency {CONCURRENCY}, loopback"
          f" server in its own process; median (min-max) of {options.rounds} interleaved"
          f" rounds; fathom_async decodes with {decoder()}, raw aiohttp with json.loads."
          " CPU: the client process's CPU time per call; \"over raw\": what the client"
          " adds to raw aiohttp's, round by round.\n")
    header, rule = "| client |", "| --- |"
    for kind in LOOPS:
        header += (f" {kind}: requests/s | {kind}: ratio to raw aiohttp |"
                   f" {kind}: CPU per call (us) | {kind}: over raw (us) |")
        rule += " --- | --- | --- | --- |"
    print(f"{header} target (asyncio) | met |")
    print(f"{rule} --- | --- |")
    for name, target in TARGETS.items():
        row = f"| {name} |"
        verdict = ""
        for kind in LOOPS:
            if kind not in rounds:
                row += " not installed | | | |"
                continue
            speeds = [r[name][0] for r in rounds[kind]]
            ratios = [r[name][0] / r[RAW][0] for r in rounds[kind]]
            cpu = [r[name][1] for r in rounds[kind]]
            added = [r[name][1] - r[RAW][1] for r in rounds[kind]]
            over = "-" if name == RAW else spread(added, "+.1f")
            row += (f" {spread(speeds, ',.0f')} | {spread(ratios, '.3f')} |"
                    f" {spread(cpu, '.1f')} | {over} |")
            if kind == "asyncio" and target is not None:
                verdict = "yes" if statistics.median(ratios) >= target else "NO"
        goal = "" if target is None else f">= {target:.2f}x"
        print(f"{row} {goal} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
