"""`/account` and `/token`: who the token belongs to, and what it may do."""

from __future__ import annotations

from .._models import Account, TokenInfo
from .._protocol import ApiRequest
from .._telemetry import public_call
from ._base import Resource


class AccountResource(Resource):
    """`GET /account` (the entity bucket, 2000 calls an hour).

    Like every call, it may also raise `AuthenticationError` (a bad token),
    `RateLimitError` and `ServerError` (beyond the retries), `APIConnectionError`
    (no answer) and `ClientClosedError`.
    """

    @public_call("account.get", "entity")
    async def get(self) -> Account:
        """The account that owns the token (`GET /account`).

        Raises:
            PermissionDeniedError: the token is limited to some sites; the account
                is visible only to a whole-account (`*`) token.
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        return await self._fetch(ApiRequest("GET", "/account", "entity"), Account)


class TokenResource(Resource):
    """`GET /token` (the entity bucket, 2000 calls an hour).

    Like every call, it may also raise `AuthenticationError` (a bad token),
    `RateLimitError` and `ServerError` (beyond the retries), `APIConnectionError`
    (no answer) and `ClientClosedError`.
    """

    @public_call("token.get", "entity")
    async def get(self) -> TokenInfo:
        """The token's name and abilities (`GET /token`); the API never returns the secret.

        Raises:
            AuthenticationError: the token is unknown or revoked (the one error a
                token check exists to find).
            AcquireTimeoutError: no slot of the entity bucket came within
                `acquire_timeout`; nothing was sent.
        """
        return await self._fetch(ApiRequest("GET", "/token", "entity"), TokenInfo)
