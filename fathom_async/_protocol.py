"""The API as pure functions: describe a request, read a response. No I/O here.

Resources build `ApiRequest`s; the client sends them. Reading a response turns a
status, headers and body into decoded JSON or the right typed error, and pulls out
what the response says about rate limits. Keeping this pure means every quirk of
the real API (FACTS.md) is tested without a socket.
"""

from __future__ import annotations

import email.utils
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple
from urllib.parse import quote

from multidict import CIMultiDict, CIMultiDictProxy

from . import _json
from ._exceptions import (
    APIResponseError,
    APIStatusError,
    RateLimitError,
    ValidationError,
    status_error_class,
)
from ._scheduler import Bucket, ServerFeedback

__all__ = [
    "ApiRequest",
    "build_path",
    "decode_json",
    "error_from_response",
    "parse_retry_after",
    "server_feedback",
]

Method = Literal["GET", "POST", "DELETE"]
_MAX_ID_LENGTH = 255
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")


class ApiRequest(NamedTuple):
    """One API call, described (a tuple: it is built on every call, and cheaply).

    `path` is already percent-encoded and relative to the base URL. `creates` marks a
    POST that makes a new object: it is never replayed once it may have reached the
    server. `query` keeps the caller's order so logs and tests read predictably.
    """

    method: Method
    path: str
    bucket: Bucket
    query: tuple[tuple[str, str], ...] = ()
    json: Mapping[str, Any] | None = None
    creates: bool = False


def encode_id(field: str, value: object) -> str:
    """Percent-encode one path segment, so an id can never reach another endpoint.

    Slashes, dots, spaces and anything non-ASCII are encoded (dots too: `..` must not
    be read as "go up"). An id must be a non-blank string.
    """
    if type(value) is str and _PLAIN_ID.fullmatch(value):
        return value  # the common case: nothing to encode
    if not isinstance(value, str):
        raise ValidationError(field, value, "a string id")
    if not value.strip():
        raise ValidationError(field, value, "a non-empty id")
    if len(value) > _MAX_ID_LENGTH:
        raise ValidationError(field, value, f"an id of at most {_MAX_ID_LENGTH} characters")
    return quote(value, safe="").replace(".", "%2E")


def build_path(*segments: tuple[str, object] | str) -> str:
    """`build_path("sites", ("site_id", sid), "events")` -> "/sites/CDBUGS/events"."""
    try:
        return _cached_path(segments)
    except TypeError:  # an unhashable id: the uncached path names the field
        return _build_path(segments)


def _build_path(segments: tuple[tuple[str, object] | str, ...]) -> str:
    parts = []
    for segment in segments:
        if isinstance(segment, str):
            parts.append(segment)
        else:
            parts.append(encode_id(*segment))
    return "/" + "/".join(parts)


# Dashboards ask for the same few sites over and over; a path is checked once.
_cached_path = functools.lru_cache(maxsize=1024)(_build_path)


def decode_json(status: int, body: bytes, content_type: str | None) -> Any:
    """Decode a successful body; a body we cannot read is an APIResponseError."""
    if not body or body.isspace():
        raise APIResponseError(f"empty response body (status {status})", status_code=status)
    try:
        return _json.loads(body)
    except ValueError:
        kind = (content_type or "unknown").split(";")[0]
        raise APIResponseError(
            f"response is not valid JSON (status {status}, content type {kind}):"
            f" {_snippet(body)!r}",
            status_code=status,
            body=_text(body),
        ) from None


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def _snippet(body: bytes, limit: int = 200) -> str:
    text = " ".join(_text(body).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _error_message(status: int, body: bytes) -> tuple[str, dict[str, list[str]], object]:
    """The API's message, its per-field errors and the decoded body of an error."""
    try:
        decoded: object = _json.loads(body) if body.strip() else None
    except ValueError:
        decoded = None
    if isinstance(decoded, Mapping):
        errors: dict[str, list[str]] = {}
        raw_errors = decoded.get("errors")
        if isinstance(raw_errors, Mapping):
            for key, messages in raw_errors.items():
                if isinstance(messages, (list, tuple)):
                    errors[str(key)] = [str(m) for m in messages]
                else:
                    errors[str(key)] = [str(messages)]
        message = decoded.get("error") or decoded.get("message")
        if not isinstance(message, str) or not message:
            message = "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()) or None
        return message or _default_message(status), errors, decoded
    if decoded is not None:
        return _default_message(status), {}, decoded
    if not body.strip():
        return _default_message(status), {}, None
    title = _TITLE.search(body)
    if title:  # an HTML error page (Accept ignored, or a proxy in the way)
        text = " ".join(_text(title.group(1)).split())
        return text or _default_message(status), {}, _text(body)
    return _snippet(body) or _default_message(status), {}, _text(body)


def _default_message(status: int) -> str:
    return {
        400: "bad request",
        401: "unauthenticated: the API token is missing, wrong or revoked",
        403: "forbidden",
        404: "not found (or not visible to this token)",
        410: "gone: this endpoint was retired",
        422: "unprocessable request",
        429: "rate limit exceeded",
    }.get(status, f"HTTP {status}")


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float
) -> APIStatusError:
    """The typed error for a 4xx/5xx response (`now` is the Unix time, for HTTP-dates)."""
    message, errors, decoded = _error_message(status, body)
    if status == 429:
        return RateLimitError(
            message,
            body=decoded,
            errors=errors,
            headers=headers,
            retry_after=parse_retry_after(headers, now=now),
        )
    cls = status_error_class(status, message)
    return cls(message, status_code=status, body=decoded, errors=errors, headers=headers)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not isinstance(headers, (CIMultiDict, CIMultiDictProxy)):
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date."""
    text = _header(headers, "Retry-After")
    if text is None:
        return None
    seconds = _number(text)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - now, 0.0)


# X-RateLimit-Reset is either seconds from now or a Unix time; anything past this is
# a Unix time (about 2001-09-09).
_EPOCH_THRESHOLD = 1_000_000_000


def has_feedback(status: int, headers: Mapping[str, str]) -> bool:
    """Whether a response says anything about rate limits (most successes do not).

    Errors may carry `Retry-After` or pause a bucket; a success only through
    `X-RateLimit-Remaining` (which comes with its limit and reset when sent).
    """
    return status >= 400 or _header(headers, "X-RateLimit-Remaining") is not None


def server_feedback(status: int, headers: Mapping[str, str], *, now: float) -> ServerFeedback:
    """What a response tells the limiter: Retry-After and the X-RateLimit-* headers."""
    limit = _number(_header(headers, "X-RateLimit-Limit"))
    remaining = _number(_header(headers, "X-RateLimit-Remaining"))
    reset = _number(_header(headers, "X-RateLimit-Reset"))
    if reset is not None and reset > _EPOCH_THRESHOLD:
        reset = max(reset - now, 0.0)
    return ServerFeedback(
        status=status,
        retry_after=parse_retry_after(headers, now=now),
        limit=int(limit) if limit is not None else None,
        remaining=max(int(remaining), 0) if remaining is not None else None,
        reset_after=reset,
    )


def list_items(data: Any) -> tuple[list[Any], bool, str | None]:
    """Items, has_more and url of a list response (wrapper or, leniently, a bare array)."""
    if isinstance(data, list):
        return data, False, None
    if isinstance(data, Mapping) and isinstance(data.get("data"), list):
        has_more = data.get("has_more", False)
        if not isinstance(has_more, bool):
            raise APIResponseError(f"has_more is not a boolean: {has_more!r}", body=data)
        url = data.get("url")
        return data["data"], has_more, url if isinstance(url, str) else None
    raise APIResponseError("expected a list response", body=data)


def join_csv(field: str, values: Sequence[str] | str, allowed: Sequence[str]) -> str:
    """Validate a list of names against `allowed` and join them the API's way."""
    items = [values] if isinstance(values, str) else list(values)
    if not items:
        raise ValidationError(field, values, f"at least one of {', '.join(allowed)}")
    seen: set[str] = set()
    for item in items:
        if item not in allowed:
            raise ValidationError(field, item, f"one of {', '.join(allowed)}")
        if item in seen:
            raise ValidationError(field, item, "each name once")
        seen.add(item)
    return ",".join(items)
