"""Who may manage or see a class and its sessions (source 002's validate_websocket_access).

Admins may do everything; a teacher manages the classes they teach; a student sees the classes
they are enrolled in and their sessions. One module, so REST and WebSocket agree.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import ColumnElement, Label, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import BindParameter

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
    found = (
        await s.execute(_CLASS_LOCKED if lock else _CLASS, _keys(principal, class_id=class_id))
    ).one_or_none()
    if found is None:
        raise NotFound("class", class_id)
    klass, teaches_class, enrolled_in_class = found
    visible = sees(principal, teaches_class=teaches_class, enrolled_in_class=enrolled_in_class)
    require_visible(visible, principal, "class", class_id)
    if manage and not manages(principal, teaches_class=teaches_class):
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
    """Load a session the caller may see (404/403 as `require_visible`) and, with manage=True,
    manage (403): the row and whether the caller teaches or is enrolled, in one statement."""
    statement = _SESSION_LOCKED if lock else _SESSION
    found = (await s.execute(statement, _keys(principal, session_id=session_id))).one_or_none()
    if found is None:
        raise NotFound("session", session_id)
    session, teaches_class, enrolled_in_class = found
    visible = sees(principal, teaches_class=teaches_class, enrolled_in_class=enrolled_in_class)
    require_visible(visible, principal, "session", session_id)
    if manage and not manages(principal, teaches_class=teaches_class):
        raise Forbidden("only the class's teachers or an admin can manage this session")
    return session


def membership(
    class_id: ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID],
) -> tuple[Label[bool], Label[bool]]:
    """Whether the `user_id` parameter teaches, and is enrolled in, the class `class_id`
    names: columns for a statement that loads the class's row (or its session's) beside them,
    so an access check costs no statement of its own."""
    user: BindParameter[uuid.UUID] = bindparam("user_id")
    teaches_it = exists().where(ClassTeacher.class_id == class_id, ClassTeacher.user_id == user)
    enrolled_in_it = exists().where(ClassStudent.class_id == class_id, ClassStudent.user_id == user)
    return teaches_it.label("teaches"), enrolled_in_it.label("enrolled")


def _keys(principal: Principal, **ids: uuid.UUID) -> dict[str, uuid.UUID]:
    return {"user_id": principal.user_id, **ids}


# Built once: staff actions and reads check access on every call.
_SESSION = (
    select(GroupSession, *membership(GroupSession.class_id))
    .where(GroupSession.id == bindparam("session_id"))
    .execution_options(populate_existing=True)
)
_SESSION_LOCKED = _SESSION.with_for_update(of=GroupSession)
_CLASS = (
    select(Class, *membership(Class.id))
    .where(Class.id == bindparam("class_id"))
    .execution_options(populate_existing=True)
)
_CLASS_LOCKED = _CLASS.with_for_update(of=Class)


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
