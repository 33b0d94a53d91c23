"""What the parts of the group-session service share: their dependencies and the steps more
than one of them takes (a participant's row, an attempt opened at the personal end, the audit
trail, the session as a client reads it, the status broadcast).

The session row is the truth for the global timer; each student's attempt carries their own
deadline (their personal end). Everything is written before it is broadcast: events go to the
session channel (everyone), the proctor feed (staff only) or one participant's channel.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain import sessions as session_rules
from delivery_service.domain.authority import require_reason
from delivery_service.domain.errors import Conflict, NotFound
from delivery_service.domain.principal import Principal
from delivery_service.domain.timing import iso
from delivery_service.live.bus import Bus
from delivery_service.live.keys import proctor_channel, session_channel
from delivery_service.live.presence import Presence
from delivery_service.live.timers import Timers
from delivery_service.read_models.sessions import SessionOut
from delivery_service.services.after_commit import AfterCommit, run_safely
from delivery_service.services.attempts import AttemptService, HeldAttempt
from delivery_service.storage.ledger import Ledger, attempt_chain, session_chain
from delivery_service.storage.models import Attempt, Class, GroupSession, Participant, Test


@dataclass
class Work:
    """Post-commit actions collected while deciding, run only once the transaction committed."""

    after: list[AfterCommit] = field(default_factory=list)
    loaded: list[HeldAttempt] = field(default_factory=list)


@dataclass(frozen=True)
class SessionContext:
    """One per worker, shared by the life cycle, joining, proctoring and monitoring parts.
    `db` makes the database sessions (one per use case)."""

    db: async_sessionmaker[AsyncSession]
    attempts: AttemptService
    bus: Bus
    timers: Timers
    presence: Presence
    grace: timedelta
    ledger: Ledger
    #: how long before its scheduled time a session's waiting room may open
    open_lead: timedelta = timedelta(minutes=30)

    async def run_after(self, work: Work) -> None:
        """What a committed decision left to do (timers, events), each failure logged."""
        for action in work.after:
            await run_safely(action())
        for loaded in work.loaded:
            await self.attempts.context.run_after(loaded)

    async def open_attempt(
        self,
        s: AsyncSession,
        session: GroupSession,
        test: Test,
        user_id: uuid.UUID,
        now: datetime,
        work: Work,
    ) -> Attempt | None:
        participant = await participant_row(s, session.id, user_id)
        if participant.attempt_id is not None:
            return await s.get(Attempt, participant.attempt_id)
        if participant.first_joined_at is None:
            participant.first_joined_at = now
        if session.started_at is None:  # pragma: no cover - a running session has a start
            raise Conflict("session_not_started", "the session has not started")
        deadline = session_rules.personal_end(
            session.started_at,
            test.time_limit_seconds,
            multiplier=participant.time_multiplier,
            extra_seconds=participant.extra_seconds,
        )
        if deadline <= now + timedelta(seconds=1):
            raise Conflict(
                "time_over", "the session's time is over for this student", deadline=iso(deadline)
            )
        attempt = await self.attempts.creation.open_in_session(
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

    async def staff_action(
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
        await self.ledger.record(
            s,
            now,
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

    async def broadcast_status(self, out: SessionOut, now: datetime, extra: str | None) -> None:
        data = {"session_id": str(out.id), "state": out.state, "at": iso(now)}
        for channel in (session_channel(str(out.id)), proctor_channel(str(out.id))):
            if extra:
                await run_safely(self.bus.publish(channel, extra, data))
            await run_safely(self.bus.publish(channel, "session_status_changed", data))


async def participant_row(
    s: AsyncSession, session_id: uuid.UUID, user_id: uuid.UUID
) -> Participant:
    """The student's place in the session, made on first need."""
    participant = await s.get(Participant, (session_id, user_id))
    if participant is None:
        participant = Participant(
            session_id=session_id, user_id=user_id, extra_seconds=0, time_multiplier=1.0
        )
        s.add(participant)
        await s.flush()
    return participant


async def session_test(s: AsyncSession, session: GroupSession) -> Test:
    test = await s.get(Test, session.test_id)
    if test is None:  # pragma: no cover - foreign key guarantees it
        raise NotFound("test", session.test_id)
    return test


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
