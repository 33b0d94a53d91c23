"""Reading attempts: a view, the current item, progress, the timer, and the list; none of them
takes a lock."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.domain.errors import AttemptNotInProgress
from delivery_service.domain.principal import Principal
from delivery_service.read_models.attempts import (
    AttemptSummary,
    AttemptView,
    CurrentItem,
    Progress,
    Timer,
)
from delivery_service.services import adaptive
from delivery_service.services.access import AttemptAccess, attempts_managed_by
from delivery_service.services.attempts.context import AttemptContext
from delivery_service.services.attempts.views import read_view, timer_of
from delivery_service.services.scores import item_states
from delivery_service.storage.models import Attempt, Test


class AttemptReads:
    def __init__(self, context: AttemptContext) -> None:
        self._context = context

    async def get(self, principal: Principal, attempt_id: uuid.UUID) -> AttemptView:
        async with self._context.db() as s, s.begin():
            return await self.view_in(s, principal, attempt_id)

    async def view_in(
        self, s: AsyncSession, principal: Principal, attempt_id: uuid.UUID
    ) -> AttemptView:
        """The attempt as `principal` may see it, read inside the caller's transaction (a
        socket's state sync reads it beside the session): one Core statement."""
        return await read_view(s, self._context.items, principal, attempt_id)

    async def require(
        self, principal: Principal, attempt_id: uuid.UUID, access: AttemptAccess
    ) -> None:
        """Refuse (as REST refuses) unless `principal` may act on the attempt with `access`."""
        async with self._context.db() as s:
            await self._context.fetch(s, attempt_id, principal, access, lock=False)

    async def current(self, principal: Principal, attempt_id: uuid.UUID) -> CurrentItem:
        async with self._context.db() as s, s.begin():
            held = await self._context.load(s, attempt_id, principal, "owner", lock=False)
            if held.attempt.state != "in_progress":
                raise AttemptNotInProgress(held.attempt.state)
            return await self._context.current(held)

    async def progress(self, principal: Principal, attempt_id: uuid.UUID) -> Progress:
        async with self._context.db() as s, s.begin():
            held = await self._context.load(s, attempt_id, principal, "read", lock=False)
            states = await item_states(s, held.attempt.id)
            return Progress(
                state=held.attempt.state,
                position=held.attempt.position,
                total_items=adaptive.planned_total(held.attempt.layout, len(held.attempt.form)),
                answered=sum(1 for st in states.values() if st.response is not None),
                flagged=sum(1 for st in states.values() if st.flagged),
                timer=timer_of(held.attempt, held.test, held.now),
            )

    async def timer(self, principal: Principal, attempt_id: uuid.UUID) -> Timer:
        async with self._context.db() as s, s.begin():
            held = await self._context.load(s, attempt_id, principal, "read", lock=False)
            return timer_of(held.attempt, held.test, held.now)

    async def list_attempts(
        self,
        principal: Principal,
        *,
        test_id: uuid.UUID | None = None,
        user_id: uuid.UUID | None = None,
    ) -> list[AttemptSummary]:
        """Candidates list their own attempts; staff may list those of the classes they
        manage (an admin: anyone's), by test or candidate."""
        stmt = select(Attempt, Test.title).join(Test, Test.id == Attempt.test_id)
        if not principal.is_staff:
            stmt = stmt.where(Attempt.user_id == principal.user_id)
        else:
            managed = attempts_managed_by(principal, Attempt.session_id, Attempt.user_id)
            if managed is not None:
                stmt = stmt.where(managed)
            if user_id is not None:
                stmt = stmt.where(Attempt.user_id == user_id)
        if test_id is not None:
            stmt = stmt.where(Attempt.test_id == test_id)
        async with self._context.db() as s:
            rows = await s.execute(stmt.order_by(Attempt.created_at.desc()).limit(500))
            return [
                AttemptSummary(
                    id=a.id,
                    test_id=a.test_id,
                    test_title=title,
                    user_id=a.user_id,
                    attempt_number=a.attempt_number,
                    state=a.state,
                    started_at=a.started_at,
                    deadline=a.deadline,
                    ended_at=a.ended_at,
                    end_reason=a.end_reason,
                )
                for a, title in rows
            ]
