"""Objects that belong to one event loop, kept per running loop; one clock across loops.

aiohttp sessions, redis-py connections, futures and timers belong to the loop that
made them, while users make clients at import time and use them from many loops: two
`asyncio.run()` calls one after another, a session-scoped test fixture, a thread
pool with a loop per thread. So anything loop-bound is kept in a `PerLoop`: made on
first use in the running loop, found again by that loop, dropped once its loop is
closed. This module never does I/O.

`SharedClock` gives a limiter one time line across loops. Grant times taken on one
loop must stay comparable on the next, but a loop's `time()` need not be
`time.monotonic()` (looptime's fake clocks in tests, each starting at 0). Each loop
gets an offset: standard loops, whose clock *is* the monotonic clock, share one offset
(0 unless a fake clock ran ahead); any other loop is fitted on when it binds so the
limiter's time goes on from where it was, plus the real time that passed since. A
fresh clock takes the first loop's time as it is, so tests read grant times in their
own loop's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Beacon", "PerLoop", "SharedClock", "close_transport_without_loop"]

T = TypeVar("T")


class PerLoop(Generic[T]):
    """One `T` per running event loop, made by `make(loop)` on first use.

    Thread-safe: loops in several threads may ask at once. Entries of closed loops are
    dropped (and handed to `drop`, which must not need the closed loop) whenever a new
    loop is seen, so nothing grows with the number of loops used.
    """

    __slots__ = ("_drop", "_items", "_last", "_lock", "_make")

    def __init__(
        self,
        make: Callable[[asyncio.AbstractEventLoop], T],
        drop: Callable[[T], None] | None = None,
    ) -> None:
        self._make = make
        self._drop = drop
        self._items: dict[asyncio.AbstractEventLoop, T] = {}
        self._last: tuple[asyncio.AbstractEventLoop, T] | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The running loop's object (made now if this loop has none)."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        with self._lock:
            item = self._items.get(loop)
            if item is None:
                self._prune()
                item = self._items[loop] = self._make(loop)
            self._last = (loop, item)
        return item

    def __len__(self) -> int:
        return len(self._items)

    def peek(self) -> T | None:
        """The running loop's object if it has one (None outside a loop too)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            return self._items.get(loop)

    def items(self) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        """Every loop's object, closed loops' included (the caller decides)."""
        with self._lock:
            return list(self._items.items())

    def pop(self, loop: asyncio.AbstractEventLoop) -> T | None:
        with self._lock:
            if self._last is not None and self._last[0] is loop:
                self._last = None
            return self._items.pop(loop, None)

    def clear(self) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        """Forget every object; return them for the caller to close."""
        with self._lock:
            items = list(self._items.items())
            self._items.clear()
            self._last = None
        return items

    def _prune(self) -> None:
        for loop in [loop for loop in self._items if loop.is_closed()]:
            item = self._items.pop(loop)
            if self._last is not None and self._last[0] is loop:
                self._last = None
            if self._drop is not None:
                self._drop(item)


class Beacon:
    """A one-shot signal that tasks of any loop, in any thread, may wait for.

    `asyncio.Event` belongs to the first loop that waits on it; this one wakes each
    waiter in its own loop.
    """

    __slots__ = ("_fired", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fired = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def fire(self) -> None:
        with self._lock:
            self._fired = True
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._fired:
                return
            self._waiters.append((loop, future))
        try:
            await future
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def close_transport_without_loop(transport: Any) -> None:
    """Close the socket under an asyncio transport whose event loop is closed.

    asyncio cannot finish closing a transport without its loop, and the garbage
    collector would close the socket with a ResourceWarning. So the socket is closed
    the way the transport's own finaliser would: TLS wraps the socket's transport,
    and the socket lives in the inner one (`_sock`, selector transports; other loop
    implementations close theirs on collection). Used for aiohttp sessions and
    redis-py connections alike.
    """
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    layers: tuple[Any, ...] = (transport, inner)
    for layer in layers:
        if layer is None:
            continue
        # Marks it closing (so no finaliser warns), then fails to schedule the rest
        # ("Event loop is closed"; other loop implementations may fail otherwise).
        with contextlib.suppress(Exception):
            layer.close()
        sock = getattr(layer, "_sock", None)
        if sock is not None:
            layer._sock = None
            with contextlib.suppress(OSError):
                sock.close()


def _is_monotonic(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the loop's clock is `time.monotonic()` itself (asyncio's own loops)."""
    return type(loop).time is asyncio.BaseEventLoop.time


class SharedClock:
    """One time line for a limiter used from several loops (see the module docstring)."""

    __slots__ = ("_anchor", "_fake", "_lock", "_monotonic_offset", "_started")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        # Standard loops: limiter time = time.monotonic() + this.
        self._monotonic_offset: float | None = None
        # The last fake-clock loop bound, and its offset: its time is read when needed.
        self._fake: tuple[asyncio.AbstractEventLoop, float] | None = None
        # An earlier fake clock's last limiter time, and the real time then.
        self._anchor: tuple[float, float] | None = None

    def offset(self, loop: asyncio.AbstractEventLoop) -> float:
        """What to add to `loop.time()` for limiter time; called once per loop."""
        with self._lock:
            monotonic = _is_monotonic(loop)
            if not self._started:
                self._started = True
                if monotonic:
                    self._monotonic_offset = 0.0
                else:
                    self._fake = (loop, 0.0)
                return 0.0
            now = self._estimate()
            self._retire_fake()
            if monotonic:
                if self._monotonic_offset is None or self._anchor is not None:
                    # A fake clock ran ahead of real time: carry on from its time.
                    self._monotonic_offset = max(
                        self._monotonic_offset or 0.0, now - time.monotonic()
                    )
                    self._anchor = None
                return self._monotonic_offset
            offset = now - loop.time()
            self._fake = (loop, offset)
            return offset

    def now(self) -> float:
        """Limiter time outside any loop: the best estimate."""
        with self._lock:
            return self._estimate()

    def _retire_fake(self) -> None:
        """Fold the last fake clock's time into the anchor (it may run no more)."""
        if self._fake is not None:
            loop, offset = self._fake
            self._anchor = (loop.time() + offset, time.monotonic())
            self._fake = None

    def _estimate(self) -> float:
        real = time.monotonic()
        candidates = []
        if self._monotonic_offset is not None:
            candidates.append(real + self._monotonic_offset)
        if self._fake is not None:
            loop, offset = self._fake
            candidates.append(loop.time() + offset)
        elif self._anchor is not None:
            at, then = self._anchor
            candidates.append(at + real - then)
        return max(candidates) if candidates else real
