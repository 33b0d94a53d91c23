"""Classes: create, update, archive, enroll and remove students, add and remove teachers."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Conflict, Forbidden, NotFound
from delivery_service.domain.principal import Principal
from delivery_service.domain.sessions import class_transition, require_active_class
from delivery_service.read_models.classes import ClassOut, UserOut
from delivery_service.schemas.classes import ClassIn, ClassUpdate, MemberIn
from delivery_service.services.access import class_for
from delivery_service.storage.database import db_now
from delivery_service.storage.models import (
    Class,
    ClassStudent,
    ClassTeacher,
    GroupSession,
    User,
)


class ClassService:
    def __init__(self, *, db: async_sessionmaker[AsyncSession]) -> None:
        self._db = db

    async def create(self, principal: Principal, spec: ClassIn) -> ClassOut:
        if not principal.is_staff:
            raise Forbidden("only teachers and admins create classes")
        async with self._db() as s, s.begin():
            now = await db_now(s)
            klass = Class(
                name=spec.name,
                description=spec.description,
                state="active",
                created_by=principal.user_id,
                created_at=now,
            )
            s.add(klass)
            await s.flush()
            teacher_ids = set(spec.teacher_ids)
            if principal.role == "teacher":
                teacher_ids.add(principal.user_id)
            for teacher_id in teacher_ids:
                await _require_role(s, teacher_id, "teacher")
                s.add(ClassTeacher(class_id=klass.id, user_id=teacher_id))
            await s.flush()
            return await self._out(s, klass, principal)

    async def list_classes(self, principal: Principal) -> list[ClassOut]:
        async with self._db() as s:
            stmt = select(Class).order_by(Class.name)
            if principal.role == "teacher":
                stmt = stmt.join(ClassTeacher, ClassTeacher.class_id == Class.id).where(
                    ClassTeacher.user_id == principal.user_id
                )
            elif principal.role == "student":
                stmt = stmt.join(ClassStudent, ClassStudent.class_id == Class.id).where(
                    ClassStudent.user_id == principal.user_id
                )
            return [await self._out(s, k, principal) for k in await s.scalars(stmt)]

    async def get(self, principal: Principal, class_id: uuid.UUID) -> ClassOut:
        async with self._db() as s:
            return await self._out(
                s, await class_for(s, principal, class_id, manage=False), principal
            )

    async def update(
        self, principal: Principal, class_id: uuid.UUID, spec: ClassUpdate
    ) -> ClassOut:
        async with self._db() as s, s.begin():
            klass = await class_for(s, principal, class_id, manage=True, lock=True)
            require_active_class(klass.state)
            if spec.name is not None:
                klass.name = spec.name
            if spec.description is not None:
                klass.description = spec.description
            klass.updated_at = await db_now(s)
            await s.flush()
            return await self._out(s, klass, principal)

    async def archive(self, principal: Principal, class_id: uuid.UUID) -> ClassOut:
        async with self._db() as s, s.begin():
            klass = await class_for(s, principal, class_id, manage=True, lock=True)
            running = await s.scalar(
                select(GroupSession.id).where(
                    GroupSession.class_id == class_id, GroupSession.state == "in_progress"
                )
            )
            if running is not None:
                raise Conflict(
                    "session_in_progress",
                    "a session of this class is in progress; complete it first",
                    session_id=str(running),
                )
            class_transition(klass, "archive")
            klass.updated_at = await db_now(s)
            await s.flush()
            return await self._out(s, klass, principal)

    async def enroll(self, principal: Principal, class_id: uuid.UUID, member: MemberIn) -> ClassOut:
        async with self._db() as s, s.begin():
            klass = await class_for(s, principal, class_id, manage=True, lock=True)
            require_active_class(klass.state)
            student = await _resolve(s, member, "student")
            if await s.get(ClassStudent, (class_id, student.id)) is not None:
                raise Conflict(
                    "already_enrolled",
                    f"{student.username} is already enrolled",
                    user_id=str(student.id),
                )
            s.add(ClassStudent(class_id=class_id, user_id=student.id, enrolled_at=await db_now(s)))
            await s.flush()
            return await self._out(s, klass, principal)

    async def remove_student(
        self, principal: Principal, class_id: uuid.UUID, student_id: uuid.UUID
    ) -> ClassOut:
        async with self._db() as s, s.begin():
            klass = await class_for(s, principal, class_id, manage=True, lock=True)
            require_active_class(klass.state)
            removed = await s.execute(
                delete(ClassStudent).where(
                    ClassStudent.class_id == class_id, ClassStudent.user_id == student_id
                )
            )
            if not removed.rowcount:  # type: ignore[attr-defined]
                raise NotFound("enrollment", student_id)
            return await self._out(s, klass, principal)

    async def add_teacher(
        self, principal: Principal, class_id: uuid.UUID, member: MemberIn
    ) -> ClassOut:
        async with self._db() as s, s.begin():
            klass = await class_for(s, principal, class_id, manage=True, lock=True)
            require_active_class(klass.state)
            teacher = await _resolve(s, member, "teacher")
            if await s.get(ClassTeacher, (class_id, teacher.id)) is None:
                s.add(ClassTeacher(class_id=class_id, user_id=teacher.id))
                await s.flush()
            return await self._out(s, klass, principal)

    async def remove_teacher(
        self, principal: Principal, class_id: uuid.UUID, teacher_id: uuid.UUID
    ) -> ClassOut:
        async with self._db() as s, s.begin():
            klass = await class_for(s, principal, class_id, manage=True, lock=True)
            removed = await s.execute(
                delete(ClassTeacher).where(
                    ClassTeacher.class_id == class_id, ClassTeacher.user_id == teacher_id
                )
            )
            if not removed.rowcount:  # type: ignore[attr-defined]
                raise NotFound("teacher", teacher_id)
            return await self._out(s, klass, principal)

    @staticmethod
    async def _out(s: AsyncSession, klass: Class, principal: Principal) -> ClassOut:
        """The class; its rosters for staff only (a student does not learn who their
        classmates are from the API)."""
        if not principal.is_staff:
            return ClassOut(
                id=klass.id,
                name=klass.name,
                description=klass.description,
                state=klass.state,
                teachers=None,
                students=None,
                created_at=klass.created_at,
                updated_at=klass.updated_at,
            )
        teachers = await s.scalars(
            select(User)
            .join(ClassTeacher, ClassTeacher.user_id == User.id)
            .where(ClassTeacher.class_id == klass.id)
            .order_by(User.username)
        )
        students = await s.scalars(
            select(User)
            .join(ClassStudent, ClassStudent.user_id == User.id)
            .where(ClassStudent.class_id == klass.id)
            .order_by(User.username)
        )
        return ClassOut(
            id=klass.id,
            name=klass.name,
            description=klass.description,
            state=klass.state,
            teachers=[user_out(u) for u in teachers],
            students=[user_out(u) for u in students],
            created_at=klass.created_at,
            updated_at=klass.updated_at,
        )


def user_out(user: User) -> UserOut:
    return UserOut(id=user.id, username=user.username, role=user.role)


async def _resolve(s: AsyncSession, member: MemberIn, role: str) -> User:
    if member.user_id is not None:
        user = await s.get(User, member.user_id)
    else:
        user = await s.scalar(select(User).where(User.username == member.username))
    if user is None:
        raise NotFound(role, member.user_id or member.username)
    if user.role != role:
        raise Conflict(f"not_a_{role}", f"{user.username} is a {user.role}, not a {role}")
    return user


async def _require_role(s: AsyncSession, user_id: uuid.UUID, role: str) -> None:
    await _resolve(s, MemberIn(user_id=user_id), role)
