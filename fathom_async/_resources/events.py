"""`/sites/{site_id}/events`: events (goals), by id and, in the newer API, by name."""

from __future__ import annotations

from typing import Any

from .._exceptions import ValidationError
from .._models import Deleted, Event, Wiped
from .._pagination import AsyncPager
from .._protocol import ApiRequest, build_path
from .._types import CURRENCIES, NOT_GIVEN, Currency, NotGiven
from .._validation import check_choice, check_name
from ._base import Resource

MAX_NAME = 255


class EventsResource(Resource):
    def list(
        self,
        site_id: str,
        *,
        limit: int = 100,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> AsyncPager[Event]:
        """A site's events: `await` for one page, `async for` for all.

        `currency` is None on listed events (the API fills it only on create/update).
        """
        path = build_path("sites", ("site_id", site_id), "events")
        return self._list(
            path, Event, limit=limit, starting_after=starting_after, ending_before=ending_before
        )

    async def get(self, site_id: str, event_id: str) -> Event:
        path = build_path("sites", ("site_id", site_id), "events", ("event_id", event_id))
        return await self._fetch(ApiRequest("GET", path, "entity"), Event)

    async def create(
        self, site_id: str, name: str, *, currency: Currency | NotGiven = NOT_GIVEN
    ) -> Event:
        """Create an event; the API's default currency is "dollar". Never sent twice."""
        path = build_path("sites", ("site_id", site_id), "events")
        body: dict[str, Any] = {"name": check_name("name", name, MAX_NAME)}
        if not isinstance(currency, NotGiven):
            body["currency"] = check_choice("currency", currency, CURRENCIES)
        return await self._fetch(
            ApiRequest("POST", path, "entity", json=body, creates=True), Event
        )

    async def update(
        self,
        site_id: str,
        event_id: str,
        *,
        name: str | NotGiven = NOT_GIVEN,
        currency: Currency | NotGiven = NOT_GIVEN,
    ) -> Event:
        """Change the name and/or currency; only what you pass is sent."""
        path = build_path("sites", ("site_id", site_id), "events", ("event_id", event_id))
        body: dict[str, Any] = {}
        if not isinstance(name, NotGiven):
            body["name"] = check_name("name", name, MAX_NAME)
        if not isinstance(currency, NotGiven):
            body["currency"] = check_choice("currency", currency, CURRENCIES)
        if not body:
            raise ValidationError("update", {}, "at least one of name, currency")
        return await self._fetch(ApiRequest("POST", path, "entity", json=body), Event)

    async def delete(self, site_id: str, event_id: str) -> Deleted:
        path = build_path("sites", ("site_id", site_id), "events", ("event_id", event_id))
        return await self._delete(ApiRequest("DELETE", path, "entity"), event_id)

    async def delete_by_name(self, site_id: str, name: str) -> Deleted:
        """Delete every event of the site with this name (the newer API's call)."""
        path = build_path("sites", ("site_id", site_id), "events")
        query = (("name", check_name("name", name, MAX_NAME)),)
        return await self._delete(ApiRequest("DELETE", path, "entity", query=query), None)

    async def set_currency(self, site_id: str, name: str, currency: Currency) -> Event:
        """Set the currency of the event(s) with this name (the newer API's call)."""
        path = build_path("sites", ("site_id", site_id), "events", "currency")
        body = {
            "name": check_name("name", name, MAX_NAME),
            "currency": check_choice("currency", currency, CURRENCIES),
        }
        return await self._fetch(ApiRequest("POST", path, "entity", json=body), Event)

    async def wipe(self, site_id: str, event_id: str) -> Wiped:
        """Retired by Fathom: warns DeprecationWarning, and raises GoneError on the 410."""
        path = build_path(
            "sites", ("site_id", site_id), "events", ("event_id", event_id), "data"
        )
        return await self._wipe(ApiRequest("DELETE", path, "entity"), "events.wipe()")
