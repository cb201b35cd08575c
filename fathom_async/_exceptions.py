"""Every error the SDK raises, in one small tree.

    FathomError
    ├── ValidationError            bad input, raised before any request (also ValueError)
    ├── ClientClosedError          the client was used after close (also RuntimeError)
    ├── AcquireTimeoutError        no rate-limit slot within acquire_timeout (also TimeoutError)
    ├── RateLimiterUnavailableError  the Redis budget did not answer, or was closed (_redis)
    ├── PlanMismatchError          an export or load with other arguments (export._manifest)
    ├── APIResponseError           a response we could not understand (truncated, not JSON, ...)
    ├── APIConnectionError         the request never produced a response
    │   └── APITimeoutError        ... because it timed out
    └── APIStatusError             the API answered with a 4xx/5xx status
        ├── BadRequestError             400
        ├── AuthenticationError         401
        ├── PermissionDeniedError       403 (and 400s that say the token lacks permission)
        ├── NotFoundError               404
        ├── GoneError                   410 (retired endpoints)
        ├── UnprocessableEntityError    422
        ├── RateLimitError              429
        └── ServerError                 5xx

The two marked with a module are defined there, beside what raises them; the rest
are here. The guide's "Errors and retries" page has the same tree, with what to do
about each. Keep the two in step.

No message built here ever contains the API token: messages are made from the API's
own error text, status codes and the names of fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AcquireTimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "FathomError",
    "GoneError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "UnprocessableEntityError",
    "ValidationError",
]


class FathomError(Exception):
    """Base class: `except FathomError` catches everything this SDK raises on purpose."""


class ValidationError(FathomError, ValueError):
    """An argument is invalid; raised before any request is sent.

    `field` names the argument (or `argument.key`), `value` is what was given and
    `allowed` says what would have been accepted.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}={shown} is invalid: {allowed}")


class ClientClosedError(FathomError, RuntimeError):
    """The client was closed; open a new one (or use `async with`)."""


class AcquireTimeoutError(FathomError, TimeoutError):
    """No rate-limit slot within `acquire_timeout`; nothing was sent.

    `next_slot_in` is how many seconds from the moment of the error until the
    earliest slot the limiter could grant (None when it cannot tell). When that slot
    lies beyond the deadline, the error comes at once rather than after the wait,
    so a web handler can answer "try again in N s" straight away.
    """

    def __init__(
        self, bucket: str, timeout: float, *, next_slot_in: float | None = None
    ) -> None:
        self.bucket = bucket
        self.timeout = timeout
        self.next_slot_in = next_slot_in
        when = "" if next_slot_in is None else f"; the next slot is in {next_slot_in:.3g}s"
        super().__init__(
            f"no slot in the {bucket!r} rate-limit bucket within acquire_timeout={timeout:g}s"
            f"{when}; the request was not sent"
        )


class APIResponseError(FathomError):
    """The API answered, but the body could not be understood (not JSON, wrong shape)."""

    def __init__(self, message: str, *, status_code: int | None = None, body: object = None):
        self.status_code = status_code
        self.body = body
        super().__init__(message)


class APIConnectionError(FathomError):
    """The request did not produce a response (DNS, refused, reset, TLS, ...).

    `outcome_unknown` is True when the request may have reached the server, so a write
    may or may not have happened; the message says how to check.
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        self.outcome_unknown = outcome_unknown
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """The request timed out (connect or read)."""


class APIStatusError(FathomError):
    """The API answered with an error status.

    `message` is the API's own text (`{"error": ...}`), `errors` the per-field messages
    of a validation failure (`{"errors": {field: [...]}}`), `body` the decoded body (or
    the raw text when it was not JSON).
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: object = None,
        errors: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.body = body
        self.errors: dict[str, list[str]] = dict(errors or {})
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(f"{status_code}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_status_error,
            (type(self), self.message, self.status_code, self.body, self.errors, self.headers),
        )


def _rebuild_status_error(
    cls: type[APIStatusError],
    message: str,
    status_code: int,
    body: object,
    errors: dict[str, list[str]],
    headers: dict[str, str],
) -> APIStatusError:
    return cls(message, status_code=status_code, body=body, errors=errors, headers=headers)


class BadRequestError(APIStatusError):
    """400: invalid parameters, a lapsed subscription, or a missing permission."""


class AuthenticationError(APIStatusError):
    """401: the token is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """The token may not do this (403, or a 400 whose message says so)."""


class NotFoundError(APIStatusError):
    """404: the object does not exist, or the token cannot see it."""


class GoneError(APIStatusError):
    """410: the endpoint was retired by Fathom (site wipe, event wipe)."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was understood but cannot be answered (incompatible groupings)."""


class RateLimitError(APIStatusError):
    """429: a rate or concurrency limit was hit. `retry_after` is in seconds, or None."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        body: object = None,
        errors: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message, status_code=status_code, body=body, errors=errors, headers=headers
        )
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_rate_limit_error,
            (self.message, self.status_code, self.body, self.errors, self.headers,
             self.retry_after),
        )


def _rebuild_rate_limit_error(
    message: str,
    status_code: int,
    body: object,
    errors: dict[str, list[str]],
    headers: dict[str, str],
    retry_after: float | None,
) -> RateLimitError:
    return RateLimitError(
        message,
        status_code=status_code,
        body=body,
        errors=errors,
        headers=headers,
        retry_after=retry_after,
    )


class ServerError(APIStatusError):
    """5xx: the API failed; usually transient, and retried before you see it."""


class PermissionBadRequestError(BadRequestError, PermissionDeniedError):
    """A 400 whose message says the token lacks permission: catchable as either."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    410: GoneError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int, message: str) -> type[APIStatusError]:
    """The exception class for an error status (the one place that maps them)."""
    if status_code == 400 and "permission" in message.lower():
        return PermissionBadRequestError
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, APIStatusError)
