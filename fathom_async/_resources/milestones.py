"""`/sites/{site_id}/milestones`: dated notes on a site's graphs."""

from __future__ import annotations

from datetime import date

from .._models import Deleted, Milestone
from .._pagination import AsyncPager
from .._protocol import ApiRequest, build_path
from .._validation import check_milestone_date, check_name
from ._base import Resource

MAX_NAME = 30


class MilestonesResource(Resource):
    def list(
        self,
        site_id: str,
        *,
        limit: int = 100,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> AsyncPager[Milestone]:
        """A site's milestones: `await` for one page, `async for` for all."""
        path = build_path("sites", ("site_id", site_id), "milestones")
        return self._list(
            path, Milestone, limit=limit, starting_after=starting_after,
            ending_before=ending_before,
        )

    async def get(self, site_id: str, milestone_id: str) -> Milestone:
        path = build_path(
            "sites", ("site_id", site_id), "milestones", ("milestone_id", milestone_id)
        )
        return await self._fetch(ApiRequest("GET", path, "entity"), Milestone)

    async def create(self, site_id: str, name: str, milestone_date: date | str) -> Milestone:
        """Create a milestone (name up to 30 characters, date `YYYY-MM-DD`). Never sent twice."""
        path = build_path("sites", ("site_id", site_id), "milestones")
        body = {
            "name": check_name("name", name, MAX_NAME),
            "milestone_date": check_milestone_date("milestone_date", milestone_date),
        }
        return await self._fetch(
            ApiRequest("POST", path, "entity", json=body, creates=True), Milestone
        )

    async def update(
        self, site_id: str, milestone_id: str, *, name: str, milestone_date: date | str
    ) -> Milestone:
        """Replace name and date (the API needs both on every update)."""
        path = build_path(
            "sites", ("site_id", site_id), "milestones", ("milestone_id", milestone_id)
        )
        body = {
            "name": check_name("name", name, MAX_NAME),
            "milestone_date": check_milestone_date("milestone_date", milestone_date),
        }
        return await self._fetch(ApiRequest("POST", path, "entity", json=body), Milestone)

    async def delete(self, site_id: str, milestone_id: str) -> Deleted:
        path = build_path(
            "sites", ("site_id", site_id), "milestones", ("milestone_id", milestone_id)
        )
        return await self._delete(ApiRequest("DELETE", path, "entity"), milestone_id)
