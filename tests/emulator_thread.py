"""An emulator serving from its own loop in a thread, for code that runs `asyncio.run`.

click's runner calls the command in this thread, and the command runs its own loop;
an emulator on the test's loop would be blocked meanwhile. So it gets a loop of its
own, in a daemon thread, started and closed around the `with` block.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fathom_async.testing import FakeFathom

__all__ = ["emulator_thread"]


@contextmanager
def emulator_thread(
    *, pageviews: int = 1_000, token_name: str = "cli"
) -> Iterator[tuple[FakeFathom, str]]:
    """A serving FakeFathom (seed 9, no rate limits) and a new `*` token of it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[FakeFathom, str]:  # SQLite wants its own thread
        fake = FakeFathom(seed=9, pageviews=pageviews, enforce_rate_limits=False)
        token = fake.make_token("*", name=token_name)
        return await fake.start(), token

    fake, token = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield fake, token
    finally:
        asyncio.run_coroutine_threadsafe(fake.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
