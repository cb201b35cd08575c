"""`/current_visitors`: who is on the site right now (reports bucket, 10 per minute).

Realtime data: never cached unless a call passes `max_age=` (and the client has a
`report_cache`); identical calls in flight at once share one request.
"""

from __future__ import annotations

from .._models import CurrentVisitors
from .._protocol import ApiRequest, encode_id
from .._reports import check_max_age, fetch_report
from .._telemetry import public_call
from .._validation import check_bool
from ._base import Resource


class CurrentVisitorsResource(Resource):
    """`GET /current_visitors` (the reports bucket, 10 calls a minute).

    Any call may also raise `AuthenticationError` (a bad token), `RateLimitError` and
    `ServerError` (beyond the retries), `APIConnectionError` (no answer),
    `APIResponseError` (an answer without a total) and `ClientClosedError`.
    """

    @public_call("current_visitors.get", "reports")
    async def get(
        self,
        site_id: str,
        *,
        detailed: bool = False,
        cache: bool = True,
        max_age: float | None = None,
    ) -> CurrentVisitors:
        """The current visitor count; `detailed=True` adds top pages and referrers.

        `GET /current_visitors?site_id=...` (with `&detailed=true`). `max_age=s`
        accepts an answer from the client's `report_cache` up to `s` seconds old
        (and keeps this one that long); `cache=False` never uses it.

        Raises:
            ValidationError: before any request: a blank `site_id`, a `detailed` or
                `cache` that is not a bool, a `max_age` that is not a number of
                seconds (or is negative).
            NotFoundError: no such site, or the token cannot read it.
            AcquireTimeoutError: no slot of the reports bucket came within
                `acquire_timeout`; nothing was sent.
        """
        encode_id("site_id", site_id)
        query = [("site_id", site_id)]
        if check_bool("detailed", detailed):
            query.append(("detailed", "true"))
        check_bool("cache", cache)
        converter = self._client._converter
        return await fetch_report(
            self._client,
            ApiRequest("GET", "/current_visitors", "reports", query=tuple(query)),
            lambda data: converter.structure(data, CurrentVisitors),
            cache=cache,
            max_age=check_max_age(max_age),
        )
