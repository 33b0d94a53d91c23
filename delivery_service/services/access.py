"""Who may manage or see a class, its sessions and its candidates' attempts (source 002's
validate_websocket_access).

Admins may do everything; a teacher manages the classes they teach; a student sees the classes
they are enrolled in and their sessions. An attempt belongs to its session's class, or, taken
self-paced, to every class its candidate is enrolled in: its candidate and the teachers of that
class may see it, and only those teachers (and admins) may act on it as staff. One module, so
every REST route, socket and query decides on the same rule.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import ColumnElement, Label, and_, bindparam, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import BindParameter

from delivery_service.domain.errors import Forbidden, NotFound
from delivery_service.services.security import Principal
from delivery_service.storage.models import (
    Attempt,
    Class,
    ClassStudent,
    ClassTeacher,
    GroupSession,
    User,
)


def manages(principal: Principal, *, teaches_class: bool) -> bool:
    """The rule itself, for a caller that read whether the principal teaches the class."""
    return principal.role == "admin" or (principal.role == "teacher" and teaches_class)


def sees(principal: Principal, *, teaches_class: bool, enrolled_in_class: bool) -> bool:
    return manages(principal, teaches_class=teaches_class) or (
        principal.role == "student" and enrolled_in_class
    )


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


def teaches_attempt(
    session_id: ColumnElement[uuid.UUID | None] | InstrumentedAttribute[uuid.UUID | None],
    candidate_id: ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID],
    user: BindParameter[uuid.UUID] | None = None,
) -> ColumnElement[bool]:
    """Whether `user` (by default the `user_id` parameter) teaches the class an attempt belongs
    to: its session's class, or for a self-paced attempt a class its candidate is enrolled in.
    A condition on the attempt's columns, for a statement that loads or lists attempts."""
    user = user if user is not None else bindparam("user_id")
    via_session = exists().where(
        GroupSession.id == session_id,
        ClassTeacher.class_id == GroupSession.class_id,
        ClassTeacher.user_id == user,
    )
    via_enrolment = exists().where(
        ClassStudent.user_id == candidate_id,
        ClassTeacher.class_id == ClassStudent.class_id,
        ClassTeacher.user_id == user,
    )
    return or_(
        and_(session_id.is_not(None), via_session), and_(session_id.is_(None), via_enrolment)
    )


def attempts_managed_by(
    principal: Principal,
    session_id: ColumnElement[uuid.UUID | None] | InstrumentedAttribute[uuid.UUID | None],
    candidate_id: ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID],
) -> ColumnElement[bool] | None:
    """The condition a staff listing of attempts filters by (None: an admin sees them all).
    Only for staff: a candidate's listings filter by their own id."""
    if principal.role == "admin":
        return None
    return teaches_attempt(session_id, candidate_id, bindparam("managing_user", principal.user_id))


def members_of_classes_taught_by(principal: Principal) -> ColumnElement[bool]:
    """A condition on users: a student or teacher of a class `principal` teaches."""
    taught = select(ClassTeacher.class_id).where(ClassTeacher.user_id == principal.user_id)
    return or_(
        User.id.in_(select(ClassStudent.user_id).where(ClassStudent.class_id.in_(taught))),
        User.id.in_(select(ClassTeacher.user_id).where(ClassTeacher.class_id.in_(taught))),
    )


def sessions_taught_by(principal: Principal) -> ColumnElement[bool]:
    """A condition on sessions: one of a class `principal` teaches."""
    return exists().where(
        ClassTeacher.class_id == GroupSession.class_id,
        ClassTeacher.user_id == principal.user_id,
    )


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
    attempt_id: uuid.UUID,
    owner_id: uuid.UUID | None,
    principal: Principal,
    access: AttemptAccess,
    *,
    teaches: bool = False,
) -> None:
    """Whether `principal` may act on the attempt owned by `owner_id` (None: no such attempt),
    `teaches` saying whether they teach its class (`teaches_attempt`; only read for teachers).
    Read: its candidate or its class's staff; owner: its candidate only; staff: its class's
    staff only. Staff of other classes are refused (403); students are not told it exists."""
    owner = owner_id is not None and owner_id == principal.user_id
    staff = manages(principal, teaches_class=teaches)
    if owner_id is None or not (owner or staff):
        if owner_id is not None and principal.is_staff:
            raise Forbidden("this attempt belongs to a class you do not teach")
        raise NotFound("attempt", attempt_id)
    if access == "owner" and not owner:
        raise Forbidden("only the candidate can do this in their own attempt")
    if access == "staff" and not staff:
        raise Forbidden("only a proctor or an admin can do this")


async def check_attempt(
    s: AsyncSession,
    principal: Principal,
    attempt_id: uuid.UUID,
    attempt: Attempt | None,
    access: AttemptAccess,
) -> Attempt:
    """`attempt_access` for an attempt row already loaded (None: not found): whether the
    principal teaches its class is read only when the decision needs it."""
    teaches = False
    if attempt is not None and needs_teaches(principal, access):
        teaches = bool(
            await s.scalar(
                _TEACHES_ATTEMPT, {"attempt_id": attempt.id, "user_id": principal.user_id}
            )
        )
    attempt_access(
        attempt_id, attempt.user_id if attempt else None, principal, access, teaches=teaches
    )
    if attempt is None:  # pragma: no cover - refused just above
        raise NotFound("attempt", attempt_id)
    return attempt


def needs_teaches(principal: Principal, access: AttemptAccess) -> bool:
    """Whether deciding `access` for `principal` needs `teaches_attempt` read: only a teacher's
    read or staff access does (an admin manages all, a student none, an owner is the owner)."""
    return principal.role == "teacher" and access != "owner"


_TEACHES_ATTEMPT = select(teaches_attempt(Attempt.session_id, Attempt.user_id)).where(
    Attempt.id == bindparam("attempt_id")
)
