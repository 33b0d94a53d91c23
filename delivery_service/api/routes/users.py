"""Users, for staff picking whom to enroll."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from sqlalchemy import or_, select

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.domain.errors import Forbidden
from delivery_service.schemas import UserOut
from delivery_service.services.access import members_of_classes_taught_by
from delivery_service.services.classes import user_out
from delivery_service.storage.models import User

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=list[UserOut])
async def list_users(
    user: CurrentUser,
    runtime: RuntimeDep,
    role: Literal["admin", "teacher", "student"] | None = None,
) -> list[UserOut]:
    """Staff only, by username: an admin lists everyone; a teacher themselves and the members
    (students and co-teachers) of the classes they teach. Optionally one role only."""
    if not user.is_staff:
        raise Forbidden("only teachers and admins list users")
    stmt = select(User).order_by(User.username)
    if user.role != "admin":
        stmt = stmt.where(or_(User.id == user.user_id, members_of_classes_taught_by(user)))
    if role is not None:
        stmt = stmt.where(User.role == role)
    async with runtime.sessions() as s:
        return [user_out(u) for u in await s.scalars(stmt)]
