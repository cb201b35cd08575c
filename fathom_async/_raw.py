"""`client.with_raw_response`: the same calls, answering with the HTTP response too.

`await fathom.with_raw_response.sites.get("CDBUGS")` is `fathom.sites.get("CDBUGS")`
(the same validation, rate-limit slot, retries and errors) that hands back a
`RawResponse`: the status, the headers (`X-RateLimit-*` among them), the body, and
`.parse()` for the model the plain call returns. The call runs under a `CallRecord`
(`_calls`) that the request layer fills with the last response it read.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ._calls import CALL, CallRecord
from ._exceptions import APIResponseError
from ._json import loads

if TYPE_CHECKING:
    from ._client import FathomClient

__all__ = ["RawClient", "RawResponse"]

T = TypeVar("T")
P = ParamSpec("P")


class RawResponse(Generic[T]):
    """A call's HTTP response: status, headers and body, and `.parse()` for its model.

    It comes from the same call as the plain method (validation, rate-limit slot,
    retries, typed errors for 4xx and 5xx), and describes the last response the call
    read: after retries, the last attempt's (for a DELETE whose retry found the
    object already gone, that 404). For an aggregation split over
    several requests it is the last response to arrive; a report call answered by an
    identical call in flight has that call's response. A raw call never reads the
    report cache: there would be no response to show.

    Attributes:
        status_code: the HTTP status, as 200 or 204.
        headers: the response headers, looked up in any case: `X-RateLimit-Limit`
            and `X-RateLimit-Remaining` say what is left of the bucket's budget.
        content: the body as sent (empty for a 204).
    """

    __slots__ = ("_parsed", "content", "headers", "status_code")

    def __init__(
        self, status_code: int, headers: Mapping[str, str], content: bytes, parsed: T
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self._parsed = parsed

    def parse(self) -> T:
        """The model the plain call returns (a `Site`, a `Page`, `AggregationRows`...)."""
        return self._parsed

    def json(self) -> Any:
        """The body decoded as JSON (`APIResponseError` if it is not JSON)."""
        try:
            return loads(self.content)
        except ValueError as exc:
            raise APIResponseError(
                f"the body is not JSON: {exc}", status_code=self.status_code
            ) from None

    def __repr__(self) -> str:
        return f"<RawResponse status_code={self.status_code} {len(self.content)} bytes>"


def raw(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[RawResponse[T]]]:
    """The method, answering with a `RawResponse` around its result."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> RawResponse[T]:
        record = CallRecord(raw=True)
        current = CALL.set(record)
        try:
            result = await method(*args, **kwargs)
        finally:
            CALL.reset(current)
        if record.status is None or record.headers is None:  # pragma: no cover - every
            # raw call sends (it reads no cache); a path that did not is a bug here
            raise RuntimeError("the call finished without an HTTP response to show")
        return RawResponse(record.status, record.headers, record.body or b"", result)

    return call


class _RawAccount:
    """`with_raw_response.account`: `get()`."""

    def __init__(self, client: FathomClient) -> None:
        self.get = raw(client.account.get)


class _RawToken:
    """`with_raw_response.token`: `get()`."""

    def __init__(self, client: FathomClient) -> None:
        self.get = raw(client.token.get)


class _RawSites:
    """`with_raw_response.sites`: each method of `fathom.sites`; `list()` answers
    with the first page."""

    def __init__(self, client: FathomClient) -> None:
        sites = client.sites
        self.list = raw(sites.list)
        self.get = raw(sites.get)
        self.create = raw(sites.create)
        self.update = raw(sites.update)
        self.delete = raw(sites.delete)
        self.wipe = raw(sites.wipe)


class _RawEvents:
    """`with_raw_response.events`: each method of `fathom.events`; `list()` answers
    with the first page."""

    def __init__(self, client: FathomClient) -> None:
        events = client.events
        self.list = raw(events.list)
        self.get = raw(events.get)
        self.create = raw(events.create)
        self.update = raw(events.update)
        self.delete = raw(events.delete)
        self.delete_by_name = raw(events.delete_by_name)
        self.set_currency = raw(events.set_currency)
        self.wipe = raw(events.wipe)


class _RawMilestones:
    """`with_raw_response.milestones`: each method of `fathom.milestones`; `list()`
    answers with the first page."""

    def __init__(self, client: FathomClient) -> None:
        milestones = client.milestones
        self.list = raw(milestones.list)
        self.get = raw(milestones.get)
        self.create = raw(milestones.create)
        self.update = raw(milestones.update)
        self.delete = raw(milestones.delete)


class _RawAggregations:
    """`with_raw_response.aggregations`: `query()`."""

    def __init__(self, client: FathomClient) -> None:
        self.query = raw(client.aggregations.query)


class _RawCurrentVisitors:
    """`with_raw_response.current_visitors`: `get()`."""

    def __init__(self, client: FathomClient) -> None:
        self.get = raw(client.current_visitors.get)


class RawClient:
    """`client.with_raw_response`: every resource of the client, answering with a
    `RawResponse` instead of the bare model (same settings as the client or view)."""

    def __init__(self, client: FathomClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<RawClient of {self._client!r}>"

    @functools.cached_property
    def account(self) -> _RawAccount:
        """`account.get()`, raw."""
        return _RawAccount(self._client)

    @functools.cached_property
    def token(self) -> _RawToken:
        """`token.get()`, raw."""
        return _RawToken(self._client)

    @functools.cached_property
    def sites(self) -> _RawSites:
        """The `sites` calls, raw."""
        return _RawSites(self._client)

    @functools.cached_property
    def events(self) -> _RawEvents:
        """The `events` calls, raw."""
        return _RawEvents(self._client)

    @functools.cached_property
    def milestones(self) -> _RawMilestones:
        """The `milestones` calls, raw."""
        return _RawMilestones(self._client)

    @functools.cached_property
    def aggregations(self) -> _RawAggregations:
        """`aggregations.query()`, raw."""
        return _RawAggregations(self._client)

    @functools.cached_property
    def current_visitors(self) -> _RawCurrentVisitors:
        """`current_visitors.get()`, raw."""
        return _RawCurrentVisitors(self._client)
