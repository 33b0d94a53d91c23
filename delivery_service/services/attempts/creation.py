"""Creating attempts: the candidate's next self-paced attempt, or a session's attempt opened
inside the session's own transaction, each with its form drawn and its creation on the ledger."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.domain import attempts as attempt_rules
from delivery_service.domain import availability
from delivery_service.domain.attempt_machine import OPEN_STATES
from delivery_service.domain.errors import AttemptLimitReached, Conflict, NotFound, VersionConflict
from delivery_service.domain.grace import late_window
from delivery_service.domain.principal import Principal
from delivery_service.domain.section_clock import clock_at
from delivery_service.domain.timing import iso
from delivery_service.read_models.attempts import AttemptView
from delivery_service.services import adaptive
from delivery_service.services.after_commit import AfterCommit
from delivery_service.services.attempts.context import AttemptContext, HeldAttempt
from delivery_service.services.audience import reservation_of, student_classes
from delivery_service.services.bank import available_items, candidate_of
from delivery_service.services.catalog import blueprint_of
from delivery_service.services.scores import policies_of
from delivery_service.storage.database import db_now
from delivery_service.storage.models import Attempt, Item, Test
from integrity import chain as sealing
from integrity import events as ev
from test_assembly.adaptive import begin
from test_assembly.assembly import assemble
from test_assembly.rng import new_seed


class AttemptCreation:
    def __init__(self, context: AttemptContext) -> None:
        self._context = context

    async def create(
        self,
        principal: Principal,
        test_id: uuid.UUID,
        *,
        password: str | None = None,
        client: str | None = None,
    ) -> tuple[AttemptView, bool]:
        """Create the caller's next attempt, or return the open one (created=False). A student
        must be in the test's audience, inside its window, on one of its networks (`client`:
        their address) and, if it has one, give its access password (domain/availability.py);
        staff may open a preview of any test."""
        verified: str | None = None  # the stored hash `password` was found to match
        for _ in range(4):
            try:
                outcome = await self._create_once(principal, test_id, password, client, verified)
            except IntegrityError:
                continue  # a concurrent create took this attempt number: look again
            if not isinstance(outcome, _CheckPassword):
                return outcome
            # Checked between two transactions: scrypt is slow, and the database connection
            # (SQLite's only one) is not held while it runs.
            matches = await self._context.passwords.check(
                test_id, principal.user_id, outcome.given, outcome.stored
            )
            availability.require_password(required=True, given=outcome.given, verified=matches)
            verified = outcome.stored
        raise VersionConflict("the attempt could not be created; retry")

    async def _create_once(
        self,
        principal: Principal,
        test_id: uuid.UUID,
        password: str | None,
        client: str | None,
        verified: str | None,
    ) -> tuple[AttemptView, bool] | _CheckPassword:
        async with self._context.db() as s, s.begin():
            test = await s.get(Test, test_id)
            if test is None:
                raise NotFound("test", test_id)
            now = await db_now(s)
            candidate = not principal.is_staff
            if candidate:
                availability.require_startable(
                    test,
                    classes=await student_classes(s, principal.user_id),
                    reservation=await reservation_of(s, test_id, principal.user_id),
                    now=now,
                    client=client,
                )
            open_attempt = await s.scalar(
                select(Attempt).where(
                    Attempt.test_id == test_id,
                    Attempt.user_id == principal.user_id,
                    Attempt.state.in_(OPEN_STATES),
                )
            )
            if open_attempt is not None:  # it was let in already: a retry, or another tab
                return await self._context.view(s, open_attempt, test, now, principal), False
            stored = test.access_password_hash if candidate else None
            if stored is not None and password is not None and verified != stored:
                return _CheckPassword(password, stored)
            availability.require_password(
                required=stored is not None, given=password, verified=verified == stored
            )
            used = await s.scalar(
                select(func.coalesce(func.max(Attempt.attempt_number), 0)).where(
                    Attempt.test_id == test_id, Attempt.user_id == principal.user_id
                )
            )
            if (used or 0) >= test.attempt_limit:
                raise AttemptLimitReached(test.attempt_limit)
            attempt = await self._new_attempt(s, test, principal.user_id, now)
            return await self._context.view(s, attempt, test, now, principal), True

    async def open_in_session(
        self,
        s: AsyncSession,
        *,
        test: Test,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        now: datetime,
        deadline: datetime,
        after: list[AfterCommit],
    ) -> Attempt:
        """Create and start a session attempt in the caller's transaction. Its deadline is the
        student's personal end of the global timer; the session is its authorization, so the
        test's attempt limit does not apply."""
        attempt = await self._new_attempt(s, test, user_id, now, session_id=session_id)
        attempt_rules.start(
            attempt, now=now, time_limit_seconds=test.time_limit_seconds, fixed_deadline=deadline
        )
        clock_at(attempt, now, enter=True)
        await s.flush()
        await self._context.log(
            HeldAttempt(s, attempt, test, now), ev.ATTEMPT_STARTED, "server",
            payload={"deadline": iso(deadline)},
        )  # fmt: skip
        attempt_id, late = str(attempt.id), late_window(policies_of(test))
        timers = self._context.timers
        after.append(lambda: timers.schedule(attempt_id, deadline, now, late=late))
        return attempt

    async def _new_attempt(
        self,
        s: AsyncSession,
        test: Test,
        user_id: uuid.UUID,
        now: datetime,
        *,
        session_id: uuid.UUID | None = None,
    ) -> Attempt:
        used = await s.scalar(
            select(func.coalesce(func.max(Attempt.attempt_number), 0)).where(
                Attempt.test_id == test.id, Attempt.user_id == user_id
            )
        )
        seed = layout = None
        if test.blueprint is None:
            item_ids = await s.scalars(
                select(Item.id).where(Item.test_id == test.id).order_by(Item.position)
            )
            form = [str(i) for i in item_ids]
        else:
            form, seed, layout = await _assemble(s, test)
        attempt = Attempt(
            test_id=test.id,
            user_id=user_id,
            session_id=session_id,
            attempt_number=(used or 0) + 1,
            form=form,
            seed=seed,
            layout=layout,
            created_at=now,
            extra_seconds=0,
            position=0,
            state="not_started",
        )
        s.add(attempt)
        await s.flush()
        await self._context.log(
            HeldAttempt(s, attempt, test, now), ev.ATTEMPT_CREATED, "server",
            payload={"test_id": str(test.id), "attempt_number": attempt.attempt_number,
                     "form": attempt.form, "layout": attempt.layout,
                     "seed_sha256": sealing.digest(seed) if seed else None},
        )  # fmt: skip
        return attempt


async def _assemble(s: AsyncSession, test: Test) -> tuple[list[str], str, dict[str, Any]]:
    """Draw this attempt's form with a fresh secret seed and pin the item versions."""
    blueprint = await blueprint_of(s, test)
    rows = await available_items(s, test.id, blueprint)
    seed = new_seed()
    candidates = {k: candidate_of(r) for k, r in rows.items()}
    try:
        drawn = assemble(blueprint, candidates, seed)
        cat = begin(blueprint, drawn, candidates, adaptive.calibrated(rows), seed)
    except ValueError as short:
        raise Conflict(
            "form_unavailable",
            f"the item bank cannot fill this test right now: {short}",
            test_id=str(test.id),
        ) from None
    pinned = [*drawn.items, *(i for st in cat.values() for i in st.pool)]
    layout = drawn.as_json() | {"versions": {i: str(rows[i].id) for i in pinned}}
    if cat:
        layout["adaptive"] = {k: st.as_json() for k, st in cat.items()}
    return [str(rows[i].id) for i in drawn.items], seed, layout


@dataclass(frozen=True)
class _CheckPassword:
    """The creation stopped to have `given` checked against the test's `stored` hash."""

    given: str
    stored: str = field(repr=False)
