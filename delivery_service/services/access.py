"""Who may manage or see a class and its sessions (source 002's validate_websocket_access).

Admins may do everything; a teacher manages the classes they teach; a student sees the classes
they are enrolled in and their sessions. One module, so REST and WebSocket agree.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.domain.errors import Forbidden, NotFound
from delivery_service.services.security import Principal
from delivery_service.storage.models import Class, ClassStudent, ClassTeacher, GroupSession


async def teaches(s: AsyncSession, user_id: uuid.UUID, class_id: uuid.UUID) -> bool:
    return await s.get(ClassTeacher, (class_id, user_id)) is not None


async def enrolled(s: AsyncSession, user_id: uuid.UUID, class_id: uuid.UUID) -> bool:
    return await s.get(ClassStudent, (class_id, user_id)) is not None


def manages(principal: Principal, *, teaches_class: bool) -> bool:
    """The rule itself, for a caller that read whether the principal teaches the class."""
    return principal.role == "admin" or (principal.role == "teacher" and teaches_class)


def sees(principal: Principal, *, teaches_class: bool, enrolled_in_class: bool) -> bool:
    return manages(principal, teaches_class=teaches_class) or (
        principal.role == "student" and enrolled_in_class
    )


async def can_manage(s: AsyncSession, principal: Principal, class_id: uuid.UUID) -> bool:
    teacher = principal.role == "teacher"
    return manages(
        principal, teaches_class=teacher and await teaches(s, principal.user_id, class_id)
    )


async def can_see(s: AsyncSession, principal: Principal, class_id: uuid.UUID) -> bool:
    if await can_manage(s, principal, class_id):
        return True
    return principal.role == "student" and await enrolled(s, principal.user_id, class_id)


async def class_for(
    s: AsyncSession, principal: Principal, class_id: uuid.UUID, *, manage: bool, lock: bool = False
) -> Class:
    """Load a class the caller may see (404 otherwise) and, with manage=True, manage (403)."""
    stmt = select(Class).where(Class.id == class_id).execution_options(populate_existing=True)
    klass = await s.scalar(stmt.with_for_update() if lock else stmt)
    if klass is None:
        raise NotFound("class", class_id)
    require_visible(await can_see(s, principal, class_id), principal, "class", class_id)
    if manage and not await can_manage(s, principal, class_id):
        raise Forbidden("only the class's teachers or an admin can do this")
    return klass


async def session_for(
    s: AsyncSession,
    principal: Principal,
    session_id: uuid.UUID,
    *,
    manage: bool,
    lock: bool = False,
) -> GroupSession:
    stmt = (
        select(GroupSession)
        .where(GroupSession.id == session_id)
        .execution_options(populate_existing=True)
    )
    session = await s.scalar(stmt.with_for_update() if lock else stmt)
    if session is None:
        raise NotFound("session", session_id)
    require_visible(await can_see(s, principal, session.class_id), principal, "session", session_id)
    if manage and not await can_manage(s, principal, session.class_id):
        raise Forbidden("only the class's teachers or an admin can manage this session")
    return session


def require_visible(visible: bool, principal: Principal, what: str, ident: uuid.UUID) -> None:
    """Staff of other classes are told no (403); students are not told it exists (404)."""
    if visible:
        return
    if principal.is_staff:
        raise Forbidden(f"this {what} belongs to a class you do not teach")
    raise NotFound(what, ident)


AttemptAccess = Literal["owner", "read", "staff"]


def attempt_access(
    attempt_id: uuid.UUID, owner_id: uuid.UUID | None, principal: Principal, access: AttemptAccess
) -> None:
    """Whether `principal` may act on the attempt owned by `owner_id` (None: no such attempt).
    Read: its candidate or staff; owner: its candidate only; staff: staff only. Others are not
    told it exists."""
    owner = owner_id is not None and owner_id == principal.user_id
    if owner_id is None or not (owner or principal.is_staff):
        raise NotFound("attempt", attempt_id)
    if access == "owner" and not owner:
        raise Forbidden("only the candidate can do this in their own attempt")
    if access == "staff" and not principal.is_staff:
        raise Forbidden("only a proctor or an admin can do this")
