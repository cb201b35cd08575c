"""Cursor pagination: one object that is both a page (await it) and a stream (iterate it).

`await fathom.sites.list(limit=10)` fetches one page; `async for site in
fathom.sites.list()` walks every page; `.pages()` walks page by page. The direction
is fixed by the first request: `starting_after` (or no cursor) walks forward in
chronological order, `ending_before` walks backward, newest first; either way the
next cursor is the id of the last item of the page just read (FACTS.md).

Every request costs the customer quota, so a page is never fetched twice: the first
page is kept once awaited, a cursor is never sent twice, and a walk stops (with an
error) rather than loop when the server repeats itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

from ._exceptions import APIResponseError
from ._models import Page

__all__ = ["AsyncPager"]

T = TypeVar("T")

FetchPage = Callable[[int, str | None, str | None], Awaitable[Page[T]]]


def _item_id(item: Any) -> str | int | None:
    value = getattr(item, "id", None)
    return value if isinstance(value, (str, int)) else None


class AsyncPager(Generic[T]):
    """The result of a `list()` call: awaitable (first page) and async-iterable (all items)."""

    def __init__(
        self,
        fetch: FetchPage[T],
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> None:
        self._fetch = fetch
        self.limit = limit
        self.starting_after = starting_after
        self.ending_before = ending_before
        self._first: Page[T] | None = None

    @property
    def direction(self) -> str:
        """"forward" (chronological) or "backward" (newest first)."""
        return "backward" if self.ending_before is not None else "forward"

    def __repr__(self) -> str:
        cursor = ""
        if self.starting_after is not None:
            cursor = f", starting_after={self.starting_after!r}"
        elif self.ending_before is not None:
            cursor = f", ending_before={self.ending_before!r}"
        return f"<AsyncPager limit={self.limit}{cursor}>"

    def __await__(self) -> Generator[Any, None, Page[T]]:
        return self._first_page().__await__()

    async def _first_page(self) -> Page[T]:
        if self._first is None:
            self._first = await self._fetch(self.limit, self.starting_after, self.ending_before)
        return self._first

    async def pages(self) -> AsyncIterator[Page[T]]:
        """Every page in order, each fetched once."""
        page = await self._first_page()
        sent: set[str] = set()
        backward = self.ending_before is not None
        while True:
            yield page
            if not page.has_more:
                return
            if not page.data:
                raise APIResponseError("the API said has_more on an empty page")
            cursor = _item_id(page.data[-1])
            if cursor is None:
                raise APIResponseError("cannot page on: the last item of the page has no id")
            cursor = str(cursor)
            if cursor in sent:
                raise APIResponseError(
                    f"the API sent the cursor {cursor!r} twice; stopping rather than loop"
                )
            sent.add(cursor)
            if backward:
                page = await self._fetch(self.limit, None, cursor)
            else:
                page = await self._fetch(self.limit, cursor, None)

    async def __aiter__(self) -> AsyncIterator[T]:
        seen: set[str | int] = set()
        async for page in self.pages():
            for item in page.data:
                key = _item_id(item)
                if key is not None:
                    if key in seen:  # a page boundary that moved under us
                        continue
                    seen.add(key)
                yield item
