"""`/sites`: list, get, create, update, delete (and the retired wipe)."""

from __future__ import annotations

from typing import Any

from .._exceptions import ValidationError
from .._models import Deleted, Site, Wiped
from .._pagination import AsyncPager
from .._protocol import ApiRequest, build_path
from .._types import MULTI_DOMAIN_OPTIONS, NOT_GIVEN, SHARING, MultiDomainOption, NotGiven, Sharing
from .._validation import check_bool, check_choice, check_name, check_timezone
from ._base import Resource

MAX_NAME = 255
MAX_PASSWORD = 255


def _site_body(
    *,
    name: object,
    sharing: object,
    share_password: object,
    timezone: object,
    multi_domain: object,
    multi_domain_option: object,
    creating: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if not isinstance(name, NotGiven):
        body["name"] = check_name("name", name, MAX_NAME)
    if not isinstance(sharing, NotGiven):
        body["sharing"] = check_choice("sharing", sharing, SHARING)
    if not isinstance(share_password, NotGiven):
        # On update, a password alone changes the password of an already private site.
        if body.get("sharing", "none" if creating else "private") != "private":
            raise ValidationError(
                "share_password", "<redacted>", "only with sharing='private'"
            )
        if not isinstance(share_password, str) or not share_password:
            raise ValidationError("share_password", "<redacted>", "a non-empty string")
        if len(share_password) > MAX_PASSWORD:
            raise ValidationError(
                "share_password", "<redacted>", f"at most {MAX_PASSWORD} characters"
            )
        body["share_password"] = share_password
    elif body.get("sharing") == "private":
        raise ValidationError(
            "share_password", None, "a password when sharing='private' (the API requires one)"
        )
    if not isinstance(timezone, NotGiven):
        body["timezone"] = check_timezone(timezone)
    if not isinstance(multi_domain, NotGiven):
        body["multi_domain"] = check_bool("multi_domain", multi_domain)
    if not isinstance(multi_domain_option, NotGiven):
        if body.get("multi_domain") is False or (creating and "multi_domain" not in body):
            raise ValidationError(
                "multi_domain_option", multi_domain_option, "only with multi_domain=True"
            )
        body["multi_domain_option"] = check_choice(
            "multi_domain_option", multi_domain_option, MULTI_DOMAIN_OPTIONS
        )
    elif body.get("multi_domain") is True:
        raise ValidationError(
            "multi_domain_option",
            None,
            f"one of {', '.join(MULTI_DOMAIN_OPTIONS)} when multi_domain=True",
        )
    return body


class SitesResource(Resource):
    def list(
        self,
        *,
        limit: int = 100,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> AsyncPager[Site]:
        """Sites the token can see: `await` it for one page, `async for` for all of them.

        Pages are 100 sites by default (each request counts against your quota).
        `ending_before` walks backward, newest first.
        """
        return self._list(
            "/sites", Site, limit=limit, starting_after=starting_after, ending_before=ending_before
        )

    async def get(self, site_id: str) -> Site:
        return await self._fetch(
            ApiRequest("GET", build_path("sites", ("site_id", site_id)), "entity"), Site
        )

    async def create(
        self,
        name: str,
        *,
        sharing: Sharing | NotGiven = NOT_GIVEN,
        share_password: str | NotGiven = NOT_GIVEN,
        timezone: str | NotGiven = NOT_GIVEN,
        multi_domain: bool | NotGiven = NOT_GIVEN,
        multi_domain_option: MultiDomainOption | NotGiven = NOT_GIVEN,
    ) -> Site:
        """Create a site (needs an admin token).

        Never sent twice: if the connection fails after the request may have reached
        Fathom, you get `APIConnectionError(outcome_unknown=True)` instead of a
        possible duplicate.
        """
        body = _site_body(
            name=name,
            sharing=sharing,
            share_password=share_password,
            timezone=timezone,
            multi_domain=multi_domain,
            multi_domain_option=multi_domain_option,
            creating=True,
        )
        return await self._fetch(
            ApiRequest("POST", "/sites", "entity", json=body, creates=True), Site
        )

    async def update(
        self,
        site_id: str,
        *,
        name: str | NotGiven = NOT_GIVEN,
        sharing: Sharing | NotGiven = NOT_GIVEN,
        share_password: str | NotGiven = NOT_GIVEN,
        timezone: str | NotGiven = NOT_GIVEN,
        multi_domain: bool | NotGiven = NOT_GIVEN,
        multi_domain_option: MultiDomainOption | NotGiven = NOT_GIVEN,
    ) -> Site:
        """Change only the fields you pass; the others stay as they are."""
        path = build_path("sites", ("site_id", site_id))
        body = _site_body(
            name=name,
            sharing=sharing,
            share_password=share_password,
            timezone=timezone,
            multi_domain=multi_domain,
            multi_domain_option=multi_domain_option,
            creating=False,
        )
        if not body:
            raise ValidationError("update", {}, "at least one field to change")
        return await self._fetch(ApiRequest("POST", path, "entity", json=body), Site)

    async def delete(self, site_id: str) -> Deleted:
        """Delete a site and all its data; Fathom cannot undo this."""
        path = build_path("sites", ("site_id", site_id))
        return await self._delete(ApiRequest("DELETE", path, "entity"), site_id)

    async def wipe(self, site_id: str) -> Wiped:
        """Retired by Fathom: warns DeprecationWarning, and raises GoneError on the 410."""
        path = build_path("sites", ("site_id", site_id), "data")
        return await self._wipe(ApiRequest("DELETE", path, "entity"), "sites.wipe()")
