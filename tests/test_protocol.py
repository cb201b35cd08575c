"""The pure half of the API: paths, bodies, errors and rate-limit headers, no sockets."""

from __future__ import annotations

import email.utils

import pytest

from fathom_async import (
    APIResponseError,
    APIStatusError,
    BadRequestError,
    GoneError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
    ValidationError,
)
from fathom_async._protocol import (
    build_path,
    decode_json,
    encode_id,
    error_from_response,
    join_csv,
    list_items,
    parse_retry_after,
    server_feedback,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("CDBUGS", "CDBUGS"),
        ("../account", "%2E%2E%2Faccount"),
        ("..", "%2E%2E"),
        ("a b", "a%20b"),
        ("a/b?c#d", "a%2Fb%3Fc%23d"),
        ("événement", "%C3%A9v%C3%A9nement"),
        ("line\nbreak", "line%0Abreak"),
        ("signed-up-to-newsletter", "signed-up-to-newsletter"),
    ],
)
def test_ids_are_encoded_as_one_segment(raw: str, encoded: str) -> None:
    assert encode_id("site_id", raw) == encoded
    path = build_path("sites", ("site_id", raw), "events")
    assert path == f"/sites/{encoded}/events"
    assert path.count("/") == 3


@pytest.mark.parametrize("bad", ["", "   ", None, 42, "x" * 256, b"CDBUGS"])
def test_bad_ids_are_refused_with_the_field_name(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        encode_id("event_id", bad)
    assert info.value.field == "event_id"


def test_decode_json_reads_bodies_and_refuses_garbage() -> None:
    assert decode_json(200, b'[{"pageviews": "1"}]', "application/json") == [{"pageviews": "1"}]
    with pytest.raises(APIResponseError, match=r"not valid JSON.*text/html"):
        decode_json(200, b"<html>oops</html>", "text/html; charset=utf-8")
    with pytest.raises(APIResponseError, match="empty response"):
        decode_json(200, b"  ", None)
    with pytest.raises(APIResponseError, match="not valid JSON"):
        decode_json(200, b'{"data": [1, 2', None)


def test_error_with_message_body() -> None:
    err = error_from_response(404, {}, b'{"error": "Site not found"}', now=NOW)
    assert type(err) is NotFoundError
    assert err.message == "Site not found"
    assert err.body == {"error": "Site not found"}
    assert err.status_code == 404


def test_error_with_field_errors() -> None:
    body = b'{"errors": {"name": ["The name field is required."], "sharing": "bad"}}'
    err = error_from_response(400, {}, body, now=NOW)
    assert isinstance(err, BadRequestError)
    assert err.errors == {"name": ["The name field is required."], "sharing": ["bad"]}
    assert "name: The name field is required." in err.message


def test_permission_errors_are_400s_catchable_as_permission_denied() -> None:
    body = b"{\"error\": \"This token doesn't have permission to access this endpoint\"}"
    err = error_from_response(400, {}, body, now=NOW)
    assert isinstance(err, PermissionDeniedError)
    assert isinstance(err, BadRequestError)
    assert err.status_code == 400


def test_html_error_pages_give_their_title() -> None:
    body = b"<!DOCTYPE html><html><head><title>Server Error</title></head><body>x</body></html>"
    err = error_from_response(500, {"Content-Type": "text/html"}, body, now=NOW)
    assert isinstance(err, ServerError)
    assert err.message == "Server Error"
    assert isinstance(err.body, str)


@pytest.mark.parametrize(
    ("status", "body", "cls", "message"),
    [
        (410, b"", GoneError, "gone: this endpoint was retired"),
        (422, b"[1, 2]", UnprocessableEntityError, "unprocessable request"),
        (503, b"upstream connect error", ServerError, "upstream connect error"),
        (418, b"{}", APIStatusError, "HTTP 418"),
        (400, b'{"error": ""}', BadRequestError, "bad request"),
        (500, b"<html><title> </title></html>", ServerError, "HTTP 500"),
    ],
)
def test_error_messages_fall_back_sensibly(
    status: int, body: bytes, cls: type[APIStatusError], message: str
) -> None:
    err = error_from_response(status, {}, body, now=NOW)
    assert type(err) is cls
    assert err.message == message


def test_rate_limit_errors_carry_retry_after() -> None:
    err = error_from_response(429, {"Retry-After": "17"}, b'{"error": "Too Many"}', now=NOW)
    assert isinstance(err, RateLimitError)
    assert err.retry_after == 17.0
    none = error_from_response(429, {}, b"", now=NOW)
    assert isinstance(none, RateLimitError)
    assert none.retry_after is None


def test_retry_after_in_seconds_and_http_dates() -> None:
    assert parse_retry_after({"retry-after": "2.5"}, now=NOW) == 2.5
    assert parse_retry_after({"Retry-After": "-3"}, now=NOW) == 0.0
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=NOW) == pytest.approx(30.0)
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after({"Retry-After": past}, now=NOW) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}, now=NOW) is None
    assert parse_retry_after({"Retry-After": "nan"}, now=NOW) is None
    assert parse_retry_after({}, now=NOW) is None


def test_server_feedback_reads_laravel_headers() -> None:
    feedback = server_feedback(
        429,
        {
            "Retry-After": "40",
            "X-RateLimit-Limit": "10",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(NOW + 40)),
        },
        now=NOW,
    )
    assert feedback.status == 429
    assert feedback.retry_after == 40.0
    assert feedback.limit == 10
    assert feedback.remaining == 0
    assert feedback.reset_after == pytest.approx(40.0)


def test_server_feedback_reset_in_seconds_and_missing_headers() -> None:
    feedback = server_feedback(200, {"x-ratelimit-reset": "12", "X-RateLimit-Remaining": "x"},
                               now=NOW)
    assert feedback.reset_after == 12.0
    assert feedback.remaining is None
    assert server_feedback(200, {}, now=NOW).limit is None


def test_list_items_accepts_wrapper_and_bare_array() -> None:
    assert list_items({"object": "list", "url": "/v1/sites", "has_more": True, "data": [1]}) == (
        [1], True, "/v1/sites"
    )
    assert list_items([1, 2]) == ([1, 2], False, None)
    with pytest.raises(APIResponseError):
        list_items({"data": "nope"})
    with pytest.raises(APIResponseError, match="has_more"):
        list_items({"data": [], "has_more": "yes"})


def test_join_csv_validates_each_name() -> None:
    assert join_csv("aggregates", ["visits", "pageviews"], ("visits", "pageviews")) == (
        "visits,pageviews"
    )
    assert join_csv("aggregates", "visits", ("visits",)) == "visits"
    with pytest.raises(ValidationError, match="one of visits"):
        join_csv("aggregates", ["visits", "conversions"], ("visits",))
    with pytest.raises(ValidationError, match="at least one"):
        join_csv("aggregates", [], ("visits",))
    with pytest.raises(ValidationError, match="once"):
        join_csv("aggregates", ["visits", "visits"], ("visits",))


def test_only_errors_and_rate_limit_headers_carry_feedback() -> None:
    from fathom_async._protocol import has_feedback

    assert not has_feedback(200, {"Content-Type": "application/json"})
    assert has_feedback(200, {"x-ratelimit-remaining": "3"})
    assert has_feedback(429, {})
    assert has_feedback(503, {})
