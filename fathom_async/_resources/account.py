"""`/account` and `/token`: who the token belongs to, and what it may do."""

from __future__ import annotations

from .._models import Account, TokenInfo
from .._protocol import ApiRequest
from ._base import Resource


class AccountResource(Resource):
    async def get(self) -> Account:
        """The account that owns the token (`GET /account`)."""
        return await self._fetch(ApiRequest("GET", "/account", "entity"), Account)


class TokenResource(Resource):
    async def get(self) -> TokenInfo:
        """The token's name and abilities (`GET /token`); the API never returns the secret."""
        return await self._fetch(ApiRequest("GET", "/token", "entity"), TokenInfo)
