"""`/sites/{site_id}/milestones`: dated notes on a site's graphs."""

from __future__ import annotations

from datetime import date

from .._models import Deleted, Milestone
from .._pagination import AsyncPager
from .._protocol import ApiRequest, build_path
from .._telemetry import public_call
from .._validation import check_milestone_date, check_name
from ._base import Resource

MAX_NAME = 30


class MilestonesResource(Resource):
    """`/sites/{site_id}/milestones` (the entity bucket, 2000 calls an hour).

    Any call may also raise `AuthenticationError` (a bad token), `RateLimitError` and
    `ServerError` (beyond the retries), `APIConnectionError` (no answer),
    `APIResponseError` (an answer that is not a milestone) and `ClientClosedError`.
    """

    def list(
        self,
        site_id: str,
        *,
        limit: int = 100,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> AsyncPager[Milestone]:
        """A site's milestones: `await` for one page, `async for` for all.

        `GET /sites/{site_id}/milestones?limit=...&starting_after=...` (or
        `ending_before=...`).

        Raises:
            ValidationError: at the call, before any request: a blank `site_id`,
                `limit` outside 1 to 100, a blank cursor, or both cursors.
            NotFoundError: on `await` or while iterating: no such site, or the token
                cannot see it.
            AcquireTimeoutError: on `await` or while iterating, when no slot of the
                entity bucket came within `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id), "milestones")
        return self._list(
            "milestones.list", path, Milestone, limit=limit, starting_after=starting_after,
            ending_before=ending_before,
        )

    @public_call("milestones.get", "entity")
    async def get(self, site_id: str, milestone_id: str) -> Milestone:
        """One milestone (`GET /sites/{site_id}/milestones/{milestone_id}`).

        Raises:
            ValidationError: a blank `site_id` or `milestone_id` (before any request).
            NotFoundError: no such site or milestone, or the token cannot see the site.
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path(
            "sites", ("site_id", site_id), "milestones", ("milestone_id", milestone_id)
        )
        return await self._fetch(ApiRequest("GET", path, "entity"), Milestone)

    @public_call("milestones.create", "entity")
    async def create(self, site_id: str, name: str, milestone_date: date | str) -> Milestone:
        """Create a milestone (`POST /sites/{site_id}/milestones`; the API answers 201).

        The name is up to 30 characters, the date a `date` or `YYYY-MM-DD`. Never
        sent twice: if the connection fails after the request may have reached
        Fathom, you get `APIConnectionError(outcome_unknown=True)` instead of a
        possible duplicate.

        Raises:
            ValidationError: before any request: a blank `site_id`, a blank name or
                one over 30 characters, a date that is not a `date` or `YYYY-MM-DD`
                (a `datetime` too: milestones are whole days).
            NotFoundError: no such site, or the token cannot see it.
            PermissionDeniedError: the token may read the site but not manage it
                (it needs `*` or `manage:{site_id}`).
            APIConnectionError: the request may have reached Fathom but no answer
                came (`outcome_unknown=True`); list the milestones before trying again.
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path("sites", ("site_id", site_id), "milestones")
        body = {
            "name": check_name("name", name, MAX_NAME),
            "milestone_date": check_milestone_date("milestone_date", milestone_date),
        }
        return await self._fetch(
            ApiRequest("POST", path, "entity", json=body, creates=True), Milestone
        )

    @public_call("milestones.update", "entity")
    async def update(
        self, site_id: str, milestone_id: str, *, name: str, milestone_date: date | str
    ) -> Milestone:
        """Replace name and date (`POST /sites/{site_id}/milestones/{milestone_id}`).

        The API needs both on every update, so both are required here.

        Raises:
            ValidationError: before any request: a blank id, a blank or too long
                name, a date that is not a `date` or `YYYY-MM-DD`.
            NotFoundError: no such site or milestone, or the token cannot see the site.
            PermissionDeniedError: the token may read the site but not manage it.
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path(
            "sites", ("site_id", site_id), "milestones", ("milestone_id", milestone_id)
        )
        body = {
            "name": check_name("name", name, MAX_NAME),
            "milestone_date": check_milestone_date("milestone_date", milestone_date),
        }
        return await self._fetch(ApiRequest("POST", path, "entity", json=body), Milestone)

    @public_call("milestones.delete", "entity")
    async def delete(self, site_id: str, milestone_id: str) -> Deleted:
        """Delete a milestone (`DELETE /sites/{site_id}/milestones/{milestone_id}`).

        Raises:
            ValidationError: a blank `site_id` or `milestone_id` (before any request).
            NotFoundError: no such site or milestone (already deleted?), or the token
                cannot see the site.
            PermissionDeniedError: the token may read the site but not manage it.
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        path = build_path(
            "sites", ("site_id", site_id), "milestones", ("milestone_id", milestone_id)
        )
        return await self._delete(ApiRequest("DELETE", path, "entity"), milestone_id)
