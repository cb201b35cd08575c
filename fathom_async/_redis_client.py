"""The one place where the package makes, hands out and closes Redis clients.

A `redis.asyncio.Redis` belongs to the event loop it first talks in: its pooled
connections are that loop's transports. Users make our Redis-backed objects at import
time and use them from many loops (successive `asyncio.run()` calls, a session-scoped
test fixture, several threads each with its own loop), so `RedisConnector` keeps one
client per running loop, made on first use, and never lets one loop use another's.

Every client made here has a connect and a socket timeout and no retries inside
redis-py: a failure must reach the caller, and a Lua script retried after a lost reply
would run twice. A client the user passes in is used as is and never closed.

This module must never put a Redis URL into a repr or an error message (it may hold a
password), and never block one loop while it waits for another.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import urllib.parse
import weakref
from types import ModuleType
from typing import TYPE_CHECKING

from ._exceptions import ValidationError
from ._logging import logger
from ._loops import PerLoop, close_transport_without_loop

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisConnector"]

_SCHEMES = ("redis", "rediss", "unix")


class RedisConnector:
    """Redis clients for every event loop, from one URL (or the user's one client).

    `url_or_client` is a `redis://`, `rediss://` or `unix://` URL, or a
    `redis.asyncio.Redis` you made. From a URL, `client()` makes one client per
    running event loop on first use, with `connect_timeout` and `socket_timeout`
    (seconds) and no retries inside redis-py; `aclose()` closes them all, and the
    connector can be used again afterwards. A client of a loop that has since closed
    is dropped and its sockets closed when the next new loop asks, at `aclose()`, or
    when the connector itself is garbage collected.

    A client you pass in is returned as is and never closed, and the timeouts do not
    apply to it. Like any redis-py client it belongs to the loop it is first used in:
    use it from that loop only, and close it yourself.

    Thread-safe: several threads, each running its own loop, may share a connector.
    """

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        connect_timeout: float = 2.0,
        socket_timeout: float = 5.0,
    ) -> None:
        url: str | None = None
        self._given: Redis | None = None  # the user's client: used as is, never closed
        if isinstance(url_or_client, str):
            _check_url(url_or_client)
            url = url_or_client
        elif callable(getattr(url_or_client, "execute_command", None)):
            self._given = url_or_client
        else:
            raise ValidationError(
                "url_or_client", url_or_client, "a Redis URL or a redis.asyncio.Redis"
            )
        timeouts = (("connect_timeout", connect_timeout), ("socket_timeout", socket_timeout))
        for name, value in timeouts:
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value < math.inf
            ):
                raise ValidationError(name, value, "a positive, finite number of seconds")
        self.connect_timeout = float(connect_timeout)
        self.socket_timeout = float(socket_timeout)
        self._clients: _Clients | None = None
        if url is not None:
            self._clients = _Clients(url, self.connect_timeout, self.socket_timeout)
            # Once the connector is gone nothing else can close what loops that have
            # ended left behind; this runs before their sockets' own finalisers warn.
            weakref.finalize(self, self._clients.release)

    @property
    def owns_clients(self) -> bool:
        """True when the clients are made (and closed) here, from a URL."""
        return self._clients is not None

    def __repr__(self) -> str:
        if self._clients is None:
            return "RedisConnector(<client>)"
        return f"RedisConnector({_shown(self._clients.url)!r}, clients={self._clients.count()})"

    def client(self) -> Redis:
        """The client for the running event loop, made on first use there.

        Call it inside a running loop (from a URL, a `RuntimeError` otherwise) each
        time a client is needed: it is one dict look-up, and it is what keeps every
        loop on its own client.
        """
        if self._clients is None:
            assert self._given is not None
            return self._given
        return self._clients.get()

    async def aclose(self) -> None:
        """Close every client made here, whichever loop it belongs to.

        The running loop's client is closed here and awaited. A client of a loop that
        has closed has its sockets closed at once; one of a loop still running in
        another thread is closed in that loop, scheduled from here without waiting
        for it. A client passed in is left alone.
        """
        if self._clients is not None:
            await self._clients.aclose()


class _Closing:
    """A client taken out of use whose close has not finished yet."""

    __slots__ = ("client", "loop", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: Redis) -> None:
        self.loop = loop
        self.client = client
        self.task: asyncio.Task[None] | None = None  # held: the loop keeps only a weak one


class _Clients:
    """The clients made from one URL, one per loop, and those being closed.

    Kept apart from `RedisConnector` so that nothing here (a close waiting in an
    idle loop, the finaliser) keeps the connector alive.
    """

    def __init__(self, url: str, connect_timeout: float, socket_timeout: float) -> None:
        self.url = url
        self._timeouts = (connect_timeout, socket_timeout)
        # Closed loops' clients are dropped when a new loop first asks.
        self._loops: PerLoop[Redis] = PerLoop(self._make, _close_without_loop)
        self._lock = threading.Lock()  # guards `_closing`
        self._closing: dict[int, _Closing] = {}

    def get(self) -> Redis:
        return self._loops.get()

    def count(self) -> int:
        return len(self._loops.items())

    async def aclose(self) -> None:
        here = asyncio.get_running_loop()
        clients = self._loops.clear()
        with self._lock:
            for loop, client in clients:
                self._closing[id(client)] = _Closing(loop, client)
            stranded = self._take_stranded()
        for client in stranded:
            _close_without_loop(client)
        closed = {id(client) for client in stranded}
        mine = None
        for loop, client in clients:
            if loop is here:
                mine = client
            elif id(client) not in closed:
                self._hand_over(loop, client)
        if mine is not None:
            await mine.aclose()
            self._done(mine)

    def release(self) -> None:
        """The connector is gone: close the clients of loops that have closed.

        Those of loops still open are left to them (nothing may be scheduled on
        another thread's loop from a finaliser).
        """
        for loop, client in self._loops.items():
            if loop.is_closed() and self._loops.pop(loop) is client:
                _close_without_loop(client)
        with self._lock:
            stranded = self._take_stranded()
        for client in stranded:
            _close_without_loop(client)

    def _make(self, loop: asyncio.AbstractEventLoop) -> Redis:
        """A client for `loop` (a new loop: finish closes that earlier ones left)."""
        with self._lock:
            stranded = self._take_stranded()
        for client in stranded:
            _close_without_loop(client)
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        connect_timeout, socket_timeout = self._timeouts
        # No retries inside redis-py: a failure must reach the caller, and a script
        # retried after a lost reply would run twice.
        made: Redis = redis.asyncio.Redis.from_url(  # typed as Any by redis-py 5
            self.url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return made

    def _take_stranded(self) -> list[Redis]:
        """Clients being closed whose loop has closed: nothing can finish them there.

        Call with the lock held.
        """
        stranded = [entry for entry in self._closing.values() if entry.loop.is_closed()]
        for entry in stranded:
            self._closing.pop(id(entry.client), None)
        return [entry.client for entry in stranded]

    def _hand_over(self, loop: asyncio.AbstractEventLoop, client: Redis) -> None:
        """Have `loop` (running, or idle, maybe in another thread) close `client`.

        An idle loop that is closed without running again never does: the client is
        then closed without it by the next sweep (a new loop, `aclose()`, `release()`).
        """
        try:
            loop.call_soon_threadsafe(self._close_here, client)
        except RuntimeError:  # the loop closed since we looked
            with self._lock:
                taken = self._closing.pop(id(client), None) is not None
            if taken:
                _close_without_loop(client)

    def _close_here(self, client: Redis) -> None:
        """In the client's own loop: start closing it (scheduled by `_hand_over`)."""
        task = asyncio.get_running_loop().create_task(client.aclose())
        with self._lock:
            entry = self._closing.get(id(client))
            if entry is not None:
                entry.task = task
        task.add_done_callback(functools.partial(self._closed, client))

    def _closed(self, client: Redis, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return  # its loop is ending: the sockets are closed when it is found closed
        exc = task.exception()
        if exc is not None:
            logger.debug("closing a Redis client failed: %s: %s", type(exc).__name__, exc)
            return
        self._done(client)

    def _done(self, client: Redis) -> None:
        with self._lock:
            self._closing.pop(id(client), None)


def _close_without_loop(client: Redis) -> None:
    """Close the sockets of a client whose event loop is closed, without that loop.

    asyncio cannot close them any more (a transport needs its loop to finish
    closing), and the garbage collector would close each with a ResourceWarning. So
    this reaches into redis-py's pool (`_available_connections`, `_in_use_connections`,
    a connection's `_reader`/`_writer`, stable since redis-py 4.2) and closes each
    socket the way the transport's own finaliser would.
    """
    pool = client.connection_pool
    for connection in [*pool._available_connections, *pool._in_use_connections]:
        writer = connection._writer
        connection._reader = connection._writer = None
        if writer is not None:
            close_transport_without_loop(writer.transport)


def _check_url(url: str) -> None:
    if not url:
        raise ValidationError("url_or_client", url, "a Redis URL or a redis.asyncio.Redis")
    shown = _shown(url)  # never the URL itself: it may carry a password
    scheme = urllib.parse.urlsplit(url).scheme if shown != _HIDDEN else ""
    if scheme not in _SCHEMES:
        raise ValidationError("url_or_client", shown, "a redis://, rediss:// or unix:// URL")
    _redis_module()
    from redis.asyncio.connection import parse_url

    try:
        parse_url(url)
    except ValueError:
        raise ValidationError(
            "url_or_client", shown, "a valid redis://, rediss:// or unix:// URL"
        ) from None


_HIDDEN = "<URL hidden>"


def _shown(url: str) -> str:
    """What of a URL may be shown: scheme, host, port and path; never user, password
    or query (`?password=` works too)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return _HIDDEN
    if not parts.scheme or (not parts.netloc and parts.scheme != "unix"):
        return _HIDDEN  # no structure to tell a password from the rest
    netloc = ""
    if host:
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _redis_module() -> ModuleType:
    """`redis.asyncio`, or an ImportError that says which extra to install."""
    try:
        import redis.asyncio
    except ImportError:
        raise ImportError(
            "the Redis backends need the redis package: pip install 'fathom-async[redis]'"
        ) from None
    return redis.asyncio
