"""Which failures are retried and how long we wait (the policy, without HTTP)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from tenacity import RetryCallState

from fathom_async import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from fathom_async._protocol import ApiRequest
from fathom_async._retry import RetryLoop, RetryPolicy

READ = ApiRequest("GET", "/account", "entity")
UPDATE = ApiRequest("POST", "/sites/A", "entity", json={"name": "x"})
CREATE = ApiRequest("POST", "/sites", "entity", json={"name": "x"}, creates=True)
policy = RetryPolicy(max_retries=3, max_retry_wait=60)


@pytest.mark.parametrize(
    ("exc", "read", "update", "create"),
    [
        (ServerError("x", status_code=503), True, True, False),
        (ServerError("x", status_code=501), False, False, False),
        (RateLimitError("x", retry_after=5), True, True, True),
        (RateLimitError("x", retry_after=None), True, True, True),
        (RateLimitError("x", retry_after=61), False, False, False),
        (APIConnectionError("x", outcome_unknown=False), True, True, True),
        (APIConnectionError("x", outcome_unknown=True), True, True, False),
        (APITimeoutError("x", outcome_unknown=True), True, True, False),
        (APIResponseError("garbled"), True, False, False),
        (BadRequestError("x", status_code=400), False, False, False),
        (ValueError("not ours"), False, False, False),
    ],
)
def test_what_is_retried(exc: BaseException, read: bool, update: bool, create: bool) -> None:
    assert policy.should_retry(READ, exc) is read
    assert policy.should_retry(UPDATE, exc) is update
    assert policy.should_retry(CREATE, exc) is create


def _state(attempt: int, exc: BaseException) -> Any:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def test_backoff_is_full_jitter_and_capped() -> None:
    for attempt in range(1, 10):
        ceiling = min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1))
        waits = [policy.wait_for(_state(attempt, ServerError("x", status_code=503)))
                 for _ in range(200)]
        assert all(0 <= wait <= ceiling for wait in waits)
        assert max(waits) > ceiling / 2  # it does spread out


def test_retry_after_is_honoured_exactly() -> None:
    assert policy.wait_for(_state(1, RateLimitError("x", retry_after=12.5))) == 12.5


def test_with_a_limiter_a_429_is_not_slept_here() -> None:
    # The limiter paused the bucket on the 429 (observe); the next attempt waits for
    # its slot there, within the call's acquire_timeout, not in a sleep on top.
    limited = RetryPolicy(max_retries=3, max_retry_wait=60, rate_limited=True)
    assert limited.delay(1, RateLimitError("x", retry_after=12.5)) == 0.0
    assert limited.delay(2, RateLimitError("x", retry_after=None)) == 0.0
    assert limited.wait_for(_state(1, RateLimitError("x", retry_after=30))) == 0.0


def test_with_a_limiter_other_failures_still_back_off() -> None:
    limited = RetryPolicy(max_retries=3, rate_limited=True, backoff_base=4, backoff_cap=4)
    waits = [limited.delay(1, ServerError("x", status_code=503)) for _ in range(200)]
    assert all(0 <= wait <= 4 for wait in waits)
    assert max(waits) > 2


def test_a_retry_after_over_max_retry_wait_is_never_retried_with_or_without_a_limiter() -> None:
    for rate_limited in (False, True):
        strict = RetryPolicy(max_retry_wait=60, rate_limited=rate_limited)
        assert not strict.should_retry(READ, RateLimitError("x", retry_after=61))
        assert strict.should_retry(READ, RateLimitError("x", retry_after=60))


# -- the one retry path: tenacity steps every attempt after a failure -----------------


class _Script:
    """An attempt that fails with the given errors in turn, then answers "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.numbers: list[int] = []
        self.slept: list[float] = []
        self.logged: list[int] = []

    async def attempt(self, request: ApiRequest, extra: str, number: int) -> str:
        assert extra == "terms"
        self.numbers.append(number)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def loop(self, policy: RetryPolicy) -> RetryLoop:
        def log(state: RetryCallState) -> None:
            assert state.args[0] is READ
            self.logged.append(state.attempt_number)

        return RetryLoop(policy, sleep=self.sleep, before_sleep=log)


async def test_a_first_success_never_enters_tenacity() -> None:
    script = _Script()
    loop = script.loop(policy)
    assert await loop(script.attempt, READ, "terms") == "ok"
    assert script.numbers == [1]
    assert loop._engine is None  # nothing to decide: no engine was even built


async def test_tenacity_numbers_waits_and_stops_the_attempts() -> None:
    busy = [ServerError("busy", status_code=503) for _ in range(3)]
    script = _Script(*busy, RateLimitError("slow down", retry_after=7))
    loop = script.loop(RetryPolicy(max_retries=4, backoff_base=1.0, backoff_cap=2.0))
    assert await loop(script.attempt, READ, "terms") == "ok"
    assert script.numbers == [1, 2, 3, 4, 5]
    assert script.logged == [1, 2, 3, 4]  # before each sleep, the attempt that failed
    assert all(0 <= wait <= limit for wait, limit in zip(script.slept, [1, 2, 2], strict=False))
    assert script.slept[3] == 7  # Retry-After, exactly

    script = _Script(*(ServerError("busy", status_code=503) for _ in range(5)))
    with pytest.raises(ServerError, match="busy"):
        await script.loop(RetryPolicy(max_retries=2))(script.attempt, READ, "terms")
    assert script.numbers == [1, 2, 3]  # max_retries=2: three attempts, then the error


async def test_what_is_not_retried_is_raised_at_once() -> None:
    for error in (BadRequestError("no", status_code=400), RateLimitError("x", retry_after=61)):
        script = _Script(error)
        with pytest.raises(type(error)):
            await script.loop(policy)(script.attempt, READ, "terms")
        assert script.numbers == [1]
        assert script.slept == []
    script = _Script(ServerError("busy", status_code=503))
    with pytest.raises(ServerError):
        await script.loop(RetryPolicy(max_retries=0))(script.attempt, READ, "terms")
    assert script.numbers == [1]


async def test_cancellation_is_never_retried() -> None:
    script = _Script(ServerError("busy", status_code=503), asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await script.loop(policy)(script.attempt, READ, "terms")
    assert script.numbers == [1, 2]


async def test_overlapping_calls_share_one_loop() -> None:
    """One loop per client view serves every concurrent call; each keeps its own count."""
    gate = asyncio.Event()
    numbers: dict[str, list[int]] = {"a": [], "b": []}

    async def attempt(request: ApiRequest, name: str, number: int) -> str:
        numbers[name].append(number)
        if number < (3 if name == "a" else 2):
            await gate.wait()
            raise ServerError("busy", status_code=503)
        return name

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(0)

    loop = RetryLoop(policy, sleep=sleep)
    calls = asyncio.gather(loop(attempt, READ, "a"), loop(attempt, READ, "b"))
    await asyncio.sleep(0)
    gate.set()
    assert list(await calls) == ["a", "b"]
    assert numbers == {"a": [1, 2, 3], "b": [1, 2]}


DELETE = ApiRequest("DELETE", "/sites/A", "entity")
LOST = APIConnectionError("reset", outcome_unknown=True)
GONE = NotFoundError("not found", status_code=404)


@pytest.mark.parametrize(
    ("exc", "acted"),
    [
        (APIConnectionError("x", outcome_unknown=True), True),
        (APITimeoutError("x", outcome_unknown=True), True),
        (ServerError("x", status_code=503), True),
        (APIConnectionError("x", outcome_unknown=False), False),
        (RateLimitError("x", retry_after=5), False),
        (GONE, False),
        (ValueError("not ours"), False),
    ],
)
def test_what_may_have_acted_on_the_server(exc: BaseException, acted: bool) -> None:
    assert policy.may_have_acted(exc) is acted


def test_only_a_delete_404_after_an_unsure_attempt_is_done_before() -> None:
    assert policy.done_before(DELETE, GONE, unsure=True)
    assert not policy.done_before(DELETE, GONE, unsure=False)
    assert not policy.done_before(READ, GONE, unsure=True)
    assert not policy.done_before(UPDATE, GONE, unsure=True)
    assert not policy.done_before(DELETE, ServerError("x", status_code=503), unsure=True)


async def _delete_with(*errors: BaseException) -> tuple[Any, list[int]]:
    numbers: list[int] = []
    script = list(errors)

    async def attempt(request: ApiRequest, extra: str, number: int) -> str:
        numbers.append(number)
        if script:
            raise script.pop(0)
        return "deleted"

    async def sleep(seconds: float) -> None:
        return None

    return await RetryLoop(policy, sleep=sleep)(attempt, DELETE, "terms"), numbers


@pytest.mark.parametrize(
    "before",
    [(LOST,), (ServerError("busy", status_code=503),), (LOST, RateLimitError("x", retry_after=1))],
)
async def test_a_delete_retried_after_its_answer_was_lost_finds_it_gone_and_succeeds(
    before: tuple[BaseException, ...], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="fathom_async"):
        result, numbers = await _delete_with(*before, GONE)
    assert result is None  # a success with no body, as a 204
    assert numbers == list(range(1, len(before) + 2))
    [record] = [r for r in caplog.records if "found it gone" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert "DELETE /sites/A" in record.getMessage()


@pytest.mark.parametrize(
    "before",
    [(), (RateLimitError("x", retry_after=1),), (APIConnectionError("x", outcome_unknown=False),)],
)
async def test_a_delete_404_stays_not_found_unless_an_earlier_attempt_may_have_acted(
    before: tuple[BaseException, ...],
) -> None:
    with pytest.raises(NotFoundError):
        await _delete_with(*before, GONE)


async def test_a_read_404_after_a_lost_answer_stays_not_found() -> None:
    async def attempt(request: ApiRequest, number: int) -> str:
        raise LOST if number == 1 else GONE

    async def sleep(seconds: float) -> None:
        return None

    with pytest.raises(NotFoundError):
        await RetryLoop(policy, sleep=sleep)(attempt, READ)
