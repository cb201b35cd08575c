"""`FathomClient`: configuration, the aiohttp session, and the one request layer.

Every call goes through `_request()`: wait for a slot in the endpoint's rate-limit
bucket, send with the auth headers, read a bounded body, tell the limiter what the
server said, map the status to a typed error, and retry what is safe to retry
(each retry waits for its own slot). Resources only describe requests; this module
is the only one that talks to aiohttp.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import platform
import ssl
import time
from collections.abc import Awaitable, Callable
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import attrs
from aiohttp import hdrs
from yarl import URL

from ._converter import Converter, get_converter
from ._exceptions import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    FathomError,
    ValidationError,
)
from ._logging import logger, redact_headers, setup_logging
from ._protocol import (
    ApiRequest,
    decode_json,
    error_from_response,
    has_feedback,
    server_feedback,
)
from ._resources.account import AccountResource, TokenResource
from ._resources.events import EventsResource
from ._resources.milestones import MilestonesResource
from ._resources.sites import SitesResource
from ._retry import RetryPolicy, Sleep
from ._scheduler import PRIORITIES, Priority, RateLimitBackend, RateLimits
from ._types import NOT_GIVEN, NotGiven
from ._version import __version__

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from ._reports import ReportCacheBackend, SingleFlight
    from ._resources.aggregations import AggregationsResource
    from ._resources.current_visitors import CurrentVisitorsResource

__all__ = ["DEFAULT_BASE_URL", "FathomClient"]

DEFAULT_BASE_URL = "https://api.usefathom.com/v1"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
T = TypeVar("T")


def _check_token(token: object) -> str:
    if token is None:
        token = os.environ.get("FATHOM_API_TOKEN")
        if not token:
            raise ValidationError(
                "token", None, "an API token: pass token=... or set FATHOM_API_TOKEN"
            )
    if not isinstance(token, str) or not token.strip():
        # The value itself is never shown: it may be a secret with a typo in it.
        raise ValidationError("token", "<redacted>", "a non-empty string")
    if token != token.strip() or any(ch in token for ch in "\r\n\x00 "):
        raise ValidationError("token", "<redacted>", "a token without spaces or line breaks")
    return token


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: object) -> str:
    if not isinstance(base_url, str) or not base_url:
        raise ValidationError("base_url", base_url, "an https:// URL")
    try:
        url = URL(base_url)
    except (TypeError, ValueError):
        raise ValidationError("base_url", base_url, "an https:// URL") from None
    if not url.is_absolute() or not url.host:
        raise ValidationError("base_url", base_url, "an absolute https:// URL")
    if url.user is not None or url.password is not None or url.query_string or url.fragment:
        raise ValidationError(
            "base_url", base_url, "a URL without credentials, query or fragment"
        )
    if url.scheme == "http" and not _is_loopback(url.host):
        raise ValidationError(
            "base_url", base_url, "https:// (plain http:// only for loopback test servers)"
        )
    if url.scheme not in ("http", "https"):
        raise ValidationError("base_url", base_url, "an https:// URL")
    return str(url).rstrip("/")


def _verifies_tls(session: aiohttp.ClientSession) -> bool:
    """Whether a session's connector checks certificates (False for ssl=False and the like)."""
    setting = getattr(session.connector, "_ssl", True)  # aiohttp keeps no public accessor
    if setting is False:
        return False
    if isinstance(setting, ssl.SSLContext):
        return setting.verify_mode != ssl.CERT_NONE and setting.check_hostname
    return True


def _check_session_tls(session: aiohttp.ClientSession, base_url: str) -> None:
    # A borrowed session must not switch verification off behind our back: the token
    # would go to whoever answers. Loopback test servers are the one exception.
    if not _verifies_tls(session) and not _is_loopback(URL(base_url).host or ""):
        raise ValidationError(
            "session",
            session,
            "a session that verifies TLS certificates (a connector with ssl=False or"
            " verify_ssl=False is accepted only for a loopback base_url)",
        )


def _is_report_cache(value: object) -> bool:
    from ._reports import ReportCacheBackend

    return isinstance(value, ReportCacheBackend)


def _check_timeout(value: object) -> aiohttp.ClientTimeout:
    if isinstance(value, aiohttp.ClientTimeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValidationError("timeout", value, "a positive number of seconds or a ClientTimeout")
    return aiohttp.ClientTimeout(total=float(value), sock_connect=min(float(value), 10.0))


def _check_optional_seconds(field: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValidationError(field, value, "None or a number of seconds >= 0")
    return float(value)


def _check_priority(value: object) -> Priority:
    if value not in PRIORITIES:
        raise ValidationError("priority", value, f"one of {', '.join(PRIORITIES)}")
    return value


def _check_max_retries(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20:
        raise ValidationError("max_retries", value, "an int from 0 to 20")
    return value


@attrs.frozen
class _Options:
    """Per-view settings; `with_options()` copies them with changes."""

    timeout: aiohttp.ClientTimeout
    retry: RetryPolicy
    priority: Priority
    acquire_timeout: float | None


class _Shared:
    """What every view of one client shares: token, session, limiter, closed state."""

    def __init__(
        self,
        *,
        token: str,
        base_url: str,
        session: aiohttp.ClientSession | None,
        limiter: RateLimitBackend | None,
        converter: Converter,
        max_response_bytes: int,
        report_cache: ReportCacheBackend | None = None,
    ) -> None:
        self.token = token
        self.base_url = base_url
        self.session = session
        self.owns_session = session is None
        self.limiter = limiter
        self.converter = converter
        self.max_response_bytes = max_response_bytes
        self.report_cache = report_cache
        self._in_flight: SingleFlight | None = None
        self.closed = False
        # Waits for a slot or a retry's sleep race these futures (one per loop), which
        # close() resolves (see park()).
        self._closing: dict[asyncio.AbstractEventLoop, asyncio.Future[None]] = {}
        self._urls: dict[str, URL] = {}
        self.sleep: Sleep = asyncio.sleep
        self.clock: Callable[[], float] = time.time
        self.user_agent = (
            f"fathom-async/{__version__} aiohttp/{aiohttp.__version__}"
            f" python/{platform.python_version()}"
        )

    def get_session(self) -> aiohttp.ClientSession:
        if self.closed:
            raise ClientClosedError("the client is closed; create a new FathomClient")
        if self.session is None:
            session = aiohttp.ClientSession()
            # aiohttp silently sends a GET or DELETE again when a kept-alive connection
            # turns out closed: a send no rate-limit slot was granted for. Our retry
            # layer does that instead, through the limiter.
            session._retry_connection = False
            self.session = session
        return self.session

    @property
    def in_flight(self) -> SingleFlight:
        """Identical report calls in flight share one request (made on first use)."""
        if self._in_flight is None:
            from ._reports import SingleFlight

            self._in_flight = SingleFlight()
        return self._in_flight

    async def park(self, waiting: Awaitable[T], what: str) -> T:
        """Await a rate-limit slot or a retry's sleep, or ClientClosedError on close().

        These waits can last minutes and touch no socket, so closing the session
        alone would not end them: the wait races a future that close() resolves.
        Cancelling the caller still cancels the wait (and only that).
        """
        loop = asyncio.get_running_loop()
        closing = self._closing.get(loop)
        if closing is None:
            closing = self._closing[loop] = loop.create_future()
        inner = asyncio.ensure_future(waiting)
        try:
            racing: list[asyncio.Future[Any]] = [inner, closing]
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _abandon(inner)
            raise
        if inner.done():
            return inner.result()
        await _abandon(inner)
        raise ClientClosedError(f"the client was closed while {what}")

    async def close(self) -> None:
        self.closed = True
        for closing in self._closing.values():
            if not closing.done() and not closing.get_loop().is_closed():
                closing.set_result(None)
        session, self.session = self.session, None
        if session is not None and self.owns_session:
            await session.close()

    def url(self, path: str) -> URL:
        """The absolute URL of a path (kept: the same paths come back again and again)."""
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= 1024:
                self._urls.clear()
            url = self._urls[path] = URL(self.base_url + path, encoded=True)
        return url

    def headers(self, request: ApiRequest) -> dict[str, str]:
        """The request headers (built once; aiohttp copies what it sends)."""
        if request.json is not None:
            return self._json_headers
        return self._headers

    @cached_property
    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }

    @cached_property
    def _json_headers(self) -> dict[str, str]:
        return {**self._headers, "Content-Type": "application/json"}


class FathomClient:
    """An async client for the Fathom Analytics API.

    Use it as an async context manager (or call `close()`); it owns its aiohttp
    session unless you pass `session=`. Every call is rate limited per bucket
    (`rate_limits=None` turns that off), retried when safe, and typed.

    Args:
        token: the API token; defaults to `$FATHOM_API_TOKEN`. Never shown in any
            repr, log line or error.
        base_url: the API root; defaults to `$FATHOM_BASE_URL`, else the real API
            (plain http only for loopback servers such as the emulator).
        timeout: seconds per attempt, or an `aiohttp.ClientTimeout`.
        max_retries: retries after the first attempt for transient failures.
        rate_limits: a `RateLimits` (or another backend) shared by every client of
            one Fathom user; the default is a fresh one with Fathom's limits.
        session: your own `aiohttp.ClientSession`; we then never close it.
        priority: "interactive" (default) or "bulk", for the limiter's queues.
        acquire_timeout: seconds to wait for a rate-limit slot before
            `AcquireTimeoutError`; None waits as long as it takes.
        max_retry_wait: the longest `Retry-After` we sleep through; a longer one is
            raised as `RateLimitError` straight away.
        strict: fail on unknown response fields (for tests that catch fixture drift).
        max_response_bytes: the largest body we read before giving up.
        report_cache: a `ReportCache()` (in memory) or `RedisReportCache(url)` to
            keep report answers (closed date ranges; see `ReportCacheBackend`);
            None (the default) keeps none. Views share it.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        rate_limits: RateLimitBackend | NotGiven | None = NOT_GIVEN,
        session: aiohttp.ClientSession | None = None,
        priority: Priority = "interactive",
        acquire_timeout: float | None = None,
        max_retry_wait: float = 60.0,
        strict: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        report_cache: ReportCacheBackend | None = None,
    ) -> None:
        setup_logging()
        if isinstance(rate_limits, NotGiven):
            limiter: RateLimitBackend | None = RateLimits()
        elif rate_limits is None or isinstance(rate_limits, RateLimitBackend):
            limiter = rate_limits
        else:
            raise ValidationError("rate_limits", rate_limits, "a RateLimits, a backend or None")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise ValidationError("session", session, "an aiohttp.ClientSession or None")
        if not isinstance(strict, bool):
            raise ValidationError("strict", strict, "True or False")
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1024
        ):
            raise ValidationError("max_response_bytes", max_response_bytes, "an int >= 1024")
        if report_cache is not None and not _is_report_cache(report_cache):
            raise ValidationError("report_cache", report_cache, "a ReportCache, a backend or None")
        self._shared = _Shared(
            token=_check_token(token),
            base_url=_check_base_url(
                base_url if base_url is not None
                else os.environ.get("FATHOM_BASE_URL") or DEFAULT_BASE_URL
            ),
            session=session,
            limiter=limiter,
            converter=get_converter(strict),
            max_response_bytes=max_response_bytes,
            report_cache=report_cache,
        )
        if session is not None:
            _check_session_tls(session, self._shared.base_url)
        self._options = self._make_options(
            timeout=timeout,
            max_retries=max_retries,
            priority=priority,
            acquire_timeout=acquire_timeout,
            max_retry_wait=max_retry_wait,
        )
        self._is_view = False

    @staticmethod
    def _make_options(
        *,
        timeout: object,
        max_retries: object,
        priority: object,
        acquire_timeout: object,
        max_retry_wait: object,
    ) -> _Options:
        wait = _check_optional_seconds("max_retry_wait", max_retry_wait)
        if wait is None:
            raise ValidationError("max_retry_wait", max_retry_wait, "a number of seconds >= 0")
        return _Options(
            timeout=_check_timeout(timeout),
            retry=RetryPolicy(max_retries=_check_max_retries(max_retries), max_retry_wait=wait),
            priority=_check_priority(priority),
            acquire_timeout=_check_optional_seconds("acquire_timeout", acquire_timeout),
        )

    def with_options(
        self,
        *,
        timeout: float | aiohttp.ClientTimeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        priority: Priority | NotGiven = NOT_GIVEN,
        acquire_timeout: float | NotGiven | None = NOT_GIVEN,
        max_retry_wait: float | NotGiven = NOT_GIVEN,
    ) -> FathomClient:
        """A cheap view of this client with other per-call settings.

        It shares the session, the limiter and the token; closing the original closes
        it too, and closing the view does nothing (it owns nothing).
        `fathom.with_options(priority="bulk")` is how an export yields to a dashboard.
        """
        old = self._options
        view = object.__new__(FathomClient)
        view._shared = self._shared
        view._options = self._make_options(
            timeout=old.timeout if isinstance(timeout, NotGiven) else timeout,
            max_retries=(
                old.retry.max_retries if isinstance(max_retries, NotGiven) else max_retries
            ),
            priority=old.priority if isinstance(priority, NotGiven) else priority,
            acquire_timeout=(
                old.acquire_timeout if isinstance(acquire_timeout, NotGiven) else acquire_timeout
            ),
            max_retry_wait=(
                old.retry.max_retry_wait if isinstance(max_retry_wait, NotGiven)
                else max_retry_wait
            ),
        )
        view._is_view = True
        return view

    # -- resources ---------------------------------------------------------------

    @cached_property
    def account(self) -> AccountResource:
        """The account that owns the token."""
        return AccountResource(self)

    @cached_property
    def token(self) -> TokenResource:
        """The token in use (name and abilities; never the secret)."""
        return TokenResource(self)

    @cached_property
    def sites(self) -> SitesResource:
        return SitesResource(self)

    @cached_property
    def events(self) -> EventsResource:
        return EventsResource(self)

    @cached_property
    def milestones(self) -> MilestonesResource:
        return MilestonesResource(self)

    @cached_property
    def aggregations(self) -> AggregationsResource:
        # Reports, caches and DataFrames load on first use: most imports never need them.
        from ._resources.aggregations import AggregationsResource

        return AggregationsResource(self)

    @cached_property
    def current_visitors(self) -> CurrentVisitorsResource:
        from ._resources.current_visitors import CurrentVisitorsResource

        return CurrentVisitorsResource(self)

    # -- state -------------------------------------------------------------------

    @property
    def rate_limits(self) -> RateLimitBackend | None:
        """The limiter in use (`.snapshot()` shows each bucket), or None when off."""
        return self._shared.limiter

    @property
    def base_url(self) -> str:
        return self._shared.base_url

    @property
    def priority(self) -> Priority:
        return self._options.priority

    @property
    def is_closed(self) -> bool:
        return self._shared.closed

    def __repr__(self) -> str:
        return (
            f"<FathomClient base_url={self._shared.base_url!r}"
            f" priority={self._options.priority!r}{' closed' if self.is_closed else ''}>"
        )

    async def __aenter__(self) -> FathomClient:
        self._shared.get_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session (if we made it). Calls in flight end with ClientClosedError."""
        if not self._is_view:
            await self._shared.close()

    # -- the request layer ---------------------------------------------------------

    @property
    def _converter(self) -> Converter:
        return self._shared.converter

    async def _request(self, request: ApiRequest) -> Any:
        """Send one described request with limiting, retries and error mapping."""
        shared = self._shared
        if shared.closed:
            raise ClientClosedError("the client is closed; create a new FathomClient")
        policy = self._options.retry
        try:
            return await self._attempt(request, 1)
        except FathomError as exc:
            if policy.max_retries == 0 or not policy.should_retry(request, exc):
                raise
            wait = policy.delay(1, exc)
            self._warn_retry(request, exc, wait, 2)
        await self._sleep_unless_closed(wait)
        result: Any = None
        retrying = policy.retrying(
            request,
            sleep=self._sleep_unless_closed,
            before_sleep=self._log_retry(request),
            first_attempt=2,
        )
        async for attempt in retrying:
            with attempt:
                result = await self._attempt(request, attempt.retry_state.attempt_number + 1)
        return result

    async def _sleep_unless_closed(self, seconds: float) -> None:
        await self._shared.park(self._shared.sleep(seconds), "a retry was waiting")
        if self._shared.closed:
            raise ClientClosedError("the client was closed while a retry was waiting")

    def _warn_retry(
        self, request: ApiRequest, exc: BaseException | None, wait: float, attempt: int
    ) -> None:
        logger.warning(
            "retrying %s %s in %.2fs after %s (attempt %d of %d)",
            request.method,
            request.path,
            wait,
            _describe_failure(exc),
            attempt,
            self._options.retry.max_retries + 1,
        )

    def _log_retry(self, request: ApiRequest) -> Callable[[RetryCallState], None]:
        def log(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            self._warn_retry(request, exc, wait, state.attempt_number + 2)

        return log

    async def _attempt(self, request: ApiRequest, attempt: int) -> Any:
        shared = self._shared
        session = shared.get_session()
        limiter = shared.limiter
        options = self._options
        permit = None
        if limiter is not None:
            permit = limiter.try_acquire(request.bucket, priority=options.priority)
        if limiter is not None and permit is None:
            permit = await shared.park(
                limiter.acquire(
                    request.bucket, priority=options.priority, timeout=options.acquire_timeout
                ),
                "this call waited for a rate-limit slot",
            )
        url = shared.url(request.path)
        headers = shared.headers(request)
        if logger.isEnabledFor(10):
            logger.debug(
                "%s %s params=%s headers=%s attempt=%d",
                request.method, url, dict(request.query), redact_headers(headers), attempt,
            )
        started = time.monotonic()
        try:
            try:
                async with session.request(
                    request.method,
                    url,
                    params=request.query or None,
                    json=request.json,
                    headers=headers,
                    timeout=options.timeout,
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    response_headers = response.headers
                    body = await _read_body(response, shared.max_response_bytes)
            except FathomError:
                raise
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                raise self._transport_error(request, exc) from exc
        finally:
            if permit is not None:
                permit.release()
        if limiter is not None and has_feedback(status, response_headers):
            feedback = server_feedback(status, response_headers, now=shared.clock())
            await limiter.observe(request.bucket, feedback)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s %s -> %d (%.3fs, attempt %d)",
                request.method, request.path, status, time.monotonic() - started, attempt,
            )
        if 200 <= status < 300:
            if status == 204 or (request.method == "DELETE" and _blank(body)):
                return None
            return decode_json(status, body, response_headers.get("Content-Type"))
        if 300 <= status < 400:
            location = response_headers.get("Location", "?")
            headers_copy = dict(response_headers)
            raise APIStatusError(
                f"unexpected redirect to {location!r}; not followed (the token stays here)",
                status_code=status,
                headers=headers_copy,
            )
        error = error_from_response(status, dict(response_headers), body, now=shared.clock())
        if request.creates and status >= 500:  # it may have been created: say so
            error = type(error)(
                _unknown_outcome(request, error.message), status_code=status, body=error.body,
                errors=error.errors, headers=error.headers,
            )
        raise error

    def _transport_error(self, request: ApiRequest, exc: BaseException) -> FathomError:
        if self._shared.closed:
            return ClientClosedError("the client was closed while this request was in flight")
        where = f"{request.method} {request.path}"
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return APITimeoutError(f"{where}: connecting timed out", outcome_unknown=False)
        if isinstance(exc, aiohttp.ClientConnectorError):
            return APIConnectionError(
                f"{where}: could not connect: {exc.os_error or type(exc).__name__}",
                outcome_unknown=False,
            )
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            return APITimeoutError(_unknown_outcome(request, f"{where}: timed out"),
                                   outcome_unknown=True)
        return APIConnectionError(
            _unknown_outcome(request, f"{where}: connection failed ({type(exc).__name__})"),
            outcome_unknown=True,
        )


async def _abandon(task: asyncio.Future[Any]) -> None:
    """Cancel a wait nobody wants any more; a slot it was granted meanwhile goes back."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if task.cancelled() or task.exception() is not None:
        return
    give_back = getattr(task.result(), "revoke", None)  # a Permit: nothing was sent
    if callable(give_back):
        give_back()


def _blank(body: bytes) -> bool:
    return not body or body.isspace()


def _unknown_outcome(request: ApiRequest, message: str) -> str:
    if request.creates:
        return (
            f"{message}. The request may have reached Fathom, so the object may or may not"
            " exist; it was not sent again. List the objects to check before creating it"
            " again."
        )
    return message


def _describe_failure(exc: BaseException | None) -> str:
    if isinstance(exc, APIStatusError):
        return f"HTTP {exc.status_code}"
    return type(exc).__name__


async def _read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    length = response.content_length
    if length is not None and length > limit:
        raise APIResponseError(
            f"response of {length} bytes is over max_response_bytes={limit}",
            status_code=response.status,
        )
    if length is not None and hdrs.CONTENT_ENCODING not in response.headers:
        # The declared length is within the limit and aiohttp will not read past it;
        # with compression the length says nothing about the decoded size.
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise APIResponseError(
                f"response is over max_response_bytes={limit}; stopped reading",
                status_code=response.status,
            )
        chunks.append(chunk)
    return b"".join(chunks)

