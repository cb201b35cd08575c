"""`/sites`: list, get, create, update, delete (and the retired wipe)."""

from __future__ import annotations

from typing import Any

from .._exceptions import ValidationError
from .._models import Deleted, Site, Wiped
from .._pagination import AsyncPager
from .._protocol import ApiRequest, build_path
from .._telemetry import public_call
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
    """`/sites`: the sites the token can see (the entity bucket, 2000 calls an hour).

    Any call may also raise `AuthenticationError` (a bad token), `RateLimitError` and
    `ServerError` (beyond the retries), `APIConnectionError` (no answer),
    `APIResponseError` (an answer that is not a site) and `ClientClosedError`.
    """

    def list(
        self,
        *,
        limit: int = 100,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> AsyncPager[Site]:
        """Sites the token can see: `await` it for one page, `async for` for all of them.

        `GET /sites?limit=...&starting_after=...` (or `ending_before=...`). Pages are 100
        sites by default (each request counts against your quota). `ending_before`
        walks backward, newest first.

        Raises:
            ValidationError: at the call, before any request: `limit` outside 1 to 100,
                a blank cursor, or both cursors (the API takes one).
            AcquireTimeoutError: on `await` or while iterating, when no slot of the
                entity bucket came within `acquire_timeout`; nothing was sent.
        """
        return self._list(
            "sites.list", "/sites", Site,
            limit=limit, starting_after=starting_after, ending_before=ending_before,
        )

    @public_call("sites.get", "entity")
    async def get(self, site_id: str) -> Site:
        """One site (`GET /sites/{site_id}`).

        Raises:
            ValidationError: `site_id` is not a non-blank string (before any request).
            NotFoundError: no such site, or the token cannot see it (the API answers
                404 for both, so a token's reach is not revealed).
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        return await self._fetch(
            ApiRequest("GET", build_path("sites", ("site_id", site_id)), "entity"), Site
        )

    @public_call("sites.create", "entity")
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
        """Create a site (`POST /sites`; needs a whole-account `*` token).

        Never sent twice: if the connection fails after the request may have reached
        Fathom, you get `APIConnectionError(outcome_unknown=True)` instead of a
        possible duplicate.

        Raises:
            ValidationError: before any request, for what the API would refuse: a
                blank name or one over 255 characters, an unknown `sharing`,
                `sharing="private"` without a `share_password` (or a password
                without it), `multi_domain_option` without `multi_domain=True` (or
                the reverse), an unknown timezone.
            PermissionDeniedError: the token is not a whole-account (`*`) token.
            APIConnectionError: the request may have reached Fathom but no answer
                came (`outcome_unknown=True`); list the sites before trying again.
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
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

    @public_call("sites.update", "entity")
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
        """Change a site (`POST /sites/{site_id}`): only the fields you pass are sent.

        Raises:
            ValidationError: before any request: nothing to change, or a value
                `create()` would refuse (a `share_password` alone is accepted: it
                changes the password of a site that is already private).
            NotFoundError: no such site, or the token cannot see it.
            PermissionDeniedError: the token may read the site but not manage it
                (it needs `*` or `manage:{site_id}`).
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
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

    @public_call("sites.delete", "entity")
    async def delete(self, site_id: str) -> Deleted:
        """Delete a site and all its data (`DELETE /sites/{site_id}`); Fathom cannot undo this.

        Raises:
            ValidationError: `site_id` is not a non-blank string (before any request).
            NotFoundError: no such site (already deleted?), or the token cannot see it.
            PermissionDeniedError: the token is not a whole-account (`*`) token.
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id))
        return await self._delete(ApiRequest("DELETE", path, "entity"), site_id)

    @public_call("sites.wipe", "entity")
    async def wipe(self, site_id: str) -> Wiped:
        """Wipe a site's data (`DELETE /sites/{site_id}/data`): retired by Fathom.

        Warns `DeprecationWarning`, then sends the request so that the API's own
        answer decides (kept for code written against the older documentation).

        Raises:
            GoneError: always, in practice: the endpoint answers 410 Gone.
            ValidationError: `site_id` is not a non-blank string (before any request).
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id), "data")
        return await self._wipe(ApiRequest("DELETE", path, "entity"), "sites.wipe()")
