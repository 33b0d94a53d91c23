"""What a proctor sees of a session: the live grid, one student's timeline, the audit trail and
the statistics. Read-only, so it reads columns (SQLAlchemy Core), never rows to track."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select

from delivery_service.domain import sessions as session_rules
from delivery_service.domain.errors import NotFound
from delivery_service.domain.principal import Principal
from delivery_service.read_models.classes import UserOut
from delivery_service.read_models.sessions import (
    AuditOut,
    ParticipantView,
    SessionStats,
    TimelineEntry,
)
from delivery_service.services.access import session_for
from delivery_service.services.sessions.context import SessionContext
from delivery_service.storage.database import db_now
from delivery_service.storage.models import (
    Attempt,
    ClassStudent,
    Item,
    ItemState,
    LedgerEvent,
    Participant,
    ResponseEvent,
    User,
)

_KINDS: dict[str, Literal["event", "staff_action", "server"]] = {
    "candidate": "event",
    "staff": "staff_action",
    "server": "server",
}


class Monitoring:
    def __init__(self, context: SessionContext) -> None:
        self._context = context

    async def participants(
        self, principal: Principal, session_id: uuid.UUID, *, only: uuid.UUID | None = None
    ) -> list[ParticipantView]:
        """The live grid: every enrolled student, whether or not they joined."""
        async with self._context.db() as s:
            session = await session_for(s, principal, session_id, manage=True)
            item_count = int(
                await s.scalar(select(func.count()).where(Item.test_id == session.test_id)) or 0
            )
            now = await db_now(s)
            students_stmt = (
                select(User.id, User.username, User.role)
                .join(ClassStudent, ClassStudent.user_id == User.id)
                .where(ClassStudent.class_id == session.class_id)
                .order_by(User.username)
            )
            if only is not None:
                students_stmt = students_stmt.where(User.id == only)
            students = (await s.execute(students_stmt)).all()
            if only is not None and not students:
                raise NotFound("student", only)
            part = {
                p.user_id: p
                for p in await s.execute(
                    select(
                        Participant.user_id,
                        Participant.first_joined_at,
                        Participant.extra_seconds,
                        Participant.time_multiplier,
                    ).where(Participant.session_id == session_id)
                )
            }
            attempts = {
                a.user_id: a
                for a in await s.execute(
                    select(
                        Attempt.id,
                        Attempt.user_id,
                        Attempt.state,
                        Attempt.position,
                        Attempt.form,
                        Attempt.deadline,
                        Attempt.paused_at,
                        Attempt.review,
                        Attempt.score,
                        Attempt.max_score,
                    ).where(Attempt.session_id == session_id)
                )
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
        online = await self._context.presence.online(str(session_id), now)
        rows = []
        for user in students:
            p = part.get(user.id)
            a = attempts.get(user.id)
            moments = [m for m in (last_event.get(user.id), last_answer.get(user.id)) if m]
            if p is not None and p.first_joined_at:
                moments.append(p.first_joined_at)
            running = a is not None and a.state == "in_progress" and a.deadline is not None
            remaining = None
            if a is not None:
                remaining = session_rules.remaining_ms(
                    state=a.state, deadline=a.deadline, paused_at=a.paused_at, now=now
                )
            rows.append(
                ParticipantView(
                    student=UserOut(id=user.id, username=user.username, role=user.role),
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
        async with self._context.db() as s:
            await session_for(s, principal, session_id, manage=True)
            attempt_id = await s.scalar(
                select(Participant.attempt_id).where(
                    Participant.session_id == session_id, Participant.user_id == student_id
                )
            )
            entries: list[TimelineEntry] = []
            for e in await s.execute(
                select(
                    LedgerEvent.server_time,
                    LedgerEvent.source,
                    LedgerEvent.type,
                    LedgerEvent.payload,
                    LedgerEvent.reason,
                )
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
                        kind=_KINDS[e.source],
                        type=e.type,
                        data=data,
                    )
                )
            if attempt_id is not None:
                for r in await s.execute(
                    select(
                        ResponseEvent.received_at,
                        ResponseEvent.client_seq,
                        ResponseEvent.response,
                        ResponseEvent.applied,
                        ResponseEvent.connection_id,
                    ).where(ResponseEvent.attempt_id == attempt_id)
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
        async with self._context.db() as s:
            await session_for(s, principal, session_id, manage=True)
            rows = await s.execute(
                select(
                    LedgerEvent.server_time,
                    LedgerEvent.type,
                    LedgerEvent.candidate_id,
                    LedgerEvent.attempt_id,
                    LedgerEvent.reason,
                    LedgerEvent.payload,
                    User.id.label("actor_id"),
                    User.username,
                    User.role,
                )
                .join(User, User.id == LedgerEvent.actor_id)
                .where(LedgerEvent.session_id == session_id, LedgerEvent.source == "staff")
                .order_by(LedgerEvent.server_time, LedgerEvent.id)
            )
            return [
                AuditOut(
                    at=entry.server_time,
                    actor=UserOut(id=entry.actor_id, username=entry.username, role=entry.role),
                    action=entry.type,
                    student_id=entry.candidate_id,
                    attempt_id=entry.attempt_id,
                    reason=entry.reason,
                    details=entry.payload,
                )
                for entry in rows
            ]

    async def stats(self, principal: Principal, session_id: uuid.UUID) -> SessionStats:
        rows = await self.participants(principal, session_id)
        async with self._context.db() as s:
            session = await session_for(s, principal, session_id, manage=True)
            used = [
                (ended_at - started_at).total_seconds()
                for started_at, ended_at in await s.execute(
                    select(Attempt.started_at, Attempt.ended_at).where(
                        Attempt.session_id == session_id
                    )
                )
                if ended_at and started_at
            ]
        by_state: dict[str, int] = {}
        for row in rows:
            if row.state:
                by_state[row.state] = by_state.get(row.state, 0) + 1
        finished = [r for r in rows if session_rules.finished(r.state)]
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
