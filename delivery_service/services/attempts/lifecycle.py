"""An attempt's life after creation: start, pause and resume, submit; the staff's terminate and
extend; the server's own pause or termination for a violation, and the end a session imposes.

Each is one decision through the context's `write` (or, for the server's acts, a locked row of
its own): the domain's machine decides, the ledger records who acted and why.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.domain import attempts as attempt_rules
from delivery_service.domain import availability
from delivery_service.domain.authority import may_pause, require_reason
from delivery_service.domain.errors import Forbidden
from delivery_service.domain.principal import Principal
from delivery_service.domain.section_clock import clock_at
from delivery_service.domain.timing import iso
from delivery_service.read_models.attempts import AttemptView, Completion, Timer
from delivery_service.services.attempts.context import (
    AttemptContext,
    HeldAttempt,
    held_in,
    locked_attempt,
)
from delivery_service.services.attempts.ending import finish
from delivery_service.services.attempts.views import timer_of
from delivery_service.storage.models import Attempt
from integrity import events as ev


class AttemptLifecycle:
    def __init__(self, context: AttemptContext) -> None:
        self._context = context

    # ---- the candidate's -------------------------------------------------------------------

    async def start(self, principal: Principal, attempt_id: uuid.UUID) -> AttemptView:
        context = self._context

        async def decide(held: HeldAttempt) -> AttemptView:
            windowed = _windowed(principal, held)
            if windowed:  # created in the window, but it may have closed since
                availability.require_open(held.test, held.now)
            attempt_rules.start(
                held.attempt, now=held.now, time_limit_seconds=held.test.time_limit_seconds
            )
            if windowed and held.attempt.deadline is not None:
                held.attempt.deadline = availability.capped_deadline(
                    held.attempt.deadline, held.test.closes_at
                )
            clock_at(held.attempt, held.now, enter=True)
            deadline = iso(held.attempt.deadline) if held.attempt.deadline else None
            await context.log(
                held, ev.ATTEMPT_STARTED, "candidate", actor=principal.user_id,
                payload={"deadline": deadline},
            )  # fmt: skip
            context.after_timer_change(held)
            return await context.view(held.session, held.attempt, held.test, held.now, principal)

        return await context.write(principal, attempt_id, "owner", decide)

    async def pause(
        self, principal: Principal, attempt_id: uuid.UUID, *, reason: str | None = None
    ) -> AttemptView:
        context = self._context

        async def decide(held: HeldAttempt) -> AttemptView:
            attempt_rules.pause(held.attempt, now=held.now, allowed=_may_pause(principal, held))
            clock_at(held.attempt, held.now, enter=False)
            context.after_timer_change(held)
            await context.act(held, principal, "attempt_paused", reason)
            return await context.view(held.session, held.attempt, held.test, held.now, principal)

        return await context.write(principal, attempt_id, "read", decide)

    async def resume(
        self, principal: Principal, attempt_id: uuid.UUID, *, reason: str | None = None
    ) -> AttemptView:
        context = self._context

        async def decide(held: HeldAttempt) -> AttemptView:
            if not _may_pause(principal, held):
                raise Forbidden("only a proctor can resume this attempt")
            before = held.attempt.deadline
            attempt_rules.resume(held.attempt, now=held.now)
            if held.attempt.session_id is None and before and held.attempt.deadline:
                held.attempt.deadline = availability.resumed_deadline(
                    before, held.attempt.deadline, held.test.closes_at
                )
            clock_at(held.attempt, held.now, enter=True)
            context.after_timer_change(held)
            await context.act(held, principal, "attempt_resumed", reason)
            return await context.view(held.session, held.attempt, held.test, held.now, principal)

        return await context.write(principal, attempt_id, "read", decide)

    async def submit(self, principal: Principal, attempt_id: uuid.UUID) -> Completion:
        context = self._context

        async def decide(held: HeldAttempt) -> Completion:
            return await finish(context, held, "submit", actor=principal)

        return await context.write(principal, attempt_id, "owner", decide)

    # ---- staff actions ---------------------------------------------------------------------

    async def terminate(
        self, principal: Principal, attempt_id: uuid.UUID, *, reason: str
    ) -> Completion:
        context = self._context

        async def decide(held: HeldAttempt) -> Completion:
            return await finish(context, held, "terminate", actor=principal, reason=reason)

        return await context.write(principal, attempt_id, "staff", decide)

    async def extend(
        self,
        principal: Principal,
        attempt_id: uuid.UUID,
        seconds: int,
        *,
        reason: str | None = None,
    ) -> Timer:
        context = self._context

        async def decide(held: HeldAttempt) -> Timer:
            require_reason(principal, "time_extended", reason)
            attempt_rules.extend(held.attempt, seconds=seconds)
            context.after_timer_change(held)
            deadline = iso(held.attempt.deadline) if held.attempt.deadline else None
            await context.act(
                held, principal, "time_extended", reason, {"seconds": seconds, "deadline": deadline}
            )
            return timer_of(held.attempt, held.test, held.now)

        return await context.write(principal, attempt_id, "staff", decide)

    # ---- the server's and the session's -------------------------------------------------------

    async def end_for_session(
        self, s: AsyncSession, attempt: Attempt, now: datetime
    ) -> HeldAttempt:
        """End one open attempt when its session completes (caller's transaction): a running one
        expires, a paused one is terminated (the machine has no other way out of paused)."""
        held = await held_in(s, attempt, now)
        await finish(
            self._context, held, "expire" if attempt.state == "in_progress" else "terminate"
        )
        return held

    async def enforce(
        self, attempt_id: uuid.UUID, action: Literal["pause", "terminate"], *, reason: str
    ) -> bool:
        """The server acting on a violation rule: pause (a proctor resumes) or terminate.
        Logged as the server's own act, with the rule's reason. False if nothing was running."""
        context = self._context
        held: HeldAttempt | None = None
        async with context.db() as s:
            async with s.begin():
                attempt = await locked_attempt(s, attempt_id)
                if attempt is None or attempt.state != "in_progress":
                    return False
                held = await held_in(s, attempt)
                if attempt_rules.is_overdue(
                    attempt, now=held.now, grace=context.expiry_grace(held)
                ):
                    await finish(context, held, "expire")
                elif action == "pause":
                    attempt_rules.pause(attempt, now=held.now, allowed=True)
                    clock_at(attempt, held.now, enter=False)
                    context.after_timer_change(held)
                    await context.log(held, "attempt_paused", "server", reason=reason)
                else:
                    await finish(context, held, "terminate", reason=reason)
        await context.run_after(held)
        return True


def _windowed(principal: Principal, held: HeldAttempt) -> bool:
    """Whether the test's window binds this start: a candidate's own self-paced attempt (a
    session's timer is the session's; a member of staff's is a preview)."""
    return held.attempt.session_id is None and not principal.is_staff


def _may_pause(principal: Principal, held: HeldAttempt) -> bool:
    in_session = held.attempt.session_id is not None
    return may_pause(principal, allow_pause=held.test.allow_pause, in_session=in_session)
