"""Proctored group sessions (source 002): life cycle, the global timer, joining, proctor actions.

The session row is the truth for the global timer; each student's attempt carries their own
deadline (their personal end). Everything is written before it is broadcast: events go to the
session channel (everyone), the proctor feed (staff only) or one participant's channel.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain import attempts as attempt_rules
from delivery_service.domain import sessions as rules
from delivery_service.domain.attempt_machine import OPEN_STATES
from delivery_service.domain.authority import require_reason
from delivery_service.domain.errors import Conflict, Forbidden, NotFound
from delivery_service.domain.timing import iso, ms
from delivery_service.live.bus import Bus
from delivery_service.live.keys import participant_channel, proctor_channel, session_channel
from delivery_service.live.presence import Presence
from delivery_service.live.timers import Timers
from delivery_service.schemas import (
    AccommodationIn,
    AuditOut,
    NoticeIn,
    ParticipantView,
    SessionIn,
    SessionOut,
    SessionStats,
    TimelineEntry,
)
from delivery_service.services.access import class_for, session_for
from delivery_service.services.after_commit import AfterCommit, run_safely
from delivery_service.services.attempts import AttemptService, HeldAttempt
from delivery_service.services.classes import user_out
from delivery_service.services.security import Principal
from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import Entry, Ledger, attempt_chain, session_chain
from delivery_service.storage.models import (
    Attempt,
    Class,
    ClassStudent,
    ClassTeacher,
    GroupSession,
    Item,
    ItemState,
    LedgerEvent,
    Participant,
    ResponseEvent,
    Test,
    User,
)

SESSION_MEMBER = "session:"


@dataclass
class Joined:
    session: SessionOut
    attempt_id: uuid.UUID | None  # the socket reads the attempt itself, after subscribing
    problem: Conflict | None = None


@dataclass(frozen=True)
class Joining:
    """A join's decision, made inside a transaction; announced once that committed."""

    attempt_id: uuid.UUID | None
    problem: Conflict | None
    online: int  # students present in the session, this one included


@dataclass
class Work:
    """Post-commit actions collected while deciding, run only once the transaction committed."""

    after: list[AfterCommit] = field(default_factory=list)
    loaded: list[HeldAttempt] = field(default_factory=list)


class SessionService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        attempts: AttemptService,
        bus: Bus,
        timers: Timers,
        presence: Presence,
        grace: timedelta,
        ledger: Ledger,
    ) -> None:
        self._ledger = ledger
        self._sessions = sessions
        self._attempts = attempts
        self._bus = bus
        self._timers = timers
        self._presence = presence
        self._grace = grace

    # ---- creating and reading ------------------------------------------------------------

    async def create(self, principal: Principal, spec: SessionIn) -> SessionOut:
        async with self._sessions() as s, s.begin():
            klass = await class_for(s, principal, spec.class_id, manage=True)
            rules.require_active_class(klass.state)
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
            return await self.session_out(s, session)

    async def list_sessions(self, principal: Principal) -> list[SessionOut]:
        """Admins: all; teachers: their classes'; students: their classes' (as my-sessions)."""
        async with self._sessions() as s:
            stmt = select(GroupSession).order_by(GroupSession.scheduled_at.desc())
            if principal.role == "teacher":
                stmt = stmt.join(
                    ClassTeacher, ClassTeacher.class_id == GroupSession.class_id
                ).where(ClassTeacher.user_id == principal.user_id)
            elif principal.role == "student":
                stmt = stmt.join(
                    ClassStudent, ClassStudent.class_id == GroupSession.class_id
                ).where(ClassStudent.user_id == principal.user_id)
            return [await self.session_out(s, row) for row in await s.scalars(stmt)]

    async def get(self, principal: Principal, session_id: uuid.UUID) -> SessionOut:
        async with self._sessions() as s:
            return await self.session_out(
                s, await session_for(s, principal, session_id, manage=False)
            )

    # ---- life cycle -----------------------------------------------------------------------

    async def open_waiting_room(self, principal: Principal, session_id: uuid.UUID) -> SessionOut:
        async with self._sessions() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True, lock=True)
                rules.session_transition(session, "open_waiting_room")
                now = await db_now(s)
                session.updated_at = now
                await s.flush()
                out = await self.session_out(s, session)
            await self._broadcast_status(out, now, "waiting_room_opened")
            return out

    async def start(self, principal: Principal, session_id: uuid.UUID) -> SessionOut:
        """Start the global timer; every connected student gets an attempt ending at their
        personal end. Students who join later get one when they join."""
        work = Work()
        async with self._sessions() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True, lock=True)
                test = await self._test(s, session)
                now = await db_now(s)
                online = await self._presence.online(str(session_id), now)
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
                rules.session_transition(session, "start")
                session.started_at = now
                session.ends_at = rules.personal_end(now, test.time_limit_seconds)
                session.updated_at = now
                assignments: dict[str, dict[str, str]] = {}
                for user_id in connected:
                    attempt = await self._open_attempt(
                        s, session, test, uuid.UUID(user_id), now, work
                    )
                    if attempt is not None and attempt.deadline is not None:
                        assignments[user_id] = {
                            "attempt_id": str(attempt.id),
                            "deadline": iso(attempt.deadline),
                        }
                await s.flush()
                out = await self.session_out(s, session)
                self._schedule_session_end(work, session)
            await self.run_after(work)
            data = {
                "session_id": str(session_id),
                "started_at": iso(now),
                "ends_at": iso(session.ends_at),
                "connected_students": connected,
                "assignments": assignments,
                "at": iso(now),
            }
            await run_safely(
                self._bus.publish(session_channel(str(session_id)), "session_started", data)
            )
            await self._broadcast_status(out, now, None)
            return out

    async def complete(
        self, principal: Principal, session_id: uuid.UUID, *, reason: str | None = None
    ) -> SessionOut:
        """Force-complete: every open attempt ends now with its saved responses scored."""
        work = Work()
        async with self._sessions() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True, lock=True)
                now = await db_now(s)
                await self._finish_session(s, session, now, work)
                await self._staff_action(
                    s, principal, "session_force_completed", session, now, reason
                )
                await s.flush()
                out = await self.session_out(s, session)
            await self.run_after(work)
            await self._announce_completed(out, now)
            return out

    async def cancel(self, principal: Principal, session_id: uuid.UUID) -> SessionOut:
        async with self._sessions() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True, lock=True)
                rules.session_transition(session, "cancel")
                now = await db_now(s)
                session.updated_at = now
                await self._staff_action(s, principal, "session_cancelled", session, now, None)
                await s.flush()
                out = await self.session_out(s, session)
            await self._broadcast_status(out, now, None)
            return out

    async def delete(self, principal: Principal, session_id: uuid.UUID) -> None:
        if principal.role != "admin":
            raise Forbidden("only an admin can delete a session")
        async with self._sessions() as s, s.begin():
            session = await session_for(s, principal, session_id, manage=True, lock=True)
            if session.state == "in_progress":
                raise Conflict(
                    "session_in_progress", "a session in progress cannot be deleted; complete it"
                )
            now = await db_now(s)
            await self._staff_action(s, principal, "session_deleted", session, now, None,
                                     {"title": session.title, "state": session.state})  # fmt: skip
            await s.execute(delete(Participant).where(Participant.session_id == session_id))
            await s.delete(session)

    async def complete_due(self, session_id: str) -> bool:
        """The sweeper's check after the global end: complete the session once no attempt runs.
        Students with extra time keep the session open until their own end."""
        ident = uuid.UUID(session_id)
        work = Work()
        async with self._sessions() as s:
            async with s.begin():
                session = await s.scalar(
                    select(GroupSession)
                    .where(GroupSession.id == ident)
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
                if session is None or session.state != "in_progress" or session.ends_at is None:
                    await run_safely(self._timers.cancel(SESSION_MEMBER + session_id))
                    return False
                now = await db_now(s)
                open_attempts = list(
                    await s.scalars(
                        select(Attempt).where(
                            Attempt.session_id == ident, Attempt.state.in_(OPEN_STATES)
                        )
                    )
                )
                waiting_on = [
                    a
                    for a in open_attempts
                    if a.state == "paused"
                    or (a.deadline is not None and a.deadline + self._grace > now)
                ]
                if now < session.ends_at + self._grace or waiting_on:
                    later = [a.deadline for a in waiting_on if a.deadline is not None]
                    due = max([session.ends_at, *later]) + self._grace
                    if due <= now:  # only paused attempts hold it open: look again soon
                        due = now + timedelta(seconds=30)
                    work.after.append(
                        lambda: self._timers.schedule_due(SESSION_MEMBER + session_id, due)
                    )
                    completed = False
                else:
                    await self._finish_session(s, session, now, work)
                    out = await self.session_out(s, session)
                    completed = True
            await self.run_after(work)
            if completed:
                await self._announce_completed(out, now)
            return completed

    async def running_ends(self) -> list[tuple[str, datetime]]:
        async with self._sessions() as s:
            rows = await s.execute(
                select(GroupSession.id, GroupSession.ends_at).where(
                    GroupSession.state == "in_progress"
                )
            )
            return [(SESSION_MEMBER + str(i), end) for i, end in rows if end is not None]

    # ---- students -------------------------------------------------------------------------

    async def join(self, principal: Principal, session_id: uuid.UUID) -> Joined:
        """A student's socket connected: mark them present, and give them their attempt (a new
        one when the session already runs and they have none yet)."""
        work = Work()
        async with self._sessions() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=False)
                if principal.role != "student":
                    raise Forbidden("only students join a session")
                participant = await s.get(Participant, (session_id, principal.user_id))
                now = await db_now(s)
                joining = await self.join_in(
                    s, principal, session_id, now, work,
                    state=session.state,
                    attempt_id=participant.attempt_id if participant else None,
                )  # fmt: skip
                out = await self.session_out(s, session)
            await self.run_after(work)
            await self.announce_join(principal, session_id, joining, now)
            return Joined(out, joining.attempt_id, joining.problem)

    async def join_in(
        self,
        s: AsyncSession,
        principal: Principal,
        session_id: uuid.UUID,
        now: datetime,
        work: Work,
        *,
        state: str,
        attempt_id: uuid.UUID | None,
    ) -> Joining:
        """The join's decision, inside the caller's transaction (a socket's greeting makes it
        beside its other reads), from the session's `state` and the student's `attempt_id` as
        the caller read them: the student's attempt id, or why they cannot have one yet. The
        caller has checked the student may see the session. After the commit: run `work`, then
        `announce_join`."""
        user = str(principal.user_id)
        if state == "in_progress" and attempt_id is not None:
            # Coming back to a running attempt writes nothing and takes no lock: a reconnect
            # storm queued on the session's row lock.
            online = await self._presence.arrive(str(session_id), user, now)
            return Joining(attempt_id, None, online)
        # A join that may write (the first one, one that may open an attempt) does so under the
        # session's row lock, so that a start at the same moment and this join agree on who
        # has an attempt; what the caller read is read again under it.
        session = await session_for(s, principal, session_id, manage=False, lock=True)
        participant = await s.get(Participant, (session_id, principal.user_id),
                                  populate_existing=True)  # fmt: skip
        online = await self._presence.arrive(str(session_id), user, now)
        problem: Conflict | None = None
        try:
            rules.require_joinable(session.state)
        except Conflict as exc:
            problem = exc
        else:
            participant = await self._participant(s, session.id, principal.user_id)
            if participant.first_joined_at is None:
                participant.first_joined_at = now
            if session.state == "in_progress" and participant.attempt_id is None:
                test = await self._test(s, session)
                try:
                    await self._open_attempt(s, session, test, principal.user_id, now, work)
                except Conflict as exc:
                    problem = exc
        await s.flush()
        return Joining(participant.attempt_id if participant else None, problem, online)

    async def announce_join(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        joining: Joining,
        now: datetime,
    ) -> None:
        """Tell the proctors a student is here, with how many are (after the join committed)."""
        attempt_id = joining.attempt_id
        await run_safely(
            self._bus.publish(
                proctor_channel(str(session_id)),
                "participant_joined",
                {
                    "session_id": str(session_id),
                    "student_id": str(principal.user_id),
                    "username": principal.username,
                    "connected_count": joining.online,
                    "attempt_id": str(attempt_id) if attempt_id else None,
                    "at": iso(now),
                },
            )
        )

    async def heartbeat(self, principal: Principal, session_id: uuid.UUID, now: datetime) -> None:
        if principal.role == "student":
            await self._presence.touch(str(session_id), str(principal.user_id), now)

    async def leave(self, principal: Principal, session_id: uuid.UUID, now: datetime) -> None:
        connected = await self._presence.leave(str(session_id), str(principal.user_id), now)
        await self._bus.publish(
            proctor_channel(str(session_id)),
            "participant_disconnected",
            {
                "session_id": str(session_id),
                "student_id": str(principal.user_id),
                "username": principal.username,
                "connected_count": connected,
                "at": iso(now),
            },
        )

    # ---- proctor actions ------------------------------------------------------------------

    async def student_attempt(
        self, principal: Principal, session_id: uuid.UUID, student_id: uuid.UUID
    ) -> uuid.UUID:
        """The attempt a proctor acts on, checking they manage this session."""
        async with self._sessions() as s:
            await session_for(s, principal, session_id, manage=True)
            participant = await s.get(Participant, (session_id, student_id))
            if participant is None or participant.attempt_id is None:
                raise NotFound("participant_attempt", student_id)
            return participant.attempt_id

    async def set_accommodation(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        student_id: uuid.UUID,
        spec: AccommodationIn,
    ) -> ParticipantView:
        """Extra time and/or a multiplier for one student, before or during the exam. A running
        attempt's deadline moves by the difference to their new personal end."""
        rules.validate_accommodation(
            extra_seconds=spec.extra_seconds, multiplier=spec.time_multiplier
        )
        work = Work()
        async with self._sessions() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True, lock=True)
                if session.state in ("completed", "cancelled"):
                    raise Conflict("session_over", f"the session is {session.state}")
                if not await s.get(ClassStudent, (session.class_id, student_id)):
                    raise NotFound("student", student_id)
                now = await db_now(s)
                participant = await self._participant(s, session_id, student_id)
                old = (participant.extra_seconds, participant.time_multiplier)
                participant.extra_seconds = spec.extra_seconds
                participant.time_multiplier = spec.time_multiplier
                if participant.attempt_id is not None and session.started_at is not None:
                    test = await self._test(s, session)
                    before = rules.personal_end(
                        session.started_at, test.time_limit_seconds,
                        multiplier=old[1], extra_seconds=old[0],
                    )  # fmt: skip
                    after = rules.personal_end(
                        session.started_at, test.time_limit_seconds,
                        multiplier=spec.time_multiplier, extra_seconds=spec.extra_seconds,
                    )  # fmt: skip
                    delta = int((after - before).total_seconds())
                    attempt = await s.get(Attempt, participant.attempt_id, with_for_update=True)
                    if delta and attempt is not None and attempt.state in OPEN_STATES:
                        loaded = HeldAttempt(s, attempt, test, now)
                        attempt_rules.extend(attempt, seconds=delta)
                        self._attempts.context.after_timer_change(loaded)
                        work.loaded.append(loaded)
                await self._staff_action(
                    s, principal, "accommodation_set", session, now, spec.reason,
                    {"extra_seconds": spec.extra_seconds, "time_multiplier": spec.time_multiplier},
                    subject=student_id, attempt=participant.attempt_id,
                )  # fmt: skip
                await s.flush()
            await self.run_after(work)
            data = {
                "student_id": str(student_id),
                "extra_seconds": spec.extra_seconds,
                "time_multiplier": spec.time_multiplier,
                "at": iso(now),
            }
            await run_safely(
                self._bus.publish(proctor_channel(str(session_id)), "accommodation_changed", data)
            )
            await run_safely(
                self._bus.publish(
                    participant_channel(str(session_id), str(student_id)),
                    "accommodation_changed",
                    data,
                )
            )
            views = await self.participants(principal, session_id, only=student_id)
            return views[0]

    async def notice(
        self, principal: Principal, session_id: uuid.UUID, spec: NoticeIn
    ) -> dict[str, Any]:
        async with self._sessions() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True)
                if spec.student_id is not None and not await s.get(
                    ClassStudent, (session.class_id, spec.student_id)
                ):
                    raise NotFound("student", spec.student_id)
                now = await db_now(s)
                await self._staff_action(
                    s, principal, "notice_sent", session, now, None,
                    {"message": spec.message}, subject=spec.student_id,
                )  # fmt: skip
        data = {
            "message": spec.message,
            "from": principal.username,
            "student_id": str(spec.student_id) if spec.student_id else None,
            "at": iso(now),
        }
        channel = (
            participant_channel(str(session_id), str(spec.student_id))
            if spec.student_id
            else session_channel(str(session_id))
        )
        await self._bus.publish(channel, "notice", data)
        if spec.student_id:  # the proctors hear the session channel already
            await run_safely(self._bus.publish(proctor_channel(str(session_id)), "notice", data))
        return data

    # ---- what the proctor sees --------------------------------------------------------------

    async def participants(
        self, principal: Principal, session_id: uuid.UUID, *, only: uuid.UUID | None = None
    ) -> list[ParticipantView]:
        """The live grid: every enrolled student, whether or not they joined."""
        async with self._sessions() as s:
            session = await session_for(s, principal, session_id, manage=True)
            test = await self._test(s, session)
            item_count = int(
                await s.scalar(select(func.count()).where(Item.test_id == test.id)) or 0
            )
            now = await db_now(s)
            students_stmt = (
                select(User)
                .join(ClassStudent, ClassStudent.user_id == User.id)
                .where(ClassStudent.class_id == session.class_id)
                .order_by(User.username)
            )
            if only is not None:
                students_stmt = students_stmt.where(User.id == only)
            students = list(await s.scalars(students_stmt))
            if only is not None and not students:
                raise NotFound("student", only)
            part = {
                p.user_id: p
                for p in await s.scalars(
                    select(Participant).where(Participant.session_id == session_id)
                )
            }
            attempts = {
                a.user_id: a
                for a in await s.scalars(select(Attempt).where(Attempt.session_id == session_id))
            }
            answered = dict(
                (
                    await s.execute(
                        select(Attempt.user_id, func.count())
                        .join(ItemState, ItemState.attempt_id == Attempt.id)
                        .where(Attempt.session_id == session_id, ItemState.response.is_not(None))
                        .group_by(Attempt.user_id)
                    )
                ).all()
            )
            counts: dict[tuple[uuid.UUID, str], int] = {}
            last_event: dict[uuid.UUID, datetime] = {}
            for user_id, type_, n, last in await s.execute(
                select(
                    LedgerEvent.candidate_id,
                    LedgerEvent.type,
                    func.count(),
                    func.max(LedgerEvent.server_time),
                )
                .where(LedgerEvent.session_id == session_id, LedgerEvent.source == "candidate")
                .group_by(LedgerEvent.candidate_id, LedgerEvent.type)
            ):
                if user_id is None:  # pragma: no cover - candidate events always name one
                    continue
                counts[(user_id, type_)] = n
                last_event[user_id] = max(last_event.get(user_id, last), last)
            last_answer = dict(
                (
                    await s.execute(
                        select(Attempt.user_id, func.max(ResponseEvent.received_at))
                        .join(ResponseEvent, ResponseEvent.attempt_id == Attempt.id)
                        .where(Attempt.session_id == session_id)
                        .group_by(Attempt.user_id)
                    )
                ).all()
            )
        online = await self._presence.online(str(session_id), now)
        rows = []
        for user in students:
            p = part.get(user.id)
            a = attempts.get(user.id)
            moments = [m for m in (last_event.get(user.id), last_answer.get(user.id)) if m]
            if p is not None and p.first_joined_at:
                moments.append(p.first_joined_at)
            running = a is not None and a.state == "in_progress" and a.deadline is not None
            remaining = None
            if a is not None and a.deadline is not None:
                stop = a.paused_at if a.state == "paused" and a.paused_at else now
                remaining = max(ms(a.deadline - stop), 0) if a.state in OPEN_STATES else 0
            rows.append(
                ParticipantView(
                    student=user_out(user),
                    connected=str(user.id) in online,
                    joined_at=p.first_joined_at if p else None,
                    attempt_id=a.id if a else None,
                    state=a.state if a else None,
                    position=a.position if a else None,
                    answered=int(answered.get(user.id, 0)),
                    total_items=len(a.form) if a else item_count,
                    deadline=a.deadline if running and a else None,
                    remaining_ms=remaining,
                    violations=counts.get((user.id, "tab_violation"), 0),
                    highlights=counts.get((user.id, "text_highlighted"), 0),
                    marked_for_review=bool(a is not None and a.review),
                    last_activity=max(moments) if moments else None,
                    extra_seconds=p.extra_seconds if p else 0,
                    time_multiplier=p.time_multiplier if p else 1.0,
                    score=a.score if a else None,
                    max_score=a.max_score if a else None,
                )
            )
        return rows

    async def timeline(
        self, principal: Principal, session_id: uuid.UUID, student_id: uuid.UUID
    ) -> list[TimelineEntry]:
        async with self._sessions() as s:
            await session_for(s, principal, session_id, manage=True)
            participant = await s.get(Participant, (session_id, student_id))
            entries: list[TimelineEntry] = []
            kinds: dict[str, Literal["event", "staff_action", "server"]] = {
                "candidate": "event",
                "staff": "staff_action",
                "server": "server",
            }
            for e in await s.scalars(
                select(LedgerEvent)
                .where(
                    LedgerEvent.session_id == session_id,
                    LedgerEvent.candidate_id == student_id,
                    LedgerEvent.type != "answer_saved",  # the answers come with their content
                )
                .order_by(LedgerEvent.id)
            ):
                data = e.payload | ({"reason": e.reason} if e.source == "staff" else {})
                entries.append(
                    TimelineEntry(
                        at=e.server_time,
                        kind=kinds[e.source],
                        type=e.type,
                        data=data,
                    )
                )
            if participant is not None and participant.attempt_id is not None:
                for r in await s.scalars(
                    select(ResponseEvent).where(ResponseEvent.attempt_id == participant.attempt_id)
                ):
                    entries.append(
                        TimelineEntry(
                            at=r.received_at,
                            kind="answer",
                            type="answer_saved",
                            data={
                                "client_seq": r.client_seq,
                                "response": r.response,
                                "applied": r.applied,
                                "connection_id": r.connection_id,
                            },
                        )  # fmt: skip
                    )
        return sorted(entries, key=lambda e: e.at)

    async def audit(self, principal: Principal, session_id: uuid.UUID) -> list[AuditOut]:
        async with self._sessions() as s:
            await session_for(s, principal, session_id, manage=True)
            rows = await s.execute(
                select(LedgerEvent, User)
                .join(User, User.id == LedgerEvent.actor_id)
                .where(LedgerEvent.session_id == session_id, LedgerEvent.source == "staff")
                .order_by(LedgerEvent.server_time, LedgerEvent.id)
            )
            return [
                AuditOut(
                    at=entry.server_time,
                    actor=user_out(actor),
                    action=entry.type,
                    student_id=entry.candidate_id,
                    attempt_id=entry.attempt_id,
                    reason=entry.reason,
                    details=entry.payload,
                )
                for entry, actor in rows
            ]

    async def stats(self, principal: Principal, session_id: uuid.UUID) -> SessionStats:
        rows = await self.participants(principal, session_id)
        async with self._sessions() as s:
            session = await session_for(s, principal, session_id, manage=True)
            used = [
                (a.ended_at - a.started_at).total_seconds()
                for a in await s.scalars(select(Attempt).where(Attempt.session_id == session_id))
                if a.ended_at and a.started_at
            ]
        by_state: dict[str, int] = {}
        for row in rows:
            if row.state:
                by_state[row.state] = by_state.get(row.state, 0) + 1
        finished = [r for r in rows if r.state in ("submitted", "expired", "terminated")]
        scores = [r.score for r in finished if r.score is not None]
        joined = sum(1 for r in rows if r.joined_at is not None)
        return SessionStats(
            session_id=session_id,
            state=session.state,
            enrolled=len(rows),
            joined=joined,
            not_joined=len(rows) - joined,
            by_state=by_state,
            completion_rate=len(finished) / len(rows) if rows else 0.0,
            average_score=sum(scores) / len(scores) if scores else None,
            highest_score=max(scores) if scores else None,
            lowest_score=min(scores) if scores else None,
            max_score=next((r.max_score for r in finished if r.max_score is not None), None),
            average_time_used_seconds=sum(used) / len(used) if used else None,
            students=rows,
        )

    # ---- internals --------------------------------------------------------------------------

    async def _open_attempt(
        self,
        s: AsyncSession,
        session: GroupSession,
        test: Test,
        user_id: uuid.UUID,
        now: datetime,
        work: Work,
    ) -> Attempt | None:
        participant = await self._participant(s, session.id, user_id)
        if participant.attempt_id is not None:
            return await s.get(Attempt, participant.attempt_id)
        if participant.first_joined_at is None:
            participant.first_joined_at = now
        if session.started_at is None:  # pragma: no cover - a running session has a start
            raise Conflict("session_not_started", "the session has not started")
        deadline = rules.personal_end(
            session.started_at,
            test.time_limit_seconds,
            multiplier=participant.time_multiplier,
            extra_seconds=participant.extra_seconds,
        )
        if deadline <= now + timedelta(seconds=1):
            raise Conflict(
                "time_over", "the session's time is over for this student", deadline=iso(deadline)
            )
        attempt = await self._attempts.creation.open_in_session(
            s,
            test=test,
            user_id=user_id,
            session_id=session.id,
            now=now,
            deadline=deadline,
            after=work.after,
        )
        participant.attempt_id = attempt.id
        return attempt

    @staticmethod
    async def _participant(
        s: AsyncSession, session_id: uuid.UUID, user_id: uuid.UUID
    ) -> Participant:
        participant = await s.get(Participant, (session_id, user_id))
        if participant is None:
            participant = Participant(
                session_id=session_id, user_id=user_id, extra_seconds=0, time_multiplier=1.0
            )
            s.add(participant)
            await s.flush()
        return participant

    async def _finish_session(
        self, s: AsyncSession, session: GroupSession, now: datetime, work: Work
    ) -> None:
        rules.session_transition(session, "complete")
        session.completed_at = now
        session.updated_at = now
        for attempt in await s.scalars(
            select(Attempt)
            .where(Attempt.session_id == session.id, Attempt.state.in_(("in_progress", "paused")))
            .with_for_update()
        ):
            work.loaded.append(await self._attempts.lifecycle.end_for_session(s, attempt, now))
        member = SESSION_MEMBER + str(session.id)
        work.after.append(lambda: self._timers.cancel(member))

    def _schedule_session_end(self, work: Work, session: GroupSession) -> None:
        if session.ends_at is None:  # pragma: no cover - set by start just before
            return
        member, due = SESSION_MEMBER + str(session.id), session.ends_at + self._grace
        work.after.append(lambda: self._timers.schedule_due(member, due))

    async def run_after(self, work: Work) -> None:
        """What a committed decision left to do (timers, events), each failure logged."""
        for action in work.after:
            await run_safely(action())
        for loaded in work.loaded:
            await self._attempts.context.run_after(loaded)

    async def _broadcast_status(self, out: SessionOut, now: datetime, extra: str | None) -> None:
        data = {"session_id": str(out.id), "state": out.state, "at": iso(now)}
        for channel in (session_channel(str(out.id)), proctor_channel(str(out.id))):
            if extra:
                await run_safely(self._bus.publish(channel, extra, data))
            await run_safely(self._bus.publish(channel, "session_status_changed", data))

    async def _announce_completed(self, out: SessionOut, now: datetime) -> None:
        data = {"session_id": str(out.id), "completed_at": iso(now), "at": iso(now)}
        for channel in (session_channel(str(out.id)), proctor_channel(str(out.id))):
            await run_safely(self._bus.publish(channel, "session_completed", data))
        await self._broadcast_status(out, now, None)

    @staticmethod
    async def _test(s: AsyncSession, session: GroupSession) -> Test:
        test = await s.get(Test, session.test_id)
        if test is None:  # pragma: no cover - foreign key guarantees it
            raise NotFound("test", session.test_id)
        return test

    async def _staff_action(
        self,
        s: AsyncSession,
        principal: Principal,
        action: str,
        session: GroupSession,
        now: datetime,
        reason: str | None,
        details: dict[str, Any] | None = None,
        *,
        subject: uuid.UUID | None = None,
        attempt: uuid.UUID | None = None,
    ) -> None:
        """The audit trail, in the caller's transaction: on the attempt's chain when one
        candidate's attempt is concerned, on the session's otherwise."""
        require_reason(principal, action, reason)
        chain = attempt_chain(attempt) if attempt else session_chain(session.id)
        entry = Entry(
            chain=chain,
            type=action,
            source="staff",
            actor_id=principal.user_id,
            candidate_id=subject,
            attempt_id=attempt,
            session_id=session.id,
            payload=details or {},
            reason=reason,
        )
        await self._ledger.append(s, entry, now)

    @staticmethod
    async def session_out(s: AsyncSession, session: GroupSession) -> SessionOut:
        klass = await s.get(Class, session.class_id)
        test = await s.get(Test, session.test_id)
        if klass is None or test is None:  # pragma: no cover - foreign keys guarantee them
            raise NotFound("session", session.id)
        return SessionOut(
            id=session.id,
            class_id=session.class_id,
            class_name=klass.name,
            test_id=session.test_id,
            test_title=test.title,
            time_limit_seconds=test.time_limit_seconds,
            title=session.title,
            state=session.state,
            scheduled_at=session.scheduled_at,
            started_at=session.started_at,
            ends_at=session.ends_at,
            completed_at=session.completed_at,
            created_by=session.created_by,
            created_at=session.created_at,
        )
