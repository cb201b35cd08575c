"""The one wait queue of every limiter backend: who goes next, and how long they wait.

A backend (the in-process window, the Redis script) answers one question: *when* may
the next grant of a class happen. Everything about the callers lives here, once:

- **Priorities and FIFO.** Interactive waiters go before bulk ones, FIFO within each
  priority. A bulk waiter that has waited `bulk_max_wait` seconds competes as
  interactive, in arrival order, so bulk work is never starved by a dashboard.
- **Reservation.** A bulk waiter is always granted as *bulk*: the backend lets bulk
  hold at most `limit - reserve` grants in any window, aged or not. When the head is
  bulk and only the reserve is left, the first interactive waiter goes instead.
- **Deadlines.** `timeout` bounds the wait; when the backend says the earliest grant
  lies beyond the deadline, `AcquireTimeoutError` comes at once (on arrival, or as
  soon as a backend that did not know yet learns it: `end_hopeless()`), and every
  timeout says when the next slot of the waiter's class is.
- **Cancellation.** A waiter that leaves takes nothing; one granted at the moment it
  was cancelled gives the slot back (`Permit.revoke`).
- **In-flight cap.** `Places` counts held permits of a bucket across every loop.

A `WaitQueue` belongs to one event loop (its futures and timers do); a backend keeps
one per loop and bucket (`_loops.PerLoop`). Subclasses say how grants are made:
`pump()` grants what may go now (or starts whatever will), `earliest()` estimates the
next slot. This module never does I/O and never sleeps.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._exceptions import AcquireTimeoutError
from ._window import EPSILON

if TYPE_CHECKING:
    from ._loops import PerLoop

if TYPE_CHECKING:
    from ._types import Bucket, Priority

__all__ = ["TIMEOUT", "Permit", "Places", "WaitQueue", "Waiter"]

#: A waiter's result when its deadline passed.
TIMEOUT: Any = object()


class Permit:
    """A granted slot. `release()` frees the in-flight place; the window slot stays used.

    Release it when the request is done (`finally`, or `async with permit:`).
    Releasing twice is harmless. A backend passes `on_release` to learn of it.
    """

    __slots__ = ("_on_release", "_on_revoke", "bucket", "granted_at")

    def __init__(
        self,
        bucket: Bucket | None = None,
        granted_at: float = 0.0,
        on_release: Callable[[], None] | None = None,
        on_revoke: Callable[[], None] | None = None,
    ) -> None:
        self.bucket = bucket
        self.granted_at = granted_at
        self._on_release = on_release
        self._on_revoke = on_revoke

    @property
    def released(self) -> bool:
        """Whether the slot was handed back (the request finished or never went)."""
        return self._on_release is None

    def release(self) -> None:
        """End the grant's hold on the in-flight cap; the window slot stays spent. Safe twice."""
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            on_release()

    def revoke(self) -> None:
        """Give back a grant that was never used: its window slot returns too.

        For a request that was not sent after all. A backend that cannot take a
        slot back only frees the in-flight place, as `release()` does.
        """
        on_revoke, self._on_revoke = self._on_revoke, None
        if on_revoke is not None and self._on_release is not None:
            on_revoke()
        else:
            self.release()

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Permit {self.bucket} granted_at={self.granted_at:.6f} {state}>"


class _Grant(Permit):
    """A permit a `WaitQueue` granted: revoking it goes to the queue.

    The queue and its give-back are slots rather than a closure over the permit,
    so no grant (one per API call) makes a reference cycle or a closure.
    """

    __slots__ = ("_give_back", "_queue")

    _queue: WaitQueue | None
    _give_back: Callable[[Permit], None] | None

    def __init__(self, bucket: Bucket, granted_at: float, on_release: Callable[[], None]) -> None:
        super().__init__(bucket, granted_at, on_release)
        self._queue = None
        self._give_back = None

    def revoke(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None and self._give_back is not None and self._on_release is not None:
            queue._revoked(self, self._give_back)
        else:
            self.release()


class Places:
    """A bucket's in-flight count and cap, shared by every loop (thread-safe)."""

    __slots__ = ("cap", "count", "lock")

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.count = 0
        self.lock = threading.Lock()

    def free(self) -> int | None:
        """How many more may be in flight (None: no cap)."""
        return None if self.cap is None else max(self.cap - self.count, 0)

    def take(self) -> bool:
        with self.lock:
            if self.cap is not None and self.count >= self.cap:
                return False
            self.count += 1
            return True

    def put_back(self, n: int = 1) -> None:
        with self.lock:
            self.count -= n


class Waiter:
    __slots__ = ("arrived", "bulk", "future", "once", "seq", "timeout")

    def __init__(
        self,
        future: asyncio.Future[Any],
        seq: int,
        arrived: float,
        bulk: bool,
        timeout: float | None = None,
    ) -> None:
        self.future = future  # result: a Permit, TIMEOUT, or a backend's signal
        self.seq = seq
        self.arrived = arrived
        self.bulk = bulk  # granted under the bulk share, however long it waited
        self.timeout = timeout
        self.once = timeout == 0  # the backend's first answer decides


class WaitQueue(abc.ABC):
    """One bucket's waiters in one event loop (see the module docstring)."""

    def __init__(self, owner: Any, bucket: Bucket, loop: asyncio.AbstractEventLoop) -> None:
        """`owner` is the backend: its `_places`, `bulk_max_wait` and `_loops` are used."""
        self.bucket: Bucket = bucket
        self.loop = loop
        self.places: Places = owner._places[bucket]
        self.bulk_max_wait: float = owner.bulk_max_wait
        self.queues: dict[Priority, collections.OrderedDict[Waiter, None]] = {
            "interactive": collections.OrderedDict(),
            "bulk": collections.OrderedDict(),
        }
        self.seq = 0
        self.held = 0  # permits of this loop not yet released
        self.dropped = False  # the loop closed: its permits release nothing
        self._peers: PerLoop[Any] = owner._loops

    # -- what a backend provides ---------------------------------------------------------

    @abc.abstractmethod
    def pump(self) -> None:
        """Grant the waiters that may go now, and arrange to be called again."""

    @abc.abstractmethod
    def earliest(self, bulk: bool) -> float | None:
        """Loop time of the earliest possible grant of that class (None: unknown)."""

    # -- waiting ---------------------------------------------------------------------------

    async def wait(self, priority: Priority, timeout: float | None) -> Any:
        """Queue up and wait: a Permit, or a backend's signal; raises on timeout."""
        loop = self.loop
        now = loop.time()
        bulk = priority == "bulk"
        if timeout is not None:
            earliest = self.earliest(bulk)
            if earliest is not None and earliest > now + timeout + EPSILON:
                raise self.timed_out(timeout, earliest - now)
        future: asyncio.Future[Any] = loop.create_future()
        self.seq += 1
        waiter = Waiter(future, self.seq, now, bulk, timeout)
        queue = self.queues[priority]
        queue[waiter] = None
        timer = None
        if timeout is not None and timeout > 0:
            timer = loop.call_at(now + timeout, self._time_out, waiter)
        try:
            self.pump()
            result = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                if future.exception() is None:
                    granted = future.result()
                    revoke = getattr(granted, "revoke", None)
                    if callable(revoke):  # granted, but the task was cancelled first
                        revoke()
            else:
                future.cancel()
                if queue.pop(waiter, False) is None:
                    self.pump()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if result is TIMEOUT:
            assert timeout is not None
            raise self.timed_out(timeout, bulk=bulk)
        return result

    def timed_out(
        self, timeout: float, next_slot_in: float | None = None, *, bulk: bool = False
    ) -> AcquireTimeoutError:
        """The error for a wait of `timeout` s; by default it says when the next slot
        of the class (bulk or interactive) is, as far as the backend knows."""
        if next_slot_in is None:
            earliest = self.earliest(bulk)
            if earliest is not None:
                next_slot_in = earliest - self.loop.time()
        if next_slot_in is not None:
            next_slot_in = max(next_slot_in, 0.0)
        return AcquireTimeoutError(self.bucket, float(timeout), next_slot_in=next_slot_in)

    def _time_out(self, waiter: Waiter) -> None:
        self.end(waiter, TIMEOUT)
        self.pump()

    def end_hopeless(self) -> None:
        """Fail every waiter whose deadline comes before the earliest grant of its class.

        What `wait()` checks on arrival, for a backend that learns the window only
        later (Redis, after its first answer). The waiters get `AcquireTimeoutError`
        with `next_slot_in`; the caller pumps again if it needs to.
        """
        now = self.loop.time()
        earliest = {bulk: self.earliest(bulk) for bulk in (False, True)}
        for waiter in [w for queue in self.queues.values() for w in queue]:
            due = earliest[waiter.bulk]
            if (
                waiter.timeout is not None
                and due is not None
                and due > waiter.arrived + waiter.timeout + EPSILON
            ):
                self.end(waiter, self.timed_out(waiter.timeout, due - now))

    def end(self, waiter: Waiter, outcome: object) -> None:
        """Take a waiter out with a result (TIMEOUT, a signal) or an exception."""
        for queue in self.queues.values():
            queue.pop(waiter, None)
        if waiter.future.done():
            return
        if isinstance(outcome, BaseException):
            waiter.future.set_exception(outcome)
        else:
            waiter.future.set_result(outcome)

    # -- order -------------------------------------------------------------------------------

    def waiting(self) -> int:
        return len(self.queues["interactive"]) + len(self.queues["bulk"])

    def _head(self, priority: Priority) -> Waiter | None:
        queue = self.queues[priority]
        while queue:
            waiter = next(iter(queue))
            if not waiter.future.done():
                return waiter
            del queue[waiter]  # cancelled: its task has not run its cleanup yet
        return None

    def aged(self, waiter: Waiter, now: float) -> bool:
        """Whether a bulk waiter has waited `bulk_max_wait`: it competes as interactive."""
        return now - waiter.arrived + EPSILON >= self.bulk_max_wait

    def _bulk_first(self, bulk: Waiter, first: Waiter, now: float) -> bool:
        return self.aged(bulk, now) and bulk.seq < first.seq

    def ordered(self, now: float, n: int) -> list[tuple[Priority, Waiter]]:
        """The next `n` waiters in the order they would be served if all could go."""
        picked: list[tuple[Priority, Waiter]] = []
        interactive = iter([w for w in self.queues["interactive"] if not w.future.done()])
        bulk = iter([w for w in self.queues["bulk"] if not w.future.done()])
        first, later = next(interactive, None), next(bulk, None)
        while len(picked) < n and (first is not None or later is not None):
            if later is not None and (first is None or self._bulk_first(later, first, now)):
                picked.append(("bulk", later))
                later = next(bulk, None)
            else:
                assert first is not None
                picked.append(("interactive", first))
                first = next(interactive, None)
        return picked

    def serve(self, priority: Priority, waiter: Waiter, permit: Permit) -> None:
        del self.queues[priority][waiter]
        waiter.future.set_result(permit)

    def settle(self, signal: object) -> None:
        """Answer every waiter at once (closing, falling back, failing)."""
        for waiter in [w for queue in self.queues.values() for w in queue]:
            self.end(waiter, signal)

    # -- permits ---------------------------------------------------------------------------

    def permit(self, granted_at: float, give_back: Callable[[Permit], None] | None) -> Permit:
        """A permit for a grant this queue made (its in-flight place is taken)."""
        self.held += 1
        permit = _Grant(self.bucket, granted_at, self._released)
        if give_back is not None:
            permit._queue = self
            permit._give_back = give_back
        return permit

    def _released(self) -> None:
        if self.dropped:  # granted in a loop that is closed now
            return
        self.held -= 1
        self.places.put_back()
        if self.places.cap is not None:  # only a cap can have held anyone back
            self.wake()

    def _revoked(self, permit: Permit, give_back: Callable[[Permit], None]) -> None:
        permit._on_release = None
        if self.dropped:
            return
        self.held -= 1
        self.places.put_back()
        give_back(permit)
        self.wake()

    def wake(self) -> None:
        """Something came free: serve this loop's waiters, and tell the other loops."""
        if self.waiting() and not self.loop.is_closed():
            self.pump()
        if len(self._peers) < 2:
            return
        for loop, queues in self._peers.items():
            if loop is self.loop or loop.is_closed():
                continue
            other = queues.get(self.bucket) if isinstance(queues, dict) else None
            if other is not None and other.waiting():
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    loop.call_soon_threadsafe(other.pump)

    def drop(self) -> None:
        """The loop is closed: so are its waiters and timers; its places are freed."""
        self.dropped = True
        if self.held:
            self.places.put_back(self.held)
            self.held = 0
        for queue in self.queues.values():
            queue.clear()
