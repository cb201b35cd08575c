"""What the retry engine costs a call: tenacity, stepped by the client's one retry path.

    python -m benchmarks.retry [--calls 50000] [--runs 5]

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

Compare the figures with the client's CPU per loopback GET in the overhead table.
Median (min-max) of interleaved runs, in microseconds per call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import AsyncRetrying, DoAttempt, RetryCallState, stop_after_attempt

from fathom_async import ServerError
from fathom_async._protocol import ApiRequest
from fathom_async._retry import RetryLoop, RetryPolicy

READ = ApiRequest("GET", "/sites/CDBUGS", "entity")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retry")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args(argv)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
