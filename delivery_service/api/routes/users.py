"""Users, for staff picking whom to enroll."""

from __future__ import annotations

from fastapi import APIRouter

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.domain.principal import Role
from delivery_service.read_models.classes import UserOut
from delivery_service.services.classes import user_out

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=list[UserOut])
async def list_users(
    user: CurrentUser, runtime: RuntimeDep, role: Role | None = None
) -> list[UserOut]:
    """Staff only, by username: an admin lists everyone; a teacher themselves and the members
    (students and co-teachers) of the classes they teach. Optionally one role only."""
    return [user_out(u) for u in await runtime.accounts.list_users(user, role=role)]
