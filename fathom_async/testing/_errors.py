"""API errors as the emulator raises them, and how they are rendered.

Handlers raise `ApiError`; the app renders it as `{"error": message}` or
`{"errors": {field: [message]}}` when the request accepts JSON, and as an HTML page
otherwise (what the real API does for clients that forget `Accept: application/json`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping

from aiohttp import web

__all__ = ["PERMISSION_MESSAGE", "ApiError", "render_error", "wants_json"]

PERMISSION_MESSAGE = "This token doesn't have permission to access this endpoint"


class ApiError(Exception):
    """An error answer: a status with one message or per-field messages."""

    def __init__(
        self,
        status: int,
        message: str = "",
        *,
        errors: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})
        super().__init__(f"{status}: {message or self.errors}")

    @classmethod
    def invalid(cls, field: str, message: str) -> ApiError:
        """A 400 validation failure on one field."""
        return cls(400, errors={field: [message]})

    def body(self) -> dict[str, object]:
        if self.errors:
            return {"errors": self.errors}
        return {"error": self.message}


def wants_json(request: web.BaseRequest) -> bool:
    """True when the client asked for JSON (Laravel's `expectsJson()`, roughly)."""
    return "json" in request.headers.get("Accept", "").lower()


def render_error(error: ApiError, request: web.BaseRequest) -> web.Response:
    if wants_json(request):
        return web.Response(
            status=error.status,
            text=json.dumps(error.body()),
            content_type="application/json",
            headers=error.headers,
        )
    text = error.message or "; ".join(
        f"{field}: {' '.join(messages)}" for field, messages in error.errors.items()
    )
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>Fathom Analytics - {error.status}</title></head>"
        f"<body><h1>{error.status}</h1><p>{html.escape(text)}</p></body></html>\n"
    )
    return web.Response(
        status=error.status, text=page, content_type="text/html", headers=error.headers
    )
