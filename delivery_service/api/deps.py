"""FastAPI dependencies: the runtime, and who is calling."""

from __future__ import annotations

from typing import Annotated

import jwt
from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from delivery_service.api.errors import ApiError
from delivery_service.domain.principal import Principal
from delivery_service.runtime import Runtime

bearer = HTTPBearer(auto_error=False, description="the access_token from /api/v1/auth/login")


# Dependencies are `async def` although neither awaits: FastAPI runs a plain `def` dependency
# in a worker thread, and two thread hand-offs per request cost more than the rest of a small
# route (a notice: 0.7 of its 3.4 ms of CPU).


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def signed_in_user(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise ApiError(401, "unauthorized", "a bearer token is required")
    try:
        principal = runtime.tokens.verify(credentials.credentials)
    except jwt.InvalidTokenError as exc:
        raise ApiError(401, "unauthorized", f"the token is not valid: {exc}") from exc
    # A signature proves who the token was issued to, not that it still speaks for them.
    if not await runtime.revocations.allows(principal):
        raise ApiError(401, "token_revoked", "this sign-in was revoked; sign in again")
    return principal


SignedInUser = Annotated[Principal, Depends(signed_in_user)]


async def current_user(principal: SignedInUser) -> Principal:
    """A signed-in user who may act: one who must first choose a new password may only do
    that (and read who they are), not take a test with a password someone else knows."""
    if principal.password_change_required:
        raise ApiError(
            403,
            "password_change_required",
            "choose a new password first (POST /api/v1/auth/password)",
        )
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


async def no_store(response: Response) -> None:
    """For answers that carry a secret (a token, a one-time link, a generated password): no
    browser or proxy cache may keep them."""
    response.headers["Cache-Control"] = "no-store"


NoStore = Depends(no_store)
