"""The facts the availability rules (domain/availability.py) need about a student and a test,
read in the caller's transaction beside whatever it loads, the check of a test's access
password, and which classes an author may give a test to.

A student's active classes decide the audience; any proctored session using the test reserves
it (a session paper is never self-paced, whatever became of its session).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Collection, Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.domain import availability as rules
from delivery_service.domain.errors import DomainError, Forbidden, NotFound
from delivery_service.domain.principal import Principal
from delivery_service.domain.sessions import require_active_class
from delivery_service.live.guesses import PasswordGuesses
from delivery_service.security.passwords import hash_password, verify_password
from delivery_service.services.access import membership
from delivery_service.storage.models import Class, ClassStudent, ClassTeacher, GroupSession


class TooManyGuesses(DomainError):
    """Too many wrong access passwords from this student at this test (429, `Retry-After`)."""

    code = "too_many_attempts"


# ---- the facts --------------------------------------------------------------------------------


async def student_classes(s: AsyncSession, user_id: uuid.UUID) -> frozenset[str]:
    """The active classes a student is enrolled in, as the strings `assigned_to` holds."""
    rows = await s.scalars(
        select(ClassStudent.class_id)
        .join(Class, Class.id == ClassStudent.class_id)
        .where(ClassStudent.user_id == user_id, Class.state == "active")
    )
    return frozenset(str(class_id) for class_id in rows)


async def taught_classes(s: AsyncSession, user_id: uuid.UUID) -> frozenset[str]:
    """The classes a teacher teaches, as the strings `assigned_to` holds."""
    rows = await s.scalars(select(ClassTeacher.class_id).where(ClassTeacher.user_id == user_id))
    return frozenset(str(class_id) for class_id in rows)


async def seen_classes(s: AsyncSession, principal: Principal) -> frozenset[str] | None:
    """Which of a test's audience `principal` is shown (None: all of it, for an admin): a
    teacher the classes they teach, a student their active classes. Other classes' ids are
    their staff's business."""
    if principal.role == "admin":
        return None
    if principal.is_staff:
        return await taught_classes(s, principal.user_id)
    return await student_classes(s, principal.user_id)


async def reservation_of(
    s: AsyncSession, test_id: uuid.UUID, user_id: uuid.UUID
) -> rules.Reservation | None:
    """Whether any proctored session uses the test (None: none), naming one of the student's
    own classes' sessions if there is one."""
    rows = (
        await s.execute(
            select(GroupSession.id, *membership(GroupSession.class_id))
            .where(GroupSession.test_id == test_id)
            .order_by(GroupSession.scheduled_at.desc()),
            {"user_id": user_id},
        )
    ).all()
    if not rows:
        return None
    return rules.Reservation(next((sid for sid, _, enrolled in rows if enrolled), None))


async def reserved_tests(s: AsyncSession) -> frozenset[uuid.UUID]:
    """Every test a proctored session uses (for listings)."""
    return frozenset(await s.scalars(select(GroupSession.test_id).distinct()))


# ---- the access password ----------------------------------------------------------------------


async def hash_access_password(password: str, *, cost: int) -> str:
    """scrypt is slow on purpose: off the event loop."""
    return await asyncio.to_thread(hash_password, password, cost=cost)


class AccessPasswords:
    """Hashing and checking tests' access passwords, off the event loop (scrypt is slow on
    purpose), with each student's guesses at a test counted before the check
    (live/guesses.py): past the limit, `too_many_attempts` with `Retry-After`."""

    def __init__(self, guesses: PasswordGuesses, *, hash_cost: int) -> None:
        self._guesses = guesses
        self._cost = hash_cost

    async def hash(self, password: str) -> str:
        return await hash_access_password(password, cost=self._cost)

    async def check(self, test_id: uuid.UUID, user_id: uuid.UUID, given: str, stored: str) -> bool:
        wait = await self._guesses.admit(test_id, user_id)
        if wait > 0:
            raise TooManyGuesses(
                "too many wrong access passwords for this test; try again later",
                retry_after_seconds=math.ceil(wait),
            )
        matches = await asyncio.to_thread(verify_password, given, stored)
        if matches:
            await self._guesses.succeeded(test_id, user_id)
        return matches


async def require_assignable(
    s: AsyncSession,
    principal: Principal,
    class_ids: Iterable[uuid.UUID],
    *,
    before: Collection[str] = (),
) -> None:
    """Classes newly given a test must exist and be active, and a teacher may give a test only
    to classes they teach (an admin to any). Classes it was already assigned to may stay."""
    added = [c for c in class_ids if str(c) not in before]
    if not added:
        return
    rows = {
        klass.id: (klass, teaches)
        for klass, teaches, _ in (
            await s.execute(
                select(Class, *membership(Class.id)).where(Class.id.in_(added)),
                {"user_id": principal.user_id},
            )
        ).all()
    }
    for class_id in added:
        if class_id not in rows:
            raise NotFound("class", class_id)
        klass, teaches = rows[class_id]
        if principal.role != "admin" and not teaches:
            raise Forbidden(
                "a teacher may assign a test only to classes they teach", class_id=str(class_id)
            )
        require_active_class(klass.state)
