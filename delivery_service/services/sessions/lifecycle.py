"""A group session's life cycle (source 002): created, its waiting room opened, started (the
global timer), completed by a proctor or by the sweeper once nobody's time runs, cancelled or
deleted."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.domain import sessions as session_rules
from delivery_service.domain.attempt_machine import OPEN_STATES
from delivery_service.domain.errors import Conflict, Forbidden, NotFound
from delivery_service.domain.principal import Principal
from delivery_service.domain.timing import iso
from delivery_service.live.keys import SESSION_MEMBER, proctor_channel, session_channel
from delivery_service.read_models.sessions import SessionOut
from delivery_service.schemas.sessions import SessionIn
from delivery_service.services.access import class_for, session_for
from delivery_service.services.after_commit import run_safely
from delivery_service.services.sessions.context import (
    SessionContext,
    Work,
    session_out,
    session_test,
)
from delivery_service.storage.database import db_now
from delivery_service.storage.models import (
    Attempt,
    ClassStudent,
    ClassTeacher,
    GroupSession,
    Participant,
    Test,
)


class SessionLifecycle:
    def __init__(self, context: SessionContext) -> None:
        self._context = context

    # ---- creating and reading ------------------------------------------------------------

    async def create(self, principal: Principal, spec: SessionIn) -> SessionOut:
        async with self._context.db() as s, s.begin():
            klass = await class_for(s, principal, spec.class_id, manage=True)
            session_rules.require_active_class(klass.state)
            if await s.get(Test, spec.test_id) is None:
                raise NotFound("test", spec.test_id)
            now = await db_now(s)
            session = GroupSession(
                class_id=spec.class_id,
                test_id=spec.test_id,
                title=spec.title,
                state="scheduled",
                scheduled_at=spec.scheduled_at,
                created_by=principal.user_id,
                created_at=now,
            )
            s.add(session)
            await s.flush()
            return await session_out(s, session)

    async def list_sessions(self, principal: Principal) -> list[SessionOut]:
        """Admins: all; teachers: their classes'; students: their classes' (as my-sessions)."""
        async with self._context.db() as s:
            stmt = select(GroupSession).order_by(GroupSession.scheduled_at.desc())
            if principal.role == "teacher":
                stmt = stmt.join(
                    ClassTeacher, ClassTeacher.class_id == GroupSession.class_id
                ).where(ClassTeacher.user_id == principal.user_id)
            elif principal.role == "student":
                stmt = stmt.join(
                    ClassStudent, ClassStudent.class_id == GroupSession.class_id
                ).where(ClassStudent.user_id == principal.user_id)
            return [await session_out(s, row) for row in await s.scalars(stmt)]

    async def get(self, principal: Principal, session_id: uuid.UUID) -> SessionOut:
        async with self._context.db() as s:
            return await session_out(s, await session_for(s, principal, session_id, manage=False))

    # ---- life cycle -----------------------------------------------------------------------

    async def open_waiting_room(self, principal: Principal, session_id: uuid.UUID) -> SessionOut:
        async with self._context.db() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True, lock=True)
                now = await db_now(s)
                if session.state == "scheduled":
                    session_rules.require_waiting_room_due(
                        session.scheduled_at, self._context.open_lead, now
                    )
                session_rules.session_transition(session, "open_waiting_room")
                session.updated_at = now
                await s.flush()
                out = await session_out(s, session)
            await self._context.broadcast_status(out, now, "waiting_room_opened")
            return out

    async def start(self, principal: Principal, session_id: uuid.UUID) -> SessionOut:
        """Start the global timer; every connected student gets an attempt ending at their
        personal end. Students who join later get one when they join."""
        work = Work()
        async with self._context.db() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True, lock=True)
                test = await session_test(s, session)
                now = await db_now(s)
                online = await self._context.presence.online(str(session_id), now)
                enrolled = set(
                    str(u)
                    for u in await s.scalars(
                        select(ClassStudent.user_id).where(
                            ClassStudent.class_id == session.class_id
                        )
                    )
                )
                connected = sorted(online & enrolled)
                if session.state == "waiting" and not connected:
                    raise Conflict(
                        "no_students_connected", "no student is connected; nobody could start"
                    )
                session_rules.session_transition(session, "start")
                session.started_at = now
                session.ends_at = session_rules.personal_end(now, test.time_limit_seconds)
                session.updated_at = now
                assignments: dict[str, dict[str, str]] = {}
                for user_id in connected:
                    attempt = await self._context.open_attempt(
                        s, session, test, uuid.UUID(user_id), now, work
                    )
                    if attempt is not None and attempt.deadline is not None:
                        assignments[user_id] = {
                            "attempt_id": str(attempt.id),
                            "deadline": iso(attempt.deadline),
                        }
                await s.flush()
                out = await session_out(s, session)
                self._schedule_session_end(work, session)
            await self._context.run_after(work)
            data = {
                "session_id": str(session_id),
                "started_at": iso(now),
                "ends_at": iso(session.ends_at),
                "connected_students": connected,
                "assignments": assignments,
                "at": iso(now),
            }
            await run_safely(
                self._context.bus.publish(session_channel(str(session_id)), "session_started", data)
            )
            await self._context.broadcast_status(out, now, None)
            return out

    async def complete(
        self, principal: Principal, session_id: uuid.UUID, *, reason: str | None = None
    ) -> SessionOut:
        """Force-complete: every open attempt ends now with its saved responses scored."""
        work = Work()
        async with self._context.db() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True, lock=True)
                now = await db_now(s)
                await self._finish_session(s, session, now, work)
                await self._context.staff_action(
                    s, principal, "session_force_completed", session, now, reason
                )
                await s.flush()
                out = await session_out(s, session)
            await self._context.run_after(work)
            await self._announce_completed(out, now)
            return out

    async def cancel(self, principal: Principal, session_id: uuid.UUID) -> SessionOut:
        async with self._context.db() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True, lock=True)
                session_rules.session_transition(session, "cancel")
                now = await db_now(s)
                session.updated_at = now
                await self._context.staff_action(
                    s, principal, "session_cancelled", session, now, None
                )
                await s.flush()
                out = await session_out(s, session)
            await self._context.broadcast_status(out, now, None)
            return out

    async def delete(self, principal: Principal, session_id: uuid.UUID) -> None:
        if principal.role != "admin":
            raise Forbidden("only an admin can delete a session")
        async with self._context.db() as s, s.begin():
            session = await session_for(s, principal, session_id, manage=True, lock=True)
            if session.state == "in_progress":
                raise Conflict(
                    "session_in_progress", "a session in progress cannot be deleted; complete it"
                )
            now = await db_now(s)
            details = {"title": session.title, "state": session.state}
            await self._context.staff_action(
                s, principal, "session_deleted", session, now, None, details
            )
            await s.execute(delete(Participant).where(Participant.session_id == session_id))
            await s.delete(session)

    async def complete_due(self, session_id: str) -> bool:
        """The sweeper's check after the global end: complete the session once no attempt runs.
        Students with extra time keep the session open until their own end."""
        ident = uuid.UUID(session_id)
        work = Work()
        async with self._context.db() as s:
            async with s.begin():
                session = await s.scalar(
                    select(GroupSession)
                    .where(GroupSession.id == ident)
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
                if session is None or session.state != "in_progress" or session.ends_at is None:
                    await run_safely(self._context.timers.cancel(SESSION_MEMBER + session_id))
                    return False
                now = await db_now(s)
                open_attempts = await s.execute(
                    select(Attempt.state, Attempt.deadline).where(
                        Attempt.session_id == ident, Attempt.state.in_(OPEN_STATES)
                    )
                )
                due = session_rules.completion_due(
                    ends_at=session.ends_at,
                    open_attempts=[(state, deadline) for state, deadline in open_attempts],
                    grace=self._context.grace,
                    now=now,
                )
                if due is not None:
                    later = due
                    work.after.append(
                        lambda: self._context.timers.schedule_due(
                            SESSION_MEMBER + session_id, later
                        )
                    )
                    completed = False
                else:
                    await self._finish_session(s, session, now, work)
                    out = await session_out(s, session)
                    completed = True
            await self._context.run_after(work)
            if completed:
                await self._announce_completed(out, now)
            return completed

    async def running_ends(self) -> list[tuple[str, datetime]]:
        async with self._context.db() as s:
            rows = await s.execute(
                select(GroupSession.id, GroupSession.ends_at).where(
                    GroupSession.state == "in_progress"
                )
            )
            return [(SESSION_MEMBER + str(i), end) for i, end in rows if end is not None]

    # ---- internals --------------------------------------------------------------------------

    async def _finish_session(
        self, s: AsyncSession, session: GroupSession, now: datetime, work: Work
    ) -> None:
        session_rules.session_transition(session, "complete")
        session.completed_at = now
        session.updated_at = now
        for attempt in await s.scalars(
            select(Attempt)
            .where(Attempt.session_id == session.id, Attempt.state.in_(("in_progress", "paused")))
            .with_for_update()
        ):
            work.loaded.append(
                await self._context.attempts.lifecycle.end_for_session(s, attempt, now)
            )
        member = SESSION_MEMBER + str(session.id)
        work.after.append(lambda: self._context.timers.cancel(member))

    def _schedule_session_end(self, work: Work, session: GroupSession) -> None:
        if session.ends_at is None:  # pragma: no cover - set by start just before
            return
        member, due = SESSION_MEMBER + str(session.id), session.ends_at + self._context.grace
        work.after.append(lambda: self._context.timers.schedule_due(member, due))

    async def _announce_completed(self, out: SessionOut, now: datetime) -> None:
        data = {"session_id": str(out.id), "completed_at": iso(now), "at": iso(now)}
        for channel in (session_channel(str(out.id)), proctor_channel(str(out.id))):
            await run_safely(self._context.bus.publish(channel, "session_completed", data))
        await self._context.broadcast_status(out, now, None)
