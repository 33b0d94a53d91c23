"""What a proctor does to a running session's students: find the attempt to act on, give a
student extra time, send a notice. Each is on the audit trail before anyone hears of it."""

from __future__ import annotations

import uuid
from typing import Any

from delivery_service.domain import attempts as attempt_rules
from delivery_service.domain import sessions as session_rules
from delivery_service.domain.attempt_machine import OPEN_STATES
from delivery_service.domain.errors import Conflict, NotFound
from delivery_service.domain.principal import Principal
from delivery_service.domain.timing import iso
from delivery_service.live.keys import participant_channel, proctor_channel, session_channel
from delivery_service.read_models.sessions import ParticipantView
from delivery_service.schemas.sessions import AccommodationIn, NoticeIn
from delivery_service.services.access import session_for
from delivery_service.services.after_commit import run_safely
from delivery_service.services.attempts import HeldAttempt
from delivery_service.services.sessions.context import (
    SessionContext,
    Work,
    participant_row,
    session_test,
)
from delivery_service.services.sessions.monitoring import Monitoring
from delivery_service.storage.database import db_now
from delivery_service.storage.models import Attempt, ClassStudent, Participant


class Proctoring:
    def __init__(self, context: SessionContext, monitoring: Monitoring) -> None:
        self._context = context
        self._monitoring = monitoring  # an accommodation answers with the student's grid row

    async def student_attempt(
        self, principal: Principal, session_id: uuid.UUID, student_id: uuid.UUID
    ) -> uuid.UUID:
        """The attempt a proctor acts on, checking they manage this session."""
        async with self._context.db() as s:
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
        session_rules.validate_accommodation(
            extra_seconds=spec.extra_seconds, multiplier=spec.time_multiplier
        )
        work = Work()
        async with self._context.db() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True, lock=True)
                if session.state in ("completed", "cancelled"):
                    raise Conflict("session_over", f"the session is {session.state}")
                if not await s.get(ClassStudent, (session.class_id, student_id)):
                    raise NotFound("student", student_id)
                now = await db_now(s)
                participant = await participant_row(s, session_id, student_id)
                old = (participant.extra_seconds, participant.time_multiplier)
                participant.extra_seconds = spec.extra_seconds
                participant.time_multiplier = spec.time_multiplier
                if participant.attempt_id is not None and session.started_at is not None:
                    test = await session_test(s, session)
                    before = session_rules.personal_end(
                        session.started_at, test.time_limit_seconds,
                        multiplier=old[1], extra_seconds=old[0],
                    )  # fmt: skip
                    after = session_rules.personal_end(
                        session.started_at, test.time_limit_seconds,
                        multiplier=spec.time_multiplier, extra_seconds=spec.extra_seconds,
                    )  # fmt: skip
                    delta = int((after - before).total_seconds())
                    attempt = await s.get(Attempt, participant.attempt_id, with_for_update=True)
                    if delta and attempt is not None and attempt.state in OPEN_STATES:
                        loaded = HeldAttempt(s, attempt, test, now)
                        attempt_rules.extend(attempt, seconds=delta)
                        self._context.attempts.context.after_timer_change(loaded)
                        work.loaded.append(loaded)
                await self._context.staff_action(
                    s, principal, "accommodation_set", session, now, spec.reason,
                    {"extra_seconds": spec.extra_seconds, "time_multiplier": spec.time_multiplier},
                    subject=student_id, attempt=participant.attempt_id,
                )  # fmt: skip
                await s.flush()
            await self._context.run_after(work)
            data = {
                "student_id": str(student_id),
                "extra_seconds": spec.extra_seconds,
                "time_multiplier": spec.time_multiplier,
                "at": iso(now),
            }
            await run_safely(
                self._context.bus.publish(
                    proctor_channel(str(session_id)), "accommodation_changed", data
                )
            )
            await run_safely(
                self._context.bus.publish(
                    participant_channel(str(session_id), str(student_id)),
                    "accommodation_changed",
                    data,
                )
            )
            views = await self._monitoring.participants(principal, session_id, only=student_id)
            return views[0]

    async def notice(
        self, principal: Principal, session_id: uuid.UUID, spec: NoticeIn
    ) -> dict[str, Any]:
        async with self._context.db() as s:
            async with s.begin():
                session = await session_for(s, principal, session_id, manage=True)
                if spec.student_id is not None and not await s.get(
                    ClassStudent, (session.class_id, spec.student_id)
                ):
                    raise NotFound("student", spec.student_id)
                now = await db_now(s)
                await self._context.staff_action(
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
        await self._context.bus.publish(channel, "notice", data)
        if spec.student_id:  # the proctors hear the session channel already
            await run_safely(
                self._context.bus.publish(proctor_channel(str(session_id)), "notice", data)
            )
        return data
