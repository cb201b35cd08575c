"""What the retry engine costs a call: tenacity, stepped by the client's one retry path.

    python -m benchmarks.retry [--calls 50000] [--runs 5] [--requests 640] [--rounds 20]

Every API call goes through `RetryLoop`: the first attempt runs, and only a failure
enters tenacity, which then decides every retry, wait and stop. This measures, per
call, the CPU that path adds around an attempt that does nothing (so the figure is
the engine's alone), side by side in one run with:

- tenacity entered before the first attempt as well, stepped the same way
  (`BaseRetrying.iter`): what a call would pay if the engine ran on every call;
- tenacity's own `AsyncRetrying` (`async for attempt in AsyncRetrying(...)`), built
  per call, as its documentation shows;
- a call whose first attempt fails with a 503 and is retried once (no sleep): the
  engine's cost when it has something to decide.

Median (min-max) of interleaved runs, in microseconds per call.

Then the same through public calls: `FathomClient.sites.get` against a loopback server in
its own process (as in the overhead benchmark), at concurrency 64, limiter off. The
server answers every call's first request with a 429 and `Retry-After: 0` in one
contender, and at once in the other; the client's CPU per call of the first minus
twice that of the second is what a retried call costs beyond its two requests (the
error, tenacity's decisions, the log line). Interleaved rounds, median (min-max).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import AsyncRetrying, DoAttempt, RetryCallState, stop_after_attempt

from fathom_async import ServerError
from fathom_async._protocol import ApiRequest
from fathom_async._retry import RetryLoop, RetryPolicy

READ = ApiRequest("GET", "/sites/CDBUGS", "entity")
SITE = {"id": "CDBUGS", "object": "site", "name": "Bugs Bunny Portfolio", "sharing": "none",
        "created_at": "2020-07-27 12:01:01"}
POLICY = RetryPolicy()


async def _nothing(request: ApiRequest, terms: object, number: int) -> int:
    return number


async def _no_sleep(seconds: float) -> None:
    return None


def _contenders() -> dict[str, Callable[[], Awaitable[Any]]]:
    loop = RetryLoop(POLICY, sleep=_no_sleep)
    every_call = RetryLoop(POLICY, sleep=_no_sleep)
    engine = every_call._decider()
    failing = {"next": True}

    async def flaky(request: ApiRequest, terms: object, number: int) -> int:
        failing["next"] = not failing["next"]
        if not failing["next"]:
            raise ServerError("busy", status_code=503)
        return number

    async def bare() -> Any:
        return await _nothing(READ, None, 1)

    async def retry_loop() -> Any:
        return await loop(_nothing, READ, None)

    async def engine_first() -> Any:
        engine.begin()
        state = RetryCallState(engine, _nothing, (READ, None), {})
        while True:
            action = engine.iter(state)
            if isinstance(action, DoAttempt):
                state.set_result(await _nothing(READ, None, state.attempt_number))
            else:
                return action

    async def async_retrying() -> Any:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(POLICY.max_retries + 1),
            wait=POLICY.wait_for,
            retry=lambda state: False,
            reraise=True,
        ):
            with attempt:
                return await _nothing(READ, None, attempt.retry_state.attempt_number)
        return None

    async def retried_once() -> Any:
        return await loop(flaky, READ, None)

    return {
        "the attempt alone (no retry layer)": bare,
        "RetryLoop, attempt succeeds (every successful call)": retry_loop,
        "tenacity stepped from the first attempt": engine_first,
        "tenacity AsyncRetrying per call": async_retrying,
        "RetryLoop, first attempt 503, retried once": retried_once,
    }


async def _time(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls * 1e6


async def _measure(calls: int, runs: int) -> dict[str, list[float]]:
    contenders = _contenders()
    for call in contenders.values():  # warm up, and import what each imports
        await _time(call, 1000)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, call in contenders.items():
            times[name].append(await _time(call, calls))
    return times


async def _serve() -> None:
    from aiohttp import web

    body = json.dumps(SITE).encode()
    refused: set[str] = set()

    async def site(request: web.Request) -> web.Response:
        site_id = request.match_info["site_id"]
        if site_id.startswith("R") and site_id not in refused:
            refused.add(site_id)  # this call's first request: come back at once
            return web.Response(status=429, headers={"Retry-After": "0"})
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/sites/{site_id}", site)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}/v1", flush=True)
    await asyncio.Event().wait()


async def _public(base: str, requests: int, rounds: int) -> dict[str, list[float]]:
    """Client CPU microseconds per call, per round, for calls retried once or not."""
    from fathom_async import FathomClient

    logging.getLogger("fathom_async").setLevel(logging.ERROR)  # one warning per retry
    numbers = itertools.count()
    cpu: dict[str, list[float]] = {PLAIN: [], RETRIED: []}
    async with FathomClient("benchmark-token", base_url=base, rate_limits=None) as fathom:

        async def drive(prefix: str) -> float:
            left = requests

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await fathom.sites.get(f"{prefix}{next(numbers)}")

            started = time.process_time()
            await asyncio.gather(*(worker() for _ in range(64)))
            return (time.process_time() - started) / requests * 1e6

        await drive("P")
        await drive("R")  # warm up both paths
        for turn in range(rounds):
            for name, prefix in ((PLAIN, "P"), (RETRIED, "R"))[:: 1 if turn % 2 else -1]:
                cpu[name].append(await drive(prefix))
    return cpu


PLAIN = "sites.get, answered at once"
RETRIED = "sites.get, first request 429 (Retry-After: 0), retried once"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retry")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve:
        asyncio.run(_serve())
        return 0
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.retry", "--serve"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        public = asyncio.run(_public(base, options.requests, options.rounds))
    finally:
        server.kill()
        server.wait()
    times = asyncio.run(_measure(options.calls, options.runs))
    bare = statistics.median(times["the attempt alone (no retry layer)"])
    print(f"CPU per call around an attempt that does nothing; {options.calls:,} calls,"
          f" median (min-max) of {options.runs} interleaved runs.\n")
    print("| path | us per call | added to the attempt, us |")
    print("| --- | --- | --- |")
    for name, values in times.items():
        middle = statistics.median(values)
        print(f"| {name} | {middle:.2f} ({min(values):.2f}-{max(values):.2f})"
              f" | {middle - bare:.2f} |")
    extra = [retried - 2 * plain
             for retried, plain in zip(public[RETRIED], public[PLAIN], strict=True)]
    print(f"\nThrough public calls: client CPU per call, {options.requests} calls a round at"
          f" concurrency 64, limiter off, median (min-max) of {options.rounds} interleaved"
          " rounds.\n")
    print("| call | client CPU per call, us |")
    print("| --- | --- |")
    for name, values in public.items():
        print(f"| {name} | {_spread(values)} |")
    print(f"| a retried call beyond its two requests (retried - 2 x answered at once)"
          f" | {_spread(extra)} |")
    return 0


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


if __name__ == "__main__":
    sys.exit(main())
