"""What retrying costs a call, through the public client, next to what tenacity costs.

    python -m benchmarks.retry [--requests 640] [--rounds 20] [--calls 50000] [--runs 5]

Through public calls: `FathomClient.sites.get` against a loopback server in its own
process (as in the overhead benchmark), at concurrency 64, limiter off. In one
contender the server answers every call's first request with a 429 and
`Retry-After: 0`, in the other at once. The client's CPU per retried call minus twice
that of a call answered at once is what a retry costs beyond its two requests (the
error, tenacity's decisions, the log line). A call answered at once never enters
tenacity: the client's one retry path steps tenacity only once an attempt has failed.

Why not on every call: tenacity's own cost per call, around a coroutine that does
nothing, in one run with the bare coroutine. Stepped as the client steps it
(`BaseRetrying.iter`), and as its documentation shows it (`AsyncRetrying`, built per
call). Compare with the client's CPU per loopback GET in the overhead table.
Median (min-max) of interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from tenacity import (
    AsyncRetrying,
    BaseRetrying,
    DoAttempt,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from benchmarks._loopback import SITE_BODY, drive, serve, server
from benchmarks._stats import spread

PLAIN = "sites.get, answered at once"
RETRIED = "sites.get, first request 429 (Retry-After: 0), retried once"


# -- through public calls ------------------------------------------------------------------


def _serve() -> None:
    refused: set[str] = set()

    async def site(request: web.Request) -> web.Response:
        site_id = request.match_info["site_id"]
        if site_id.startswith("R") and site_id not in refused:
            refused.add(site_id)  # this call's first request: come back at once
            return web.Response(status=429, headers={"Retry-After": "0"})
        return web.Response(body=SITE_BODY, content_type="application/json")

    serve({"/v1/sites/{site_id}": site})


async def _public(base: str, requests: int, rounds: int) -> dict[str, list[float]]:
    """Client CPU microseconds per call, per round, for calls retried once or not."""
    from fathom_async import FathomClient

    logging.getLogger("fathom_async").setLevel(logging.ERROR)  # one warning per retry
    numbers = itertools.count()
    cpu: dict[str, list[float]] = {PLAIN: [], RETRIED: []}
    async with FathomClient("benchmark-token", base_url=base, rate_limits=None) as fathom:

        async def per_call(prefix: str) -> float:
            return (await drive(lambda: fathom.sites.get(f"{prefix}{next(numbers)}"),
                                requests))[1]

        await per_call("P")
        await per_call("R")  # warm up both paths
        for turn in range(rounds):
            for name, prefix in ((PLAIN, "P"), (RETRIED, "R"))[:: 1 if turn % 2 else -1]:
                cpu[name].append(await per_call(prefix))
    return cpu


# -- tenacity's own cost per call ------------------------------------------------------------


class _Stepped(BaseRetrying):
    """tenacity's decisions, stepped by an awaiting loop (as the client steps them)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def _nothing(number: int) -> int:
    return number


def _engine_contenders() -> dict[str, Callable[[], Awaitable[Any]]]:
    terms: dict[str, Any] = {
        "stop": stop_after_attempt(4),
        "wait": wait_random_exponential(multiplier=0.5, max=8),
        "retry": retry_if_exception_type(ConnectionError),
        "reraise": True,
    }
    stepped = _Stepped(**terms)

    async def bare() -> Any:
        return await _nothing(1)

    async def step() -> Any:
        stepped.begin()
        state = RetryCallState(stepped, _nothing, (), {})
        while True:
            action = stepped.iter(state)
            if not isinstance(action, DoAttempt):
                return action
            state.set_result(await _nothing(state.attempt_number))

    async def async_retrying() -> Any:
        async for attempt in AsyncRetrying(**terms):
            with attempt:
                return await _nothing(attempt.retry_state.attempt_number)
        return None

    return {
        "the coroutine alone": bare,
        "tenacity stepped from the first attempt (`BaseRetrying.iter`)": step,
        "tenacity `AsyncRetrying`, built per call": async_retrying,
    }


async def _engine(calls: int, runs: int) -> dict[str, list[float]]:
    async def timed(call: Callable[[], Awaitable[Any]], count: int) -> float:
        started = time.process_time()
        for _ in range(count):
            await call()
        return (time.process_time() - started) / count * 1e6

    contenders = _engine_contenders()
    for call in contenders.values():  # warm up
        await timed(call, 1000)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, call in contenders.items():
            times[name].append(await timed(call, calls))
    return times



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retry")
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve:
        _serve()
        return 0
    with server("benchmarks.retry") as base:
        public = asyncio.run(_public(base, options.requests, options.rounds))
    engine = asyncio.run(_engine(options.calls, options.runs))

    extra = [retried - 2 * plain
             for retried, plain in zip(public[RETRIED], public[PLAIN], strict=True)]
    print(f"Through public calls: client CPU per call, {options.requests} calls a round at"
          f" concurrency 64, limiter off, median (min-max) of {options.rounds} interleaved"
          " rounds. A call answered at once never enters tenacity.\n")
    print("| call | client CPU per call, us |")
    print("| --- | --- |")
    for name, values in public.items():
        print(f"| {name} | {spread(values)} |")
    print("| a retried call beyond its two requests (retried - 2 x answered at once)"
          f" | {spread(extra)} |")
    bare = statistics.median(engine["the coroutine alone"])
    print(f"\ntenacity's own CPU per call around a coroutine that does nothing (what"
          f" entering it on every call would add); {options.calls:,} calls, median"
          f" (min-max) of {options.runs} interleaved runs.\n")
    print("| path | us per call | added to the coroutine, us |")
    print("| --- | --- | --- |")
    for name, values in engine.items():
        print(f"| {name} | {spread(values, '.2f')} |"
              f" {statistics.median(values) - bare:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
