"""Which failures are retried, and how long to wait before the next try.

Retried: connection errors, timeouts, 429, and 500/502/503/504, with full-jitter
exponential backoff (a random wait between 0 and `base * 2**n`, capped), or exactly
`Retry-After` when the server gives one. A `Retry-After` longer than
`max_retry_wait` is raised as `RateLimitError` at once rather than slept through:
a web request should not hang for an hour.

With a rate limiter (`rate_limited`), a 429 is not slept here at all: the limiter
has paused the whole bucket (`observe()`), and the next attempt waits for its slot
there, within what is left of the call's `acquire_timeout`. Sleeping the
`Retry-After` here as well would wait twice, and outside that deadline.

A create (a POST that makes a new object) is replayed only when the request surely
never reached the server (the connection was not made, or the server answered 429).
After a timeout, a reset or a 5xx the object may exist, and a duplicate site is worse
than an error: the caller gets `APIConnectionError(outcome_unknown=True)` or the
`ServerError` and decides.

A DELETE is replayed like a read, and so may find its own work done: when an attempt
that may have reached the server (a reset, a timeout, a 5xx) is followed by a 404,
the object is gone as asked, and the call succeeds with no body, as a 204 does. A 404
on the first attempt, or after attempts that surely never reached the server, stays
`NotFoundError`: the object was not there to delete.
"""

from __future__ import annotations

import functools
import random
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._exceptions import (
    APIConnectionError,
    APIResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ._logging import logger
from ._protocol import ApiRequest

if TYPE_CHECKING:
    from tenacity import BaseRetrying, RetryCallState

__all__ = ["RetryLoop", "RetryPolicy"]

T = TypeVar("T")

RETRY_STATUSES = frozenset({500, 502, 503, 504})

Sleep = Callable[[float], Awaitable[None]]


@attrs.frozen
class RetryPolicy:
    """How many times and how patiently to retry (all in seconds)."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    max_retry_wait: float = 60.0
    #: A rate limiter paces the attempts (it pauses the bucket on a 429).
    rate_limited: bool = False

    def should_retry(self, request: ApiRequest, exc: BaseException) -> bool:
        if isinstance(exc, RateLimitError):
            return exc.retry_after is None or exc.retry_after <= self.max_retry_wait
        if isinstance(exc, ServerError):
            return exc.status_code in RETRY_STATUSES and not request.creates
        if isinstance(exc, APIConnectionError):
            return not (request.creates and exc.outcome_unknown)
        if isinstance(exc, APIResponseError):
            # A garbled body: re-reading is harmless for a read, not for a write.
            return request.method == "GET"
        return False

    def may_have_acted(self, exc: BaseException) -> bool:
        """Whether a failed attempt may have taken effect on the server all the same."""
        if isinstance(exc, APIConnectionError):
            return exc.outcome_unknown
        return isinstance(exc, ServerError)

    def done_before(self, request: ApiRequest, exc: BaseException, *, unsure: bool) -> bool:
        """Whether a retry's failure shows that an earlier attempt did the work.

        `unsure`: some earlier attempt may have acted (`may_have_acted`). Then a
        DELETE answered 404 deleted its object then, and lost the answer.
        """
        return unsure and request.method == "DELETE" and isinstance(exc, NotFoundError)

    def delay(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first)."""
        if isinstance(exc, RateLimitError):
            if self.rate_limited:
                return 0.0  # the limiter's pause is the wait, counted in acquire_timeout
            if exc.retry_after is not None:
                return exc.retry_after
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    def wait_for(self, state: RetryCallState) -> float:
        """tenacity's `wait`: the delay after the attempt that just failed."""
        exc = state.outcome.exception() if state.outcome is not None else None
        return self.delay(state.attempt_number, exc)


@functools.cache
def _engine_class() -> type[BaseRetrying]:
    """tenacity's decision engine, stepped by `RetryLoop` (imported on first use)."""
    from tenacity import BaseRetrying

    class Engine(BaseRetrying):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("stepped by RetryLoop, which awaits each attempt")

    return Engine


class RetryLoop:
    """tenacity, awaited: every decision after a failed attempt is tenacity's.

    One path for every attempt: `await loop(attempt, request, *args)` calls
    `attempt(request, *args, number)` until it succeeds or tenacity stops. tenacity
    (`BaseRetrying.iter`) decides, from each failed attempt's outcome, whether to
    retry (`RetryPolicy.should_retry`), how long to wait (`RetryPolicy.delay`) and
    when to stop (`max_retries`); attempt numbers are its own. A retry whose failure
    shows an earlier attempt did the work (`RetryPolicy.done_before`) ends the call
    with None, the result of a success with no body. It is entered once an
    attempt has failed: after a success there is nothing to decide, and entering it
    before the first attempt costs more CPU than the rest of a call's own work
    (its per-call cost is in benchmarks/RESULTS.md). tenacity is imported then too,
    so `import fathom_async` does not pay for it.
    """

    __slots__ = ("_before_sleep", "_engine", "_policy", "_sleep")

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        sleep: Sleep,
        before_sleep: Callable[[RetryCallState], None] | None = None,
    ) -> None:
        self._policy = policy
        self._sleep = sleep
        self._before_sleep = before_sleep
        self._engine: BaseRetrying | None = None

    def _decider(self) -> BaseRetrying:
        if self._engine is None:
            from tenacity import stop_after_attempt

            policy = self._policy

            def retry(state: RetryCallState) -> bool:
                exc = state.outcome.exception() if state.outcome is not None else None
                return exc is not None and policy.should_retry(state.args[0], exc)

            self._engine = _engine_class()(
                stop=stop_after_attempt(policy.max_retries + 1),
                wait=policy.wait_for,
                retry=retry,
                before_sleep=self._before_sleep,
                reraise=True,
            )
        return self._engine

    async def __call__(
        self, attempt: Callable[..., Awaitable[T]], request: ApiRequest, *args: Any
    ) -> T:
        policy = self._policy
        try:
            return await attempt(request, *args, 1)
        except BaseException as exc:  # cancellation too: tenacity re-raises what it won't retry
            from tenacity import DoAttempt, DoSleep, RetryCallState

            engine = self._decider()
            engine.begin()  # its statistics (per thread; mixed when calls overlap, unused)
            state = RetryCallState(engine, attempt, (request, *args), {})
            state.set_exception(sys.exc_info())  # type: ignore[arg-type]
            unsure = policy.may_have_acted(exc)
        while True:
            action = engine.iter(state)
            if isinstance(action, DoAttempt):
                try:
                    result = await attempt(request, *args, state.attempt_number)
                except BaseException as exc:
                    if policy.done_before(request, exc, unsure=unsure):
                        logger.debug(
                            "%s %s: the retry (attempt %d) found it gone (404) after an"
                            " earlier attempt that may have deleted it; taken as deleted",
                            request.method, request.path, state.attempt_number,
                        )
                        state.set_result(None)
                    else:
                        unsure = unsure or policy.may_have_acted(exc)
                        state.set_exception(sys.exc_info())  # type: ignore[arg-type]
                else:
                    state.set_result(result)
            elif isinstance(action, DoSleep):
                state.prepare_for_next_attempt()
                await self._sleep(float(action))
            else:
                return action  # type: ignore[no-any-return]
