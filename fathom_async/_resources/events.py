"""`/sites/{site_id}/events`: events (goals), by id and, in the newer API, by name."""

from __future__ import annotations

from typing import Any

from .._exceptions import ValidationError
from .._models import Deleted, Event, Wiped
from .._pagination import AsyncPager
from .._protocol import ApiRequest, build_path
from .._telemetry import public_call
from .._types import CURRENCIES, NOT_GIVEN, Currency, NotGiven
from .._validation import check_choice, check_name
from ._base import Resource

MAX_NAME = 255


class EventsResource(Resource):
    """`/sites/{site_id}/events`: a site's events (the entity bucket, 2000 calls an hour).

    Any call may also raise `AuthenticationError` (a bad token), `RateLimitError` and
    `ServerError` (beyond the retries), `APIConnectionError` (no answer),
    `APIResponseError` (an answer that is not an event) and `ClientClosedError`.
    """

    def list(
        self,
        site_id: str,
        *,
        limit: int = 100,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> AsyncPager[Event]:
        """A site's events: `await` for one page, `async for` for all.

        `GET /sites/{site_id}/events?limit=...&starting_after=...` (or
        `ending_before=...`). `currency` is None on listed events (the API fills it
        only on create/update).

        Raises:
            ValidationError: at the call, before any request: a blank `site_id`,
                `limit` outside 1 to 100, a blank cursor, or both cursors.
            NotFoundError: on `await` or while iterating: no such site, or the token
                cannot see it.
            AcquireTimeoutError: on `await` or while iterating, when no slot of the
                entity bucket came within `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id), "events")
        return self._list(
            "events.list", path, Event,
            limit=limit, starting_after=starting_after, ending_before=ending_before,
        )

    @public_call("events.get", "entity")
    async def get(self, site_id: str, event_id: str) -> Event:
        """One event (`GET /sites/{site_id}/events/{event_id}`); `currency` is None.

        Raises:
            ValidationError: a blank `site_id` or `event_id` (before any request).
            NotFoundError: no such site or event, or the token cannot see the site.
            GoneError: if Fathom has retired the calls by event id (its newest spec
                marks them as no longer available in favour of the calls by name).
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id), "events", ("event_id", event_id))
        return await self._fetch(ApiRequest("GET", path, "entity"), Event)

    @public_call("events.create", "entity")
    async def create(
        self, site_id: str, name: str, *, currency: Currency | NotGiven = NOT_GIVEN
    ) -> Event:
        """Create an event (`POST /sites/{site_id}/events`); the default currency is "dollar".

        Never sent twice: if the connection fails after the request may have reached
        Fathom, you get `APIConnectionError(outcome_unknown=True)` instead of a
        possible duplicate.

        Raises:
            ValidationError: before any request: a blank `site_id`, a blank name or
                one over 255 characters, a currency not in `Currency`.
            NotFoundError: no such site, or the token cannot see it.
            PermissionDeniedError: the token may read the site but not manage it
                (it needs `*` or `manage:{site_id}`).
            APIConnectionError: the request may have reached Fathom but no answer
                came (`outcome_unknown=True`); list the events before trying again.
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id), "events")
        body: dict[str, Any] = {"name": check_name("name", name, MAX_NAME)}
        if not isinstance(currency, NotGiven):
            body["currency"] = check_choice("currency", currency, CURRENCIES)
        return await self._fetch(
            ApiRequest("POST", path, "entity", json=body, creates=True), Event
        )

    @public_call("events.update", "entity")
    async def update(
        self,
        site_id: str,
        event_id: str,
        *,
        name: str | NotGiven = NOT_GIVEN,
        currency: Currency | NotGiven = NOT_GIVEN,
    ) -> Event:
        """Change the name and/or currency (`POST /sites/{site_id}/events/{event_id}`).

        Only what you pass is sent.

        Raises:
            ValidationError: before any request: nothing to change, a blank or too
                long name, a currency not in `Currency`, a blank id.
            NotFoundError: no such site or event, or the token cannot see the site.
            PermissionDeniedError: the token may read the site but not manage it.
            GoneError: if Fathom has retired the calls by event id (its newest spec
                marks them as no longer available in favour of the calls by name).
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id), "events", ("event_id", event_id))
        body: dict[str, Any] = {}
        if not isinstance(name, NotGiven):
            body["name"] = check_name("name", name, MAX_NAME)
        if not isinstance(currency, NotGiven):
            body["currency"] = check_choice("currency", currency, CURRENCIES)
        if not body:
            raise ValidationError("update", {}, "at least one of name, currency")
        return await self._fetch(ApiRequest("POST", path, "entity", json=body), Event)

    @public_call("events.delete", "entity")
    async def delete(self, site_id: str, event_id: str) -> Deleted:
        """Delete one event (`DELETE /sites/{site_id}/events/{event_id}`).

        Raises:
            ValidationError: a blank `site_id` or `event_id` (before any request).
            NotFoundError: no such site or event (already deleted?), or the token
                cannot see the site.
            PermissionDeniedError: the token may read the site but not manage it.
            GoneError: if Fathom has retired the calls by event id (its newest spec
                marks them as no longer available in favour of the calls by name).
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id), "events", ("event_id", event_id))
        return await self._delete(ApiRequest("DELETE", path, "entity"), event_id)

    @public_call("events.delete_by_name", "entity")
    async def delete_by_name(self, site_id: str, name: str) -> Deleted:
        """Delete every event of the site with this name (the newer API's call).

        `DELETE /sites/{site_id}/events?name=...`. The answer gives the name
        (`Deleted.name`), not ids: `Deleted.id` is None.

        Raises:
            ValidationError: a blank `site_id`, a blank name or one over 255
                characters (before any request).
            NotFoundError: the site has no event of that name, or the token cannot
                see the site.
            PermissionDeniedError: the token may read the site but not manage it.
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id), "events")
        name = check_name("name", name, MAX_NAME)
        request = ApiRequest("DELETE", path, "entity", query=(("name", name),))
        return await self._delete(request, None, name=name)

    @public_call("events.set_currency", "entity")
    async def set_currency(self, site_id: str, name: str, currency: Currency) -> Event:
        """Set the currency of the event(s) with this name (the newer API's call).

        `POST /sites/{site_id}/events/currency` with `{name, currency}`.

        Raises:
            ValidationError: before any request: a blank `site_id`, a blank or too
                long name, a currency not in `Currency`.
            NotFoundError: the site has no event of that name, or the token cannot
                see the site.
            PermissionDeniedError: the token may read the site but not manage it.
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id), "events", "currency")
        body = {
            "name": check_name("name", name, MAX_NAME),
            "currency": check_choice("currency", currency, CURRENCIES),
        }
        return await self._fetch(ApiRequest("POST", path, "entity", json=body), Event)

    @public_call("events.wipe", "entity")
    async def wipe(self, site_id: str, event_id: str) -> Wiped:
        """Wipe an event's data (`DELETE /sites/{site_id}/events/{event_id}/data`): retired.

        Warns `DeprecationWarning`, then sends the request so that the API's own
        answer decides (kept for code written against the older documentation).

        Raises:
            GoneError: always, in practice: Fathom retired the endpoint (410 Gone).
            ValidationError: a blank `site_id` or `event_id` (before any request).
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path(
            "sites", ("site_id", site_id), "events", ("event_id", event_id), "data"
        )
        return await self._wipe(ApiRequest("DELETE", path, "entity"), "events.wipe()")
