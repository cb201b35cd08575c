"""The endpoints: input validation, permissions, and answers in the API's shapes.

Each handler reads the token (set by the app's pipeline), checks what it may see
(a site it cannot read is a 404; one it can read but not change answers 400 with a
message about permission) and validates the body as the API does (400 with
`{"errors": {field: [message]}}`). Bodies come as JSON or form fields alike.
Handlers never deal with rate limits or faults: that is the pipeline's job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from ._errors import PERMISSION_MESSAGE, ApiError
from ._reports import current_visitors, parse_aggregation, run_aggregation
from ._state import BODY, STATE, TOKEN
from ._store import Event, Milestone, Site, Token

__all__ = ["ROUTES"]

_T = TypeVar("_T")

CURRENCIES = (
    "dollar",
    "pound",
    "euro",
    "yuan",
    "peso",
    "shekel",
    "yen",
    "won",
    "hryvnia",
    "franc",
    "rupee",
    "integer",
    "none",
)
SHARING = ("none", "private", "public")
MULTI_DOMAIN_OPTIONS = ("combined", "separate")


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def _deleted(id: str, kind: str) -> web.Response:
    return _json({"id": id, "object": kind, "deleted": True})


# ------------------------------------------------------------------ permissions


def _can_read(token: Token, site: Site) -> bool:
    if site.account_id != token.account_id:
        return False
    allowed = {"*", "all-sites-readonly", f"read:{site.id}", f"manage:{site.id}"}
    return not allowed.isdisjoint(token.abilities)


def _can_write(token: Token, site: Site) -> bool:
    """Only asked about sites the token can read (so of its own account)."""
    return not {"*", f"manage:{site.id}"}.isdisjoint(token.abilities)


def _require_admin(token: Token) -> None:
    if "*" not in token.abilities:
        raise ApiError(400, PERMISSION_MESSAGE)


def _site(request: web.Request, site_id: str | None = None, *, write: bool = False) -> Site:
    """The site named in the path (or `site_id`), if this token may see it."""
    site = request.app[STATE].store.sites.get(site_id or request.match_info["site_id"])
    token = request[TOKEN]
    if site is None or not _can_read(token, site):
        raise ApiError(404, "Site not found")
    if write and not _can_write(token, site):
        raise ApiError(400, PERMISSION_MESSAGE)
    return site


def _event(request: web.Request, site: Site) -> Event:
    event = request.app[STATE].store.events.get(request.match_info["event_id"])
    if event is None or event.site_id != site.id:
        raise ApiError(404, "Event not found")
    return event


def _milestone(request: web.Request, site: Site) -> Milestone:
    milestone = request.app[STATE].store.milestones.get(request.match_info["milestone_id"])
    if milestone is None or milestone.site_id != site.id:
        raise ApiError(404, "Milestone not found")
    return milestone


# ------------------------------------------------------------------- validation


class _Form:
    """Reads fields of a JSON or form body, collecting Laravel-style messages."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.errors: dict[str, list[str]] = {}

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def string(
        self, name: str, *, required: bool = False, max_length: int | None = None
    ) -> str | None:
        label = name.replace("_", " ")
        value = self.body.get(name)
        if value is None or value == "":
            if required:
                self.fail(name, f"The {label} field is required.")
            return None
        if not isinstance(value, str):
            self.fail(name, f"The {label} field must be a string.")
            return None
        if max_length is not None and len(value) > max_length:
            self.fail(name, f"The {label} field must not be greater than {max_length} characters.")
            return None
        return value

    def choice(self, name: str, options: Sequence[str], *, required: bool = False) -> str | None:
        value = self.string(name, required=required)
        if value is not None and value not in options:
            self.fail(name, f"The selected {name.replace('_', ' ')} is invalid.")
            return None
        return value

    def boolean(self, name: str) -> bool | None:
        value = self.body.get(name)
        if value is None or value == "":
            return None
        if value in (True, 1, "1", "true"):
            return True
        if value in (False, 0, "0", "false"):
            return False
        self.fail(name, f"The {name.replace('_', ' ')} field must be true or false.")
        return None

    def timezone(self, name: str) -> str | None:
        value = self.string(name)
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: too long a name
                self.fail(name, f"The {name} field must be a valid timezone.")
                return None
        return value

    def date(self, name: str, *, required: bool = False) -> str | None:
        value = self.string(name, required=required)
        if value is not None:
            try:
                parsed = datetime.strptime(value, "%Y-%m-%d")
            except ValueError:
                parsed = None
            if parsed is None or parsed.strftime("%Y-%m-%d") != value:
                self.fail(name, f"The {name.replace('_', ' ')} field must match the format Y-m-d.")
                return None
        return value

    def check(self) -> None:
        if self.errors:
            raise ApiError(400, errors=self.errors)


def _paginate(
    request: web.Request, items: Sequence[_T], key: Callable[[_T], str], to_api: Callable[[_T], Any]
) -> web.Response:
    """A list page: `starting_after` walks forwards, `ending_before` backwards."""
    query = request.query
    limit = 10
    if query.get("limit"):
        try:
            limit = int(query["limit"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise ApiError.invalid("limit", "The limit must be between 1 and 100.")
    after, before = query.get("starting_after"), query.get("ending_before")
    if after and before:
        raise ApiError(400, "You may only use one of starting_after or ending_before")
    ids = [key(item) for item in items]
    window: list[_T]
    if after:
        if after not in ids:
            raise ApiError.invalid("starting_after", f"No object with id {after!r}.")
        window = list(items[ids.index(after) + 1 :])
    elif before:
        if before not in ids:
            raise ApiError.invalid("ending_before", f"No object with id {before!r}.")
        window = list(reversed(items[: ids.index(before)]))
    else:
        window = list(items)
    return _json(
        {
            "object": "list",
            "url": request.path,
            "has_more": len(window) > limit,
            "data": [to_api(item) for item in window[:limit]],
        }
    )


def _chronological(items: Iterable[_T], seq: Callable[[_T], int]) -> list[_T]:
    return sorted(items, key=seq)


# -------------------------------------------------------------------- account


async def get_account(request: web.Request) -> web.Response:
    _require_admin(request[TOKEN])  # FACTS.md: the account needs a `*` token
    state = request.app[STATE]
    return _json(state.store.accounts[request[TOKEN].account_id].to_api())


async def get_token(request: web.Request) -> web.Response:
    return _json(request[TOKEN].to_api())


# ---------------------------------------------------------------------- sites


async def list_sites(request: web.Request) -> web.Response:
    token = request[TOKEN]
    sites = [s for s in request.app[STATE].store.sites.values() if _can_read(token, s)]
    return _paginate(request, _chronological(sites, lambda s: s.seq), lambda s: s.id, Site.to_api)


def _site_settings(form: _Form, current: Site | None) -> dict[str, Any]:
    """Validate the site fields present in the form against the site they would make."""
    changes: dict[str, Any] = {}
    name = form.string("name", required=current is None, max_length=255)
    if name is not None:
        changes["name"] = name
    sharing = form.choice("sharing", SHARING)
    if sharing is not None:
        changes["sharing"] = sharing
    password = form.string("share_password", max_length=255)
    if password is not None:
        changes["share_password"] = password
    tz = form.timezone("timezone")
    if tz is not None:
        changes["timezone"] = tz
    multi_domain = form.boolean("multi_domain")
    if multi_domain is not None:
        changes["multi_domain"] = multi_domain
    option = form.choice("multi_domain_option", MULTI_DOMAIN_OPTIONS)
    if option is not None:
        changes["multi_domain_option"] = option

    final_sharing = changes.get("sharing", current.sharing if current else "none")
    final_password = changes.get("share_password", current.share_password if current else None)
    if final_sharing == "private" and not final_password and "share_password" not in form.errors:
        form.fail("share_password", "The share password field is required when sharing is private.")
    if final_sharing != "private":
        changes["share_password"] = None
    final_multi = changes.get("multi_domain", current.multi_domain if current else None)
    final_option = changes.get(
        "multi_domain_option", current.multi_domain_option if current else None
    )
    if final_multi and final_option is None and "multi_domain_option" not in form.errors:
        form.fail(
            "multi_domain_option",
            "The multi domain option field is required when multi domain is true.",
        )
    form.check()
    return changes


async def create_site(request: web.Request) -> web.Response:
    _require_admin(request[TOKEN])
    state = request.app[STATE]
    changes = _site_settings(_Form(request[BODY]), None)
    site = state.store.add_site(account_id=request[TOKEN].account_id, **changes)
    state.store.created.append(site)
    return _json(site.to_api())


async def get_site(request: web.Request) -> web.Response:
    return _json(_site(request).to_api())


async def update_site(request: web.Request) -> web.Response:
    site = _site(request, write=True)
    for name, value in _site_settings(_Form(request[BODY]), site).items():
        setattr(site, name, value)
    return _json(site.to_api())


async def delete_site(request: web.Request) -> web.Response:
    site = _site(request)
    _require_admin(request[TOKEN])
    request.app[STATE].store.delete_site(site.id)
    return _deleted(site.id, "site")


async def gone(request: web.Request) -> web.Response:
    raise ApiError(410, "This endpoint has been retired and is no longer available.")


# --------------------------------------------------------------------- events


async def list_events(request: web.Request) -> web.Response:
    site = _site(request)
    events = _chronological(request.app[STATE].store.site_events(site.id), lambda e: e.seq)
    return _paginate(request, events, lambda e: e.id, Event.to_api)


async def create_event(request: web.Request) -> web.Response:
    site = _site(request, write=True)
    form = _Form(request[BODY])
    name = form.string("name", required=True, max_length=255)
    currency = form.choice("currency", CURRENCIES)
    form.check()
    assert name is not None
    store = request.app[STATE].store
    event = store.add_event(site.id, name, currency=currency or "dollar")
    store.created.append(event)
    return _json(event.to_api(with_currency=True))


async def get_event(request: web.Request) -> web.Response:
    return _json(_event(request, _site(request)).to_api())


async def update_event(request: web.Request) -> web.Response:
    event = _event(request, _site(request, write=True))
    form = _Form(request[BODY])
    name = form.string("name", max_length=255)
    currency = form.choice("currency", CURRENCIES)
    form.check()
    if name is not None:
        event.name = name
    if currency is not None:
        event.currency = currency
    return _json(event.to_api(with_currency=True))


async def delete_event(request: web.Request) -> web.Response:
    event = _event(request, _site(request, write=True))
    del request.app[STATE].store.events[event.id]
    return _deleted(event.id, "event")


def _events_named(request: web.Request, site: Site, name: str) -> list[Event]:
    events = [e for e in request.app[STATE].store.site_events(site.id) if e.name == name]
    if not events:
        raise ApiError(404, "Event not found")
    return events


async def delete_events_by_name(request: web.Request) -> web.Response:
    site = _site(request, write=True)
    form = _Form(dict(request.query))
    name = form.string("name", required=True)
    form.check()
    assert name is not None
    store = request.app[STATE].store
    for event in _events_named(request, site, name):
        del store.events[event.id]
    return _json({"object": "event", "name": name, "deleted": True})


async def set_event_currency(request: web.Request) -> web.Response:
    site = _site(request, write=True)
    form = _Form(request[BODY])
    name = form.string("name", required=True, max_length=255)
    currency = form.choice("currency", CURRENCIES, required=True)
    form.check()
    assert name is not None
    assert currency is not None
    for event in _events_named(request, site, name):
        event.currency = currency
    return _json({"object": "event", "name": name, "currency": currency})


# ----------------------------------------------------------------- milestones


async def list_milestones(request: web.Request) -> web.Response:
    site = _site(request)
    milestones = _chronological(request.app[STATE].store.site_milestones(site.id), lambda m: m.seq)
    return _paginate(request, milestones, lambda m: m.id, Milestone.to_api)


def _milestone_fields(request: web.Request) -> tuple[str, str]:
    form = _Form(request[BODY])
    name = form.string("name", required=True, max_length=30)
    date = form.date("milestone_date", required=True)
    form.check()
    assert name is not None
    assert date is not None
    return name, date


async def create_milestone(request: web.Request) -> web.Response:
    site = _site(request, write=True)
    name, date = _milestone_fields(request)
    store = request.app[STATE].store
    milestone = store.add_milestone(site.id, name, date)
    store.created.append(milestone)
    return _json(milestone.to_api(), status=201)


async def get_milestone(request: web.Request) -> web.Response:
    return _json(_milestone(request, _site(request)).to_api())


async def update_milestone(request: web.Request) -> web.Response:
    milestone = _milestone(request, _site(request, write=True))
    milestone.name, milestone.milestone_date = _milestone_fields(request)
    return _json(milestone.to_api())


async def delete_milestone(request: web.Request) -> web.Response:
    milestone = _milestone(request, _site(request, write=True))
    del request.app[STATE].store.milestones[milestone.id]
    return _deleted(milestone.id, "milestone")


# -------------------------------------------------------------------- reports


async def aggregations(request: web.Request) -> web.Response:
    state = request.app[STATE]
    query = parse_aggregation(request.query)
    event_ids: tuple[str, ...] = ()
    if query.entity == "pageview":
        site = _site(request, query.entity_id or query.site_id)
    elif query.entity_id is not None:
        event = state.store.events.get(query.entity_id)
        if event is None or (query.site_id is not None and query.site_id != event.site_id):
            raise ApiError(404, "Event not found")
        site = _site(request, event.site_id)
        event_ids = (event.id,)
    else:
        site = _site(request, query.site_id)
        event_ids = tuple(
            e.id for e in state.store.site_events(site.id) if e.name == query.entity_name
        )
    rows = run_aggregation(
        state.store.db,
        query,
        site_id=site.id,
        event_ids=event_ids,
        zone_name=query.timezone or site.timezone or "UTC",
        now=state.store.wall_clock(),
    )
    return _json(rows)


async def get_current_visitors(request: web.Request) -> web.Response:
    form = _Form(dict(request.query))
    site_id = form.string("site_id", required=True)
    detailed = form.boolean("detailed")
    form.check()
    site = _site(request, site_id)
    state = request.app[STATE]
    return _json(
        current_visitors(
            state.store.db, site.id, now=state.store.wall_clock(), detailed=bool(detailed)
        )
    )


_SITE = "/v1/sites/{site_id}"
ROUTES: tuple[tuple[str, str, Callable[[web.Request], Any]], ...] = (
    ("GET", "/v1/account", get_account),
    ("GET", "/v1/token", get_token),
    ("GET", "/v1/sites", list_sites),
    ("POST", "/v1/sites", create_site),
    ("GET", _SITE, get_site),
    ("POST", _SITE, update_site),
    ("DELETE", _SITE, delete_site),
    ("DELETE", f"{_SITE}/data", gone),
    ("GET", f"{_SITE}/events", list_events),
    ("POST", f"{_SITE}/events", create_event),
    ("DELETE", f"{_SITE}/events", delete_events_by_name),
    ("POST", f"{_SITE}/events/currency", set_event_currency),
    ("GET", f"{_SITE}/events/{{event_id}}", get_event),
    ("POST", f"{_SITE}/events/{{event_id}}", update_event),
    ("DELETE", f"{_SITE}/events/{{event_id}}", delete_event),
    ("DELETE", f"{_SITE}/events/{{event_id}}/data", gone),
    ("GET", f"{_SITE}/milestones", list_milestones),
    ("POST", f"{_SITE}/milestones", create_milestone),
    ("GET", f"{_SITE}/milestones/{{milestone_id}}", get_milestone),
    ("POST", f"{_SITE}/milestones/{{milestone_id}}", update_milestone),
    ("DELETE", f"{_SITE}/milestones/{{milestone_id}}", delete_milestone),
    ("GET", "/v1/aggregations", aggregations),
    ("GET", "/v1/current_visitors", get_current_visitors),
)
