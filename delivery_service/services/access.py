"""Who may manage or see a class, its sessions and its candidates' attempts, in SQL: the
statements that load a row together with whether the caller teaches or is enrolled in its class,
and the conditions listings filter by. The decision on what was loaded is the pure rule in
domain/access.py (re-exported here for the callers that import it from this module). One rule,
so every REST route, socket and query decides the same way.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, Label, and_, bindparam, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import BindParameter

from delivery_service.domain.access import (
    AttemptAccess,
    attempt_access,
    class_access,
    manages,
    manages_all,
    needs_teaches,
    require_visible,
    sees,
    session_access,
)
from delivery_service.domain.errors import NotFound
from delivery_service.domain.principal import Principal
from delivery_service.storage.models import (
    Attempt,
    Class,
    ClassStudent,
    ClassTeacher,
    GroupSession,
    User,
)

__all__ = [
    "AttemptAccess",
    "attempt_access",
    "attempts_managed_by",
    "check_attempt",
    "class_for",
    "manages",
    "members_of_classes_taught_by",
    "membership",
    "needs_teaches",
    "require_visible",
    "sees",
    "session_for",
    "sessions_taught_by",
    "teaches_attempt",
]


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
    class_access(
        principal,
        class_id,
        teaches_class=teaches_class,
        enrolled_in_class=enrolled_in_class,
        manage=manage,
    )
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
    session_access(
        principal,
        session_id,
        teaches_class=teaches_class,
        enrolled_in_class=enrolled_in_class,
        manage=manage,
    )
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
    if manages_all(principal):
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


_TEACHES_ATTEMPT = select(teaches_attempt(Attempt.session_id, Attempt.user_id)).where(
    Attempt.id == bindparam("attempt_id")
)
