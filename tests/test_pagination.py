"""The pager: one page when awaited, every item when iterated, no page fetched twice."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from fathom_async import APIResponseError, AsyncPager, Page


@attrs.frozen
class Item:
    id: Any


class Book:
    """Serves scripted pages and records the cursors it was asked for."""

    def __init__(self, *pages: tuple[list[Any], bool]) -> None:
        self.pages = list(pages)
        self.asked: list[tuple[int, str | None, str | None]] = []

    async def fetch(self, limit: int, after: str | None, before: str | None) -> Page[Item]:
        self.asked.append((limit, after, before))
        ids, has_more = self.pages.pop(0)
        return Page(data=tuple(Item(i) for i in ids), has_more=has_more)


async def test_awaiting_then_iterating_fetches_the_first_page_once() -> None:
    book = Book((["a", "b"], True), (["c"], False))
    pager = AsyncPager(book.fetch, limit=2)
    first = await pager
    assert [item.id for item in first.data] == ["a", "b"]
    assert await pager is first
    assert [item.id async for item in pager] == ["a", "b", "c"]
    assert book.asked == [(2, None, None), (2, "b", None)]


async def test_pages_walk_page_by_page() -> None:
    book = Book((["a"], True), (["b"], True), ([], False))
    pages = [page async for page in AsyncPager(book.fetch, limit=1, starting_after="z").pages()]
    assert [len(page) for page in pages] == [1, 1, 0]
    assert book.asked == [(1, "z", None), (1, "a", None), (1, "b", None)]


async def test_backward_walks_use_the_last_id_of_each_page() -> None:
    book = Book((["y", "x"], True), (["w"], False))
    pager = AsyncPager(book.fetch, limit=2, ending_before="z")
    assert pager.direction == "backward"
    assert "ending_before='z'" in repr(pager)
    assert [item.id async for item in pager] == ["y", "x", "w"]
    assert book.asked == [(2, None, "z"), (2, None, "x")]


async def test_items_repeated_across_a_moving_boundary_are_yielded_once() -> None:
    book = Book((["a", "b"], True), (["b", "c"], False))
    assert [item.id async for item in AsyncPager(book.fetch, limit=2)] == ["a", "b", "c"]


async def test_has_more_on_an_empty_page_stops_with_an_error() -> None:
    book = Book(([], True))
    with pytest.raises(APIResponseError, match="empty page"):
        [item async for item in AsyncPager(book.fetch, limit=2)]


async def test_a_repeated_cursor_stops_rather_than_loops() -> None:
    book = Book((["a"], True), (["a"], True), (["a"], True))
    with pytest.raises(APIResponseError, match="twice"):
        [item async for item in AsyncPager(book.fetch, limit=1)]
    assert len(book.asked) == 2


async def test_an_item_without_id_cannot_be_paged_past() -> None:
    book = Book(([None], True))
    with pytest.raises(APIResponseError, match="no id"):
        [item async for item in AsyncPager(book.fetch, limit=1)]


async def test_items_without_ids_on_the_last_page_are_still_yielded() -> None:
    book = Book(([None, None], False))
    assert len([item async for item in AsyncPager(book.fetch, limit=5)]) == 2
    assert repr(AsyncPager(book.fetch, limit=5, starting_after="q")) == (
        "<AsyncPager limit=5, starting_after='q'>"
    )
