"""Accounts: staff find and create users (an admin anyone; a teacher students), and an
admin looks after them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from delivery_service.api.deps import CurrentUser, NoStore, RuntimeDep
from delivery_service.domain.principal import Role
from delivery_service.read_models.users import AccountOut, account_out
from delivery_service.schemas.users import PasswordResetIn, UserIn, UserPatch
from delivery_service.services.users import Issued

router = APIRouter(prefix="/users", tags=["users"])


class IssuedOut(AccountOut):
    set_password_token: str | None = Field(
        None,
        description="only when no password was given: a one-time token for POST "
        "/api/v1/auth/password; give the user `set_password_path`. Shown once.",
    )
    set_password_path: str | None = Field(
        None, description="the candidate app's page that takes the token (same server)"
    )


class ResetOut(BaseModel):
    must_change_password: bool
    set_password_token: str | None = None
    set_password_path: str | None = None


def _link(issued: Issued) -> dict[str, str | None]:
    token = issued.set_password_token
    return {
        "set_password_token": token,
        # In the fragment: never sent to a server, so not in any access log.
        "set_password_path": f"/#set-password={token}" if token else None,
    }


@router.get("", response_model=list[AccountOut])
async def list_users(
    user: CurrentUser,
    runtime: RuntimeDep,
    response: Response,
    role: Role | None = None,
    q: Annotated[
        str | None, Query(max_length=64, description="username prefix or part of a name")
    ] = None,
    disabled: bool | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[AccountOut]:
    """Staff only, by username: an admin finds everyone; a teacher themselves and the
    members (students and co-teachers) of the classes they teach. `X-Total-Count` says how
    many match in all (for paging with `limit`/`offset`)."""
    page = await runtime.users.list_users(
        user, role=role, q=q, disabled=disabled, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(page.total)
    return [account_out(u) for u in page.users]


@router.post("", response_model=IssuedOut, status_code=201, dependencies=[NoStore])
async def create_user(body: UserIn, user: CurrentUser, runtime: RuntimeDep) -> IssuedOut:
    """An admin creates any account; a teacher students (enrolled in classes they teach).
    Without a password the answer carries a one-time set-password token, shown once."""
    issued = await runtime.users.create(user, body)
    return IssuedOut(**account_out(issued.user).model_dump(), **_link(issued))


@router.get("/{user_id}", response_model=AccountOut)
async def get_user(user_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> AccountOut:
    return account_out(await runtime.users.get(user, user_id))


@router.patch("/{user_id}", response_model=AccountOut)
async def update_user(
    user_id: uuid.UUID, body: UserPatch, user: CurrentUser, runtime: RuntimeDep
) -> AccountOut:
    """Admin: display name, role, `disabled`. A new role or disabling ends the user's
    tokens and open sockets; the last enabled admin cannot be demoted or disabled."""
    return account_out(await runtime.users.update(user, user_id, body))


@router.post("/{user_id}/password", response_model=ResetOut, dependencies=[NoStore])
async def reset_password(
    user_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep, body: PasswordResetIn | None = None
) -> ResetOut:
    """A forgotten password (admin): a temporary one the user must change at next sign-in,
    or a one-time set-password token. Ends every token the user holds."""
    password = body.password if body else None
    issued = await runtime.users.reset_password(user, user_id, password)
    return ResetOut(must_change_password=issued.user.must_change_password, **_link(issued))
