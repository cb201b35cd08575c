"""`/current_visitors`: who is on the site right now (reports bucket, 10 per minute)."""

from __future__ import annotations

from .._models import CurrentVisitors
from .._protocol import ApiRequest, encode_id
from .._validation import check_bool
from ._base import Resource


class CurrentVisitorsResource(Resource):
    async def get(self, site_id: str, *, detailed: bool = False) -> CurrentVisitors:
        """The current visitor count; `detailed=True` adds top pages and referrers."""
        encode_id("site_id", site_id)
        query = [("site_id", site_id)]
        if check_bool("detailed", detailed):
            query.append(("detailed", "true"))
        return await self._fetch(
            ApiRequest("GET", "/current_visitors", "reports", query=tuple(query)),
            CurrentVisitors,
        )
