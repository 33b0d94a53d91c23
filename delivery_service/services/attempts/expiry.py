"""The system's own attempt work: expiring what the sweeper claimed, and listing every running
deadline for the timers' rebuild (services/expiry.py runs both on every worker)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select

from delivery_service.domain import attempts as attempt_rules
from delivery_service.domain.grace import late_window
from delivery_service.services.after_commit import run_safely
from delivery_service.services.attempts.context import (
    AttemptContext,
    HeldAttempt,
    held_in,
    locked_attempt,
)
from delivery_service.services.attempts.ending import finish
from delivery_service.services.scores import policies_of
from delivery_service.storage.models import Attempt, Test


class AttemptExpiry:
    def __init__(self, context: AttemptContext) -> None:
        self._context = context

    async def expire_due(self, attempt_id: str) -> bool:
        """Expire an attempt the sweeper claimed, if the database agrees it is due. Exactly once:
        the locked row's state decides, whichever worker gets here first."""
        context = self._context
        timers, metrics = context.timers, context.metrics
        try:
            ident = uuid.UUID(attempt_id)
        except ValueError:
            await timers.cancel(attempt_id)
            return False
        held: HeldAttempt | None = None
        expired = False
        async with context.db() as s:
            async with s.begin():
                attempt = await locked_attempt(s, ident)
                if attempt is not None and attempt.state == "in_progress":
                    held = await held_in(s, attempt)
                    grace = context.expiry_grace(held)
                    expired = attempt_rules.is_overdue(attempt, now=held.now, grace=grace)
                    if expired:
                        await finish(context, held, "expire")
                        if metrics is not None and attempt.deadline is not None:
                            lag = held.now - (attempt.deadline + grace)
                            metrics.expiry_lag.observe(max(lag.total_seconds(), 0.0))
                    elif attempt.deadline is not None:
                        # Redis was early or stale (an extension it missed): re-arm only.
                        deadline, now = attempt.deadline, held.now
                        late = late_window(held.policies)
                        held.after.append(
                            lambda: timers.schedule(attempt_id, deadline, now, late=late)
                        )
        if held is None:  # gone, final or paused: nothing to time
            await run_safely(timers.cancel(attempt_id))
            return False
        await context.run_after(held)
        return expired

    async def running_deadlines(self) -> list[tuple[str, datetime, timedelta]]:
        """Every attempt whose timer runs, with its deadline and its test's submission window
        after it: what Redis must hold."""
        # Plain columns, and each test's policies parsed once: with 14,000 running attempts,
        # an ORM row per attempt held the worker's loop for 0.4 s every reconcile.
        async with self._context.db() as s:
            rows = (
                await s.execute(
                    select(Attempt.id, Attempt.deadline, Attempt.test_id).where(
                        Attempt.state == "in_progress", Attempt.deadline.is_not(None)
                    )
                )
            ).all()
            test_ids = {test_id for _, _, test_id in rows}
            late = {
                test.id: late_window(policies_of(test))
                for test in await s.scalars(select(Test).where(Test.id.in_(test_ids)))
            }
            return [
                (str(ident), deadline, late[test_id])
                for ident, deadline, test_id in rows
                if deadline is not None  # the query says so; the type does not
            ]
