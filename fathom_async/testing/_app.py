"""The aiohttp application: routes, and the pipeline every request goes through.

The pipeline, in order: record the request; unknown routes answer 404/405; the
bearer token is checked (401); the account's rate limits are counted (429 with
`Retry-After` and `X-RateLimit-*`); faults due before the handler strike (latency,
5xx, 429 storms, a reset before anything is committed); the handler runs; faults due
after the commit strike (reset, truncated or non-JSON body). Errors raised as
`ApiError` anywhere become JSON or HTML as the request's `Accept` asks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Awaitable, Callable

from aiohttp import web

from ._errors import ApiError, render_error
from ._faults import AFTER_COMMIT, FaultRule
from ._handlers import ROUTES
from ._ratelimit import Bucket
from ._state import BODY, STATE, TOKEN, AppState
from ._store import RecordedRequest, Token

__all__ = ["make_app"]

_REPORT_ROUTES = frozenset({"/v1/aggregations", "/v1/current_visitors"})
_NON_JSON_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center></body></html>\n"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(state: AppState) -> web.Application:
    app = web.Application(middlewares=[_pipeline])
    app[STATE] = state
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


def _route_of(request: web.Request) -> str | None:
    if request.match_info.http_exception is not None:
        return None
    return (
        request.match_info.route.resource.canonical if request.match_info.route.resource else None
    )


@web.middleware
async def _pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    route = _route_of(request)
    record = RecordedRequest(
        method=request.method,
        path=request.path,
        route=route[3:] if route else None,
        query=dict(request.query),
        headers={k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        time=state.clock(),
    )
    state.store.requests.append(record)
    try:
        response = await _handle(request, handler, state, record, route)
    except ApiError as error:
        response = render_error(error, request)
    if not isinstance(response, _Dropped):
        record.status = response.status
    return response


class _Dropped(web.Response):
    """Returned after the connection was dropped: aiohttp fails to write it (the
    transport is gone) and forgets the connection quietly."""

    def __init__(self) -> None:
        super().__init__(status=499)


async def _handle(
    request: web.Request,
    handler: Handler,
    state: AppState,
    record: RecordedRequest,
    route: str | None,
) -> web.StreamResponse:
    if route is None:
        exception = request.match_info.http_exception
        assert exception is not None
        message = "Not found" if exception.status == 404 else "Method not allowed"
        raise ApiError(exception.status, message)

    token = _authenticate(request, state)
    record.account_id = token.account_id
    request[TOKEN] = token

    bucket: Bucket = "reports" if route in _REPORT_ROUTES else "entity"
    limit_headers: dict[str, str] = {}
    holds_slot = False
    if state.enforce_rate_limits:
        if bucket == "reports":
            if not state.limiter.try_start_report(token.account_id):
                raise ApiError(
                    429, "Too many concurrent aggregations", headers={"Retry-After": "1"}
                )
            holds_slot = True
        decision = state.limiter.hit(token.account_id, bucket)
        limit_headers = decision.headers()
        if not decision.allowed:
            if holds_slot:
                state.limiter.end_report(token.account_id)
            raise ApiError(429, "Too Many Attempts.", headers=limit_headers)
    try:
        return await _serve(request, handler, state, record, route, limit_headers)
    finally:
        if holds_slot:
            state.limiter.end_report(token.account_id)


def _authenticate(request: web.Request, state: AppState) -> Token:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    token = state.store.tokens.get(secret.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        raise ApiError(401, "Unauthenticated: send a valid API token as a Bearer token")
    token.last_used_at = state.store.now()
    return token


async def _serve(
    request: web.Request,
    handler: Handler,
    state: AppState,
    record: RecordedRequest,
    route: str,
    limit_headers: dict[str, str],
) -> web.StreamResponse:
    struck = state.faults.draw(request.method, route[3:], request.path[3:])
    record.faults.extend(rule.fault for rule in struck)
    after: FaultRule | None = None
    for rule in struck:
        if rule.fault == "latency":
            await asyncio.sleep(rule.seconds)
        elif rule.fault in AFTER_COMMIT:
            after = rule
        else:
            return _strike_before(request, rule)

    if request.method in ("POST", "PUT", "PATCH"):
        request[BODY] = record.body = await _read_body(request)
    try:
        response = await handler(request)
    except ApiError as error:
        error.headers = {**limit_headers, **error.headers}
        response = render_error(error, request)
    else:
        response.headers.update(limit_headers)
    if after is None:
        return response
    return await _strike_after(request, response, after)


def _strike_before(request: web.Request, rule: FaultRule) -> web.StreamResponse:
    if rule.fault == "error_500":
        raise ApiError(500, "Server Error")
    if rule.fault == "error_503":
        raise ApiError(503, "Service Unavailable")
    if rule.fault == "rate_limit":
        headers = {} if rule.retry_after is None else {"Retry-After": str(rule.retry_after)}
        raise ApiError(429, "Too Many Attempts.", headers=headers)
    _reset(request)  # reset_before_commit
    return _Dropped()


async def _strike_after(
    request: web.Request, response: web.StreamResponse, rule: FaultRule
) -> web.StreamResponse:
    if rule.fault == "reset_after_commit":
        _reset(request)
        return _Dropped()
    if rule.fault == "non_json_body":
        return web.Response(
            status=response.status, text=_NON_JSON_PAGE, content_type="application/json"
        )
    # truncated_body: promise the whole body, send half, hang up.
    assert isinstance(response, web.Response)
    body = response.body
    assert isinstance(body, bytes)
    stream = web.StreamResponse(status=response.status)
    stream.content_type = response.content_type
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    transport = request.transport
    if transport is not None:
        transport.close()
    return stream


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP reset, sending nothing."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _read_body(request: web.Request) -> dict[str, object]:
    if request.content_type == "application/json":
        text = await request.text()
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            raise ApiError(400, "The request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "The request body must be a JSON object")
        return data
    form = await request.post()
    return {name: value for name, value in form.items() if isinstance(value, str)}
