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
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from ._exceptions import (
    APIConnectionError,
    APIResponseError,
    RateLimitError,
    ServerError,
)
from ._protocol import ApiRequest

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState

__all__ = ["RetryPolicy"]

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

    def delay(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first)."""
        if isinstance(exc, RateLimitError):
            if self.rate_limited:
                return 0.0  # the limiter's pause is the wait, counted in acquire_timeout
            if exc.retry_after is not None:
                return exc.retry_after
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    def wait_for(self, state: RetryCallState, *, first_attempt: int = 1) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return self.delay(state.attempt_number + first_attempt - 1, exc)

    def retrying(
        self,
        request: ApiRequest,
        *,
        sleep: Sleep,
        before_sleep: Callable[[RetryCallState], None] | None = None,
        first_attempt: int = 1,
    ) -> AsyncRetrying:
        """Tenacity's loop for the attempts from `first_attempt` on.

        The client makes its first attempt without it (tenacity's per-call setup
        costs more than a loopback request) and enters this loop only on a failure
        worth retrying, with `first_attempt=2`.
        """
        from tenacity import AsyncRetrying, stop_after_attempt  # only once a call fails

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 2 - first_attempt),
            wait=lambda state: self.wait_for(state, first_attempt=first_attempt),
            retry=lambda state: (
                state.outcome is not None
                and state.outcome.failed
                and self.should_retry(request, state.outcome.exception())
            ),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
