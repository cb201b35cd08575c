from __future__ import annotations

import pickle

import pytest

from fathom_async import (
    AcquireTimeoutError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    FathomError,
    GoneError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
    ValidationError,
)
from fathom_async._exceptions import status_error_class


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (410, GoneError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
        (418, APIStatusError),
    ],
)
def test_each_status_maps_to_its_class(status: int, cls: type[APIStatusError]) -> None:
    assert status_error_class(status, "boom") is cls


def test_a_400_about_permission_is_both_bad_request_and_permission_denied() -> None:
    cls = status_error_class(400, "This token doesn't have permission to access this endpoint")
    assert issubclass(cls, BadRequestError)
    assert issubclass(cls, PermissionDeniedError)


def test_every_error_is_a_fathom_error() -> None:
    for cls in (
        ValidationError, ClientClosedError, AcquireTimeoutError, APIConnectionError,
        APITimeoutError, APIStatusError, RateLimitError,
    ):
        assert issubclass(cls, FathomError)
    assert issubclass(ValidationError, ValueError)
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(AcquireTimeoutError, TimeoutError)


def test_validation_error_names_field_value_and_what_is_allowed() -> None:
    err = ValidationError("limit", 1000, "an int from 1 to 100")
    assert (err.field, err.value, err.allowed) == ("limit", 1000, "an int from 1 to 100")
    assert str(err) == "limit=1000 is invalid: an int from 1 to 100"


def test_validation_error_shortens_long_values() -> None:
    err = ValidationError("name", "x" * 500, "at most 255 characters")
    assert len(str(err)) < 150


def test_status_errors_survive_pickling() -> None:
    err = NotFoundError("gone", status_code=404, body={"error": "gone"}, errors={"a": ["b"]})
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is NotFoundError
    assert (copy.status_code, copy.message, copy.errors, copy.body) == (
        404, "gone", {"a": ["b"]}, {"error": "gone"}
    )
    limited = pickle.loads(pickle.dumps(RateLimitError("slow down", retry_after=3.0)))
    assert limited.retry_after == 3.0
    assert limited.status_code == 429


def test_acquire_timeout_says_nothing_was_sent() -> None:
    err = AcquireTimeoutError("reports", 2.5)
    assert "reports" in str(err)
    assert "2.5" in str(err)
    assert "not sent" in str(err)
