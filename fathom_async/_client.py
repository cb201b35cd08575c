"""`FathomClient`: configuration, the aiohttp sessions, and the one request layer.

Every call goes through `_request()`: wait for a slot in the endpoint's rate-limit
bucket, send with the auth headers, read a bounded body, tell the limiter what the
server said, map the status to a typed error, and retry what is safe to retry
(each retry waits for its own slot, out of the same `acquire_timeout`). Resources
only describe requests; this module is the only one that talks to aiohttp.

Loops and threads: a client can be made anywhere (at import time too) and used from
any event loop, one after another (two `asyncio.run()` calls) or at once (a loop per
thread). What belongs to a loop (the aiohttp session, the future that `close()`
resolves, the report flights) is kept per running loop in a `_LoopState`, made there
on first use, and closed there: when the loop shuts down, or by `close()` from
whichever loop calls it.

Nothing here sends a request that the limiter did not grant: aiohttp's own resend of
a GET or DELETE on a stale kept-alive connection is off on the sessions we make and
refused on a session you pass (`_SendOnce`); our retry layer sends again instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import logging
import os
import platform
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aiohttp
import attrs
from aiohttp import hdrs
from yarl import URL

from . import _telemetry
from ._calls import CALL, CallRecord
from ._converter import Converter, get_converter
from ._exceptions import (
    AcquireTimeoutError,
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    FathomError,
    ValidationError,
)
from ._logging import logger, redact_headers, setup_logging
from ._loops import PerLoop, close_transport_without_loop
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
from ._retry import RetryLoop, RetryPolicy, Sleep
from ._scheduler import PRIORITIES, Bucket, Permit, Priority, RateLimitBackend, RateLimits
from ._types import NOT_GIVEN, NotGiven
from ._version import __version__

if TYPE_CHECKING:
    from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
    from tenacity import RetryCallState

    from ._raw import RawClient
    from ._reports import ReportCacheBackend, SingleFlight
    from ._resources.aggregations import AggregationsResource
    from ._resources.current_visitors import CurrentVisitorsResource

__all__ = ["DEFAULT_BASE_URL", "FathomClient"]

DEFAULT_BASE_URL = "https://api.usefathom.com/v1"
"""The real API, used unless `base_url=` or `$FATHOM_BASE_URL` says otherwise."""
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


# -- waiting for slots -------------------------------------------------------------------

#: `acquire(priority, timeout)`: wait in the limiter for a slot of one bucket.
Acquire = Callable[[Priority, "float | None"], Awaitable[Permit]]


class SlotTerms(Protocol):
    """How a call waits for rate-limit slots: at which priority, and for how long.

    `_CallTerms` are one call's own; a report request shared by several callers has
    theirs together (`_reports.SingleFlight`). The client tries for a free slot at
    `priority` first and calls `wait()` only when there is none, once per attempt.
    """

    @property
    def priority(self) -> Priority: ...

    async def wait(self, bucket: Bucket, acquire: Acquire) -> Permit: ...


class _CallTerms:
    """One call's terms: its priority, and what is left of its `acquire_timeout`.

    Every attempt's wait for a slot (in a bucket paused by a 429 too) spends the same
    budget, so a call with retries never waits longer for slots in all than
    `acquire_timeout`. Time spent sending, or sleeping between retries, is not slot
    waiting and is not counted (`timeout` and `max_retries` bound those).
    """

    __slots__ = ("left", "priority", "timeout")

    priority: Priority

    def __init__(self, priority: Priority, timeout: float | None) -> None:
        self.priority = priority
        self.timeout = timeout
        self.left = timeout

    async def wait(self, bucket: Bucket, acquire: Acquire) -> Permit:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await acquire(self.priority, self.left)
        except AcquireTimeoutError as exc:
            if self.timeout is None or exc.timeout == self.timeout:
                raise
            # The limiter was given what was left; the caller set the whole budget.
            raise AcquireTimeoutError(
                exc.bucket, self.timeout, next_slot_in=exc.next_slot_in
            ) from None
        finally:
            if self.left is not None:
                self.left = max(0.0, self.left - (loop.time() - started))


# -- sessions and other loop-bound things ----------------------------------------------------

#: How long `close()` waits for another thread's running loop to close its session.
_CLOSE_ELSEWHERE_WAIT = 5.0


class _SendOnce:
    """A per-request aiohttp middleware on a session you pass: the request goes out once.

    aiohttp sends a GET or DELETE again, by itself, when a kept-alive connection turns
    out closed: a send no rate-limit slot was granted for. Your session keeps that
    behaviour for your own requests; for ours, the second pass through the middleware
    chain raises the disconnect instead, and our retry layer sends again through the
    limiter. It is the innermost middleware, so a middleware of yours that resends is
    refused the same way.
    """

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False

    async def __call__(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> ClientResponse:
        if self.sent:
            raise aiohttp.ServerDisconnectedError(
                "the connection closed; not sent again outside the rate limiter"
            )
        self.sent = True
        return await handler(request)


class _LoopState:
    """What one event loop holds for a client.

    The future that `close()` resolves to end the waits parked in this loop, the
    loop's report flights, and its aiohttp session: the one you passed, or ours, made
    when the first request needs it. Only ever used in its own loop; closed there
    (`close()`), or let go of once the loop is closed (`release()`).
    """

    __slots__ = ("_session", "closing", "flights", "loop", "middlewares", "owns_session", "watch")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession | None
    ) -> None:
        self.loop = loop
        self.owns_session = session is None
        self._session = session
        # Yours still run on our requests (aiohttp keeps no public accessor).
        self.middlewares = tuple(getattr(session, "_middlewares", ()))
        self.closing: asyncio.Future[None] = loop.create_future()
        self.flights: SingleFlight | None = None
        self.watch: AsyncGenerator[None, None] | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session for this loop's requests (ours is made now, on first use)."""
        session = self._session
        if session is None:
            session = self._session = aiohttp.ClientSession()
            # aiohttp silently sends a GET or DELETE again when a kept-alive connection
            # turns out closed: a send no rate-limit slot was granted for. Our retry
            # layer does that instead, through the limiter.
            session._retry_connection = False
            self.watch = _watch_shutdown(self)
        return session

    @property
    def made_session(self) -> aiohttp.ClientSession | None:
        """The session, if there is one yet (none is made)."""
        return self._session

    def middlewares_for_request(self) -> Sequence[Any] | None:
        """What to pass as `middlewares=` (None: the session's own, on ours)."""
        if self.owns_session:
            return None
        return (*self.middlewares, _SendOnce())

    async def close(self) -> None:
        """End the waits parked in this loop and close our session (in this loop)."""
        if not self.closing.done():
            self.closing.set_result(None)
        watch, self.watch = self.watch, None
        if self.owns_session and self._session is not None:
            await self._session.close()
        if watch is not None:
            await watch.aclose()

    def release(self) -> None:
        """Let go of the state of a loop that is closed already: nothing can be awaited."""
        self.watch = None  # its loop is closed: dropping it runs nothing there
        if self.owns_session and self._session is not None:
            _close_without_loop(self._session)


async def _until_shutdown(state: _LoopState) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        state.watch = None  # this generator is finishing: close() must not aclose() it
        await state.close()


def _watch_shutdown(state: _LoopState) -> AsyncGenerator[None, None] | None:
    """An async generator that closes `state` when its loop shuts down, or None.

    `asyncio.run()`, `asyncio.Runner` and pytest-asyncio call `shutdown_asyncgens()`
    before closing a loop: the last moment anything can still be awaited in it, so a
    client nobody closed does not leave its sockets open. The generator is run to its
    `yield` right here, which registers it with the running loop.
    """
    if getattr(state.loop, "_asyncgens_shutdown_called", False):
        return None  # too late to register (asyncio would warn); release() covers it
    watch = _until_shutdown(state)
    try:
        watch.asend(None).send(None)
    except StopIteration:
        return watch
    raise RuntimeError("the shutdown watcher did not stop at its yield")  # pragma: no cover


def _close_without_loop(session: aiohttp.ClientSession) -> None:
    """Close a session whose event loop is closed already, with no ResourceWarning.

    Its kept-alive sockets are still open, but their loop can no longer run a close:
    the sockets are closed directly (asyncio's transports, plain or TLS, keep them in
    `_sock`), then the session's own close, which needs nothing awaited on a closed
    loop, marks it closed. Best effort for other loop implementations.
    """
    connector = session.connector
    if connector is None or connector.closed:
        return
    protocols = [proto for conns in getattr(connector, "_conns", {}).values() for proto, _ in conns]
    protocols.extend(getattr(connector, "_acquired", ()))
    for protocol in protocols:
        close_transport_without_loop(getattr(protocol, "transport", None))
    closing = session.close()
    try:
        closing.send(None)  # nothing in it waits once the loop is closed
    except StopIteration:
        return
    closing.close()  # pragma: no cover - a connector that wanted to wait after all


async def _close_in_its_loop(owner: asyncio.AbstractEventLoop, state: _LoopState) -> None:
    """Close a state of another live loop (another thread's) in that loop.

    Waits a little only if that loop is running; an idle loop closes it when it next
    runs, or when it shuts down (the state's watcher).
    """
    here = asyncio.get_running_loop()
    finished = asyncio.Event()

    def done(_: object) -> None:
        with contextlib.suppress(RuntimeError):  # our loop closed meanwhile
            here.call_soon_threadsafe(finished.set)

    def start() -> None:
        owner.create_task(state.close()).add_done_callback(done)

    try:
        owner.call_soon_threadsafe(start)
    except RuntimeError:  # it closed in the meantime
        state.release()
        return
    if owner.is_running():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(finished.wait(), _CLOSE_ELSEWHERE_WAIT)


def _check_session_loop(session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
    owner = getattr(session, "_loop", None)  # `session.loop` is deprecated
    if owner is not None and owner is not loop:
        raise ValidationError(
            "session",
            session,
            "a session made in the event loop that uses the client; this one belongs to"
            " another event loop (pass no session= and the client makes one per loop)",
        )


# -- the default limiter: one per token ---------------------------------------------------


class _DefaultRateLimits:
    """The process-wide `RateLimits` of each (token, base URL): what clients without
    `rate_limits=` share, so two clients of one token do not each spend the budget.

    Keyed by a keyed hash of the token (the token itself is never kept here). An
    entry goes once no client uses it and its windows are empty (nothing of it would
    matter to a new client), checked when another token comes along. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._salt = os.urandom(16)
        self._entries: dict[tuple[str, str], tuple[RateLimits, weakref.WeakSet[_Shared]]] = {}

    def get(self, token: str, base_url: str, user: _Shared) -> RateLimits:
        digest = hashlib.blake2b(token.encode(), key=self._salt, digest_size=20).hexdigest()
        key = (digest, base_url)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._prune()
                entry = self._entries[key] = (RateLimits(), weakref.WeakSet())
            entry[1].add(user)
        return entry[0]

    def _prune(self) -> None:
        for key, (limits, users) in list(self._entries.items()):
            if not users and _idle(limits):
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _idle(limits: RateLimitBackend) -> bool:
    return all(
        bucket.sent_in_window == 0 and not bucket.paused and bucket.server_remaining is None
        for bucket in limits.snapshot().values()
    )


_default_rate_limits = _DefaultRateLimits()


def _forget_default_rate_limits() -> None:
    """Empty the process-wide registry (tests: each starts with fresh budgets)."""
    _default_rate_limits.clear()


# -- what every view of one client shares ---------------------------------------------------


class _Shared:
    """What every view of one client shares: token, limiter, per-loop sessions, closed state."""

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
        self.user_session = session
        self.limiter = limiter
        self.converter = converter
        self.max_response_bytes = max_response_bytes
        self.report_cache = report_cache
        self.closed = False
        self._loops: PerLoop[_LoopState] = PerLoop(self._new_loop_state, _LoopState.release)
        self._urls: dict[str, URL] = {}
        self.sleep: Sleep = asyncio.sleep
        self.clock: Callable[[], float] = time.time
        self.user_agent = (
            f"fathom-async/{__version__} aiohttp/{aiohttp.__version__}"
            f" python/{platform.python_version()}"
        )

    def _new_loop_state(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        if self.closed:
            raise ClientClosedError("the client is closed; create a new FathomClient")
        if self.user_session is not None:
            _check_session_loop(self.user_session, loop)
        return _LoopState(loop, self.user_session)

    def loop_state(self) -> _LoopState:
        """The running loop's state (made now on first use in this loop)."""
        if self.closed:
            raise ClientClosedError("the client is closed; create a new FathomClient")
        return self._loops.get()

    def get_session(self) -> aiohttp.ClientSession:
        """The running loop's session (made now on first use in this loop)."""
        return self.loop_state().session

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The running loop's session if it has one (None outside a loop, or closed)."""
        state = self._loops.peek()
        return None if state is None else state.made_session

    @property
    def in_flight(self) -> SingleFlight:
        """Identical report calls in flight in this loop share one request."""
        state = self.loop_state()
        if state.flights is None:
            from ._reports import SingleFlight

            state.flights = SingleFlight()
        return state.flights

    async def park(self, waiting: Awaitable[T], what: str) -> T:
        """Await a rate-limit slot or a retry's sleep, or ClientClosedError on close().

        These waits can last minutes and touch no socket, so closing the session
        alone would not end them: the wait races the loop's future that close()
        resolves. Cancelling the caller still cancels the wait (and only that).
        """
        try:
            closing = self.loop_state().closing
        except BaseException:
            if asyncio.iscoroutine(waiting):
                waiting.close()  # never started: no "never awaited" warning
            raise
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
        """Close every loop's state: this loop's here, others' in their own loop."""
        self.closed = True
        here = asyncio.get_running_loop()
        for loop, state in self._loops.clear():
            if loop is here:
                await state.close()
            elif loop.is_closed():
                state.release()
            else:
                await _close_in_its_loop(loop, state)

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

    Use it as an async context manager (or call `close()`). Make it anywhere, at
    import time too, and use it from any event loop: one after another, or at once
    from several threads (a loop each). It makes an aiohttp session per event loop
    on first use and closes it when that loop shuts down or on `close()`, unless you
    pass `session=`. Every call is rate limited per bucket (`rate_limits=None` turns
    that off), retried when safe, and typed.

    Args:
        token: the API token; defaults to `$FATHOM_API_TOKEN`. Never shown in any
            repr, log line or error.
        base_url: the API root; defaults to `$FATHOM_BASE_URL`, else the real API
            (plain http only for loopback servers such as the emulator).
        timeout: seconds per attempt, or an `aiohttp.ClientTimeout`.
        max_retries: retries after the first attempt for transient failures.
        rate_limits: a `RateLimits` (or another backend) shared by every client of
            one Fathom user. The default is the process-wide `RateLimits` (Fathom's
            limits) of this token and base URL, shared by every client made without
            `rate_limits=`; None turns limiting off.
        session: your own `aiohttp.ClientSession`; we then never close it, and the
            client works only in the event loop the session belongs to. aiohttp's
            resend of a GET or DELETE on a stale connection is refused for our
            requests (our retries go through the limiter); yours keep it.
        priority: "interactive" (default) or "bulk", for the limiter's queues.
        acquire_timeout: the most seconds one call spends waiting for rate-limit
            slots, over all its attempts (a bucket paused by a 429 counts), before
            `AcquireTimeoutError`; None waits as long as it takes.
        max_retry_wait: the longest `Retry-After` we retry after; a longer one is
            raised as `RateLimitError` straight away. With a limiter, the wait is
            the bucket's pause (within `acquire_timeout`); without one, a sleep.
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
            limiter: RateLimitBackend | None = None  # the token's shared one, below
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
            rate_limited=rate_limits is not None,
        )
        self._retry_loop = self._new_retry_loop()
        self._is_view = False
        if isinstance(rate_limits, NotGiven):  # only once every argument was accepted
            shared = self._shared
            shared.limiter = _default_rate_limits.get(shared.token, shared.base_url, shared)

    @staticmethod
    def _make_options(
        *,
        timeout: object,
        max_retries: object,
        priority: object,
        acquire_timeout: object,
        max_retry_wait: object,
        rate_limited: bool,
    ) -> _Options:
        wait = _check_optional_seconds("max_retry_wait", max_retry_wait)
        if wait is None:
            raise ValidationError("max_retry_wait", max_retry_wait, "a number of seconds >= 0")
        return _Options(
            timeout=_check_timeout(timeout),
            retry=RetryPolicy(
                max_retries=_check_max_retries(max_retries),
                max_retry_wait=wait,
                rate_limited=rate_limited,
            ),
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
            rate_limited=old.retry.rate_limited,
        )
        view._retry_loop = view._new_retry_loop()
        view._is_view = True
        return view

    def _new_retry_loop(self) -> RetryLoop:
        return RetryLoop(
            self._options.retry, sleep=self._sleep_unless_closed, before_sleep=self._log_retry
        )

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
        """Sites: list, get, create, update, delete (`/sites`)."""
        return SitesResource(self)

    @cached_property
    def events(self) -> EventsResource:
        """A site's events (goals): list, get, create, update, delete, currency."""
        return EventsResource(self)

    @cached_property
    def milestones(self) -> MilestonesResource:
        """A site's milestones: dated notes on its graphs."""
        return MilestonesResource(self)

    @cached_property
    def aggregations(self) -> AggregationsResource:
        """Reports: pageviews and event conversions, grouped and filtered.

        Calls take the `"reports"` bucket (10 a minute), are shared with identical
        calls in flight, and may be cached and split (see `query`).
        """
        # Reports, caches and DataFrames load on first use: most imports never need them.
        from ._resources.aggregations import AggregationsResource

        return AggregationsResource(self)

    @cached_property
    def current_visitors(self) -> CurrentVisitorsResource:
        """Who is on a site right now (the `"reports"` bucket, like aggregations)."""
        from ._resources.current_visitors import CurrentVisitorsResource

        return CurrentVisitorsResource(self)

    @cached_property
    def with_raw_response(self) -> RawClient:
        """The same calls, each answering with a `RawResponse`: `.status_code`,
        `.headers` (`X-RateLimit-*` among them), `.content`, and `.parse()` for the
        model. They go through the same limiter and retries, with this client's (or
        view's) settings."""
        from ._raw import RawClient

        return RawClient(self)

    # -- state -------------------------------------------------------------------

    @property
    def rate_limits(self) -> RateLimitBackend | None:
        """The limiter in use (`.snapshot()` shows each bucket), or None when off."""
        return self._shared.limiter

    @property
    def base_url(self) -> str:
        """The API's base URL this client calls."""
        return self._shared.base_url

    @property
    def priority(self) -> Priority:
        """Where this client's calls queue: `"interactive"` first, `"bulk"` after."""
        return self._options.priority

    @property
    def is_closed(self) -> bool:
        """Whether `close()` was called: every call then raises `ClientClosedError`."""
        return self._shared.closed

    def __repr__(self) -> str:
        return (
            f"<FathomClient base_url={self._shared.base_url!r}"
            f" priority={self._options.priority!r}{' closed' if self.is_closed else ''}>"
        )

    async def __aenter__(self) -> FathomClient:
        self._shared.loop_state()  # the session now, and a session= of another loop fails here
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the sessions we made, in every loop; calls in flight end with ClientClosedError.

        Call it from any event loop: this loop's session is closed here, another
        running loop's in that loop, and a closed loop's sockets are let go of
        directly. A view's `close()` does nothing (it owns nothing).
        """
        if not self._is_view:
            await self._shared.close()

    # -- the request layer ---------------------------------------------------------

    @property
    def _converter(self) -> Converter:
        return self._shared.converter

    def _request(
        self, request: ApiRequest, *, slots: SlotTerms | None = None
    ) -> Coroutine[Any, Any, Any]:
        """Send one described request with limiting, retries and error mapping.

        `slots` are the terms on which its attempts wait for rate-limit slots: by
        default this view's priority and `acquire_timeout`, one budget for all.
        It hands back the retry loop's own coroutine, to be awaited at once: one
        coroutine less on every call. A closed client fails here already.
        """
        shared = self._shared
        if shared.closed:
            raise ClientClosedError("the client is closed; create a new FathomClient")
        options = self._options
        if slots is None:
            slots = _CallTerms(options.priority, options.acquire_timeout)
        return self._retry_loop(self._attempt, request, slots)

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

    def _log_retry(self, state: RetryCallState) -> None:
        """tenacity's `before_sleep`: say what failed and when the next attempt goes."""
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        request: ApiRequest = state.args[0]
        meters = _telemetry.meters()
        if meters is not None:
            meters.retried(request.bucket, exc)
        self._warn_retry(request, exc, wait, state.attempt_number + 1)

    def _acquire(
        self, limiter: RateLimitBackend, bucket: Bucket, priority: Priority, timeout: float | None
    ) -> Awaitable[Permit]:
        return self._shared.park(
            limiter.acquire(bucket, priority=priority, timeout=timeout),
            "this call waited for a rate-limit slot",
        )

    async def _wait_for_slot(
        self,
        limiter: RateLimitBackend,
        request: ApiRequest,
        slots: SlotTerms,
        state: _LoopState,
        record: CallRecord | None,
        meters: _telemetry.Instruments | None,
    ) -> Permit:
        """No slot is free now: wait on the call's terms, and tell whoever is watching."""
        bucket, priority = request.bucket, slots.priority
        counted = _telemetry.AVAILABLE  # the waiting gauge counts from before any SDK is set
        if counted:
            _telemetry.waiting(bucket, priority, 1)
        started = state.loop.time()
        try:
            permit = await slots.wait(bucket, functools.partial(self._acquire, limiter, bucket))
        finally:
            waited = state.loop.time() - started
            if counted:
                _telemetry.waiting(bucket, priority, -1)
            if record is not None:
                record.wait += waited
        if meters is not None:
            meters.granted(bucket, slots.priority, waited)
        return permit

    async def _attempt(self, request: ApiRequest, slots: SlotTerms, attempt: int) -> Any:
        shared = self._shared
        state = shared.loop_state()  # before any slot is taken: a wrong loop fails here
        session = state.session
        if session.closed:
            raise ClientClosedError(
                "the event loop is shutting down; the client's session here is closed"
                if state.owns_session
                else "the aiohttp session passed as session= is closed"
            )
        limiter = shared.limiter
        options = self._options
        record = CALL.get()  # None unless a span or a raw response reads it
        meters = _telemetry.meters() if _telemetry.AVAILABLE else None
        permit = None
        if limiter is not None:
            permit = limiter.try_acquire(request.bucket, priority=slots.priority)
            if permit is None:
                permit = await self._wait_for_slot(limiter, request, slots, state, record, meters)
            elif meters is not None:
                meters.granted(request.bucket, slots.priority, 0.0)
        if record is not None:
            record.attempts += 1
        url = shared.url(request.path)
        headers = shared.headers(request)
        logs = logger.isEnabledFor(logging.INFO)  # checked once: DEBUG implies INFO
        if logs:
            if logger.isEnabledFor(logging.DEBUG):
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
                    raise_for_status=False,  # whatever a session you passed says
                    middlewares=state.middlewares_for_request(),
                ) as response:
                    status = response.status
                    response_headers = response.headers
                    body = await _read_body(response, shared.max_response_bytes)
            except FathomError as exc:
                if meters is not None:
                    meters.answered(request.bucket, getattr(exc, "status_code", None))
                raise
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                if meters is not None:
                    meters.answered(request.bucket, None)
                raise self._transport_error(request, exc) from exc
        finally:
            if permit is not None:
                permit.release()
        if meters is not None:
            meters.answered(request.bucket, status)
        if record is not None:
            record.responded(status, response_headers, body)
        if limiter is not None and has_feedback(status, response_headers):
            feedback = server_feedback(status, response_headers, now=shared.clock())
            await limiter.observe(request.bucket, feedback)
        if logs:
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

