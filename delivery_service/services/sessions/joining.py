"""Students in a session: joining (an attempt when the session runs), presence (heartbeats, leaving)
and what the proctors hear of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.domain import sessions as session_rules
from delivery_service.domain.errors import Conflict, Forbidden
from delivery_service.domain.principal import Principal
from delivery_service.domain.timing import iso
from delivery_service.live.keys import proctor_channel
from delivery_service.read_models.sessions import SessionOut
from delivery_service.services.access import session_for
from delivery_service.services.after_commit import run_safely
from delivery_service.services.sessions.context import (
    SessionContext,
    Work,
    participant_row,
    session_out,
    session_test,
)
from delivery_service.storage.database import db_now
from delivery_service.storage.models import Participant


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


class Attendance:
    """Who is in the session: joins, heartbeats and departures."""

    def __init__(self, context: SessionContext) -> None:
        self._context = context

    async def join(self, principal: Principal, session_id: uuid.UUID) -> Joined:
        """A student's socket connected: mark them present, and give them their attempt (a new
        one when the session already runs and they have none yet)."""
        work = Work()
        async with self._context.db() as s:
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
                out = await session_out(s, session)
            await self._context.run_after(work)
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
            online = await self._context.presence.arrive(str(session_id), user, now)
            return Joining(attempt_id, None, online)
        # A join that may write (the first one, one that may open an attempt) does so under the
        # session's row lock, so that a start at the same moment and this join agree on who
        # has an attempt; what the caller read is read again under it.
        session = await session_for(s, principal, session_id, manage=False, lock=True)
        participant = await s.get(Participant, (session_id, principal.user_id),
                                  populate_existing=True)  # fmt: skip
        online = await self._context.presence.arrive(str(session_id), user, now)
        problem: Conflict | None = None
        try:
            session_rules.require_joinable(session.state)
        except Conflict as exc:
            problem = exc
        else:
            participant = await participant_row(s, session.id, principal.user_id)
            if participant.first_joined_at is None:
                participant.first_joined_at = now
            if session.state == "in_progress" and participant.attempt_id is None:
                test = await session_test(s, session)
                try:
                    await self._context.open_attempt(s, session, test, principal.user_id, now, work)
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
            self._context.bus.publish(
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
            await self._context.presence.touch(str(session_id), str(principal.user_id), now)

    async def leave(self, principal: Principal, session_id: uuid.UUID, now: datetime) -> None:
        connected = await self._context.presence.leave(str(session_id), str(principal.user_id), now)
        await self._context.bus.publish(
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
