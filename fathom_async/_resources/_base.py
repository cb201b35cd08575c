"""What every resource shares: sending a request and reading its model back."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .._logging import warn_caller
from .._models import Deleted, Page, Wiped
from .._pagination import AsyncPager
from .._protocol import ApiRequest, list_items
from .._telemetry import observed
from .._validation import check_page_args

if TYPE_CHECKING:
    from .._client import FathomClient

T = TypeVar("T")


class Resource:
    """Base of the resources: holds the client (or view) whose settings apply."""

    def __init__(self, client: FathomClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    async def _fetch(self, request: ApiRequest, model: type[T]) -> T:
        data = await self._client._request(request)
        return self._client._converter.structure(data, model)

    def _list(
        self,
        name: str,
        path: str,
        model: type[T],
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
    ) -> AsyncPager[T]:
        """A pager over `path`; each page it fetches is a public call `name` (a span)."""
        size, after, before = check_page_args(limit, starting_after, ending_before)

        def fetch(limit: int, after: str | None, before: str | None) -> Awaitable[Page[T]]:
            return observed(name, "entity", self._client, page(limit, after, before))

        async def page(limit: int, after: str | None, before: str | None) -> Page[T]:
            query = [("limit", str(limit))]
            if after is not None:
                query.append(("starting_after", after))
            if before is not None:
                query.append(("ending_before", before))
            data = await self._client._request(
                ApiRequest("GET", path, "entity", query=tuple(query))
            )
            items, has_more, url = list_items(data)
            return Page(
                data=self._client._converter.structure_many(items, model),
                has_more=has_more,
                url=url,
                raw=data if isinstance(data, Mapping) else {},
            )

        return AsyncPager(fetch, limit=size, starting_after=after, ending_before=before)

    async def _delete(
        self, request: ApiRequest, object_id: str | None, *, name: str | None = None
    ) -> Deleted:
        data: Any = await self._client._request(request)
        if data is None:
            # A 204 or an empty body, or a retry that found the object gone after an
            # attempt whose answer was lost (see `_retry`): deleted, nothing more said.
            return Deleted(deleted=True, id=object_id, name=name)
        return self._client._converter.structure(data, Deleted)

    async def _wipe(self, request: ApiRequest, what: str) -> Wiped:
        warn_caller(
            f"{what} was retired by Fathom and answers 410 Gone; this call raises GoneError",
            DeprecationWarning,
        )
        return await self._fetch(request, Wiped)
