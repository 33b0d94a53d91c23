"""What every attempt use case shares: the session maker, the database clock, the after-commit
steps (timers and the bus), the ledger, and the one way a decision is made.

A write loads the attempt under a lock, reads the database clock, lets the domain decide,
commits, and only then schedules timers and publishes events (`write`). Ordering matters: an
answer is acknowledged only after its commit (DESIGN.md §2 rule 1), and a Redis failure after a
commit is logged, never reported as a failed write, because the sweepers' reconcile pass rebuilds
whatever Redis missed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, TypeVar, cast

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from delivery_service.domain import attempts as attempt_rules
from delivery_service.domain.authority import require_reason
from delivery_service.domain.errors import DeadlinePassed, NotFound, UnknownItem, VersionConflict
from delivery_service.domain.grace import expiry_grace, late_window
from delivery_service.domain.principal import Principal
from delivery_service.domain.timing import iso
from delivery_service.live.bus import Bus
from delivery_service.live.keys import attempt_channel, proctor_channel
from delivery_service.live.timers import Timers
from delivery_service.metrics import Metrics
from delivery_service.read_models.attempts import AttemptView, CurrentItem
from delivery_service.services.access import (
    AttemptAccess,
    attempt_access,
    needs_teaches,
    teaches_attempt,
)
from delivery_service.services.after_commit import AfterCommit, run_safely
from delivery_service.services.attempts.ending import finish
from delivery_service.services.attempts.views import attempt_view, current_item, timer_of
from delivery_service.services.audience import AccessPasswords
from delivery_service.services.items import ItemCache
from delivery_service.services.scores import item_states, policies_of
from delivery_service.storage.database import clock_column, clock_value, db_now
from delivery_service.storage.ledger import Ledger, attempt_chain
from delivery_service.storage.models import Attempt, ItemState, ResponseEvent, Test
from integrity.events import Source
from test_assembly.interactions import ItemContent
from test_assembly.model import Policies

log = logging.getLogger(__name__)

# The answer path's statements, built once with bound parameters: on that path, building a
# statement (its WHERE clauses, its options) cost more CPU than PostgreSQL took to run it.
# Statements are immutable values, so sharing them between tasks is safe.
_ATTEMPT_AND_TEST = (
    select(Attempt, Test)
    .join(Test, Test.id == Attempt.test_id)
    .where(Attempt.id == bindparam("attempt_id"))
    .execution_options(populate_existing=True)
)
_ATTEMPT_STATEMENTS: dict[tuple[bool, bool, str], Select[Any]] = {}


def _attempt_statement(*, lock: bool, teaches: bool, dialect: str) -> Select[Any]:
    """The attempt and its test; with `teaches`, whether the `user_id` parameter teaches its
    class (only a teacher's staff access reads it: the answer path does not); locked (the clock
    is then read after the lock is granted, apart) or with the clock in the same statement (an
    unlocked read waits for nothing between the row and the clock)."""
    key = (lock, teaches, dialect)
    cached = _ATTEMPT_STATEMENTS.get(key)
    if cached is None:
        statement = cast(Select[Any], _ATTEMPT_AND_TEST)
        if teaches:
            statement = statement.add_columns(
                teaches_attempt(Attempt.session_id, Attempt.user_id).label("teaches")
            )
        if lock:
            statement = statement.with_for_update(of=Attempt)
        else:
            statement = statement.add_columns(clock_column(dialect))
        cached = _ATTEMPT_STATEMENTS[key] = statement
    return cached


R = TypeVar("R")


@dataclass
class HeldAttempt:
    """One attempt held in an open transaction (its row locked for a write), with what every
    decision needs: the test, the database's `now`, and what to run once it commits."""

    session: AsyncSession
    attempt: Attempt
    test: Test
    now: datetime
    after: list[AfterCommit] = field(default_factory=list)

    @cached_property
    def policies(self) -> Policies:
        """The test's policies, parsed once per decision (the answer path reads them twice)."""
        return policies_of(self.test)


class AttemptContext:
    """The dependencies and transaction steps every part of the attempt service uses; each part
    (creation, reads, answers, navigation, lifecycle, expiry) holds one and adds its use cases."""

    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        timers: Timers,
        bus: Bus,
        items: ItemCache,
        grace: timedelta,
        ledger: Ledger,
        passwords: AccessPasswords,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.passwords = passwords
        self.ledger = ledger
        self.metrics = metrics
        self.timers = timers
        self.bus = bus
        self.items = items
        self.grace = grace

    # ---- one decision, in one transaction ---------------------------------------------------

    async def write(
        self,
        principal: Principal,
        attempt_id: uuid.UUID,
        access: AttemptAccess,
        decide: Callable[[HeldAttempt], Awaitable[R]],
    ) -> R:
        """Run one decision in a transaction with optimistic locking; expire first if overdue."""
        for _ in range(3):
            try:
                async with self.db() as s:
                    async with s.begin():
                        held = await self.load(s, attempt_id, principal, access, lock=True)
                        overdue = attempt_rules.is_overdue(
                            held.attempt, now=held.now, grace=self.expiry_grace(held)
                        )
                        if overdue:
                            completion = await finish(self, held, "expire")
                        else:
                            result = await decide(held)
                    await self.run_after(held)
                    if overdue:
                        raise DeadlinePassed(iso(completion.ended_at))
                    return result
            except StaleDataError:
                log.info("attempt %s changed underneath; retrying", attempt_id)
        raise VersionConflict("the attempt kept changing; retry")

    async def load(
        self,
        s: AsyncSession,
        attempt_id: uuid.UUID,
        principal: Principal,
        access: AttemptAccess,
        *,
        lock: bool,
    ) -> HeldAttempt:
        attempt, test, now = await self.fetch(s, attempt_id, principal, access, lock=lock)
        return HeldAttempt(s, attempt, test, now if now is not None else await db_now(s))

    @classmethod
    async def row(
        cls,
        s: AsyncSession,
        attempt_id: uuid.UUID,
        principal: Principal,
        access: AttemptAccess,
        *,
        lock: bool,
    ) -> tuple[Attempt, Test]:
        """The attempt and its test in one statement (tests never change once written); only
        the attempt row is locked."""
        attempt, test, _ = await cls.fetch(s, attempt_id, principal, access, lock=lock)
        return attempt, test

    @staticmethod
    async def fetch(
        s: AsyncSession,
        attempt_id: uuid.UUID,
        principal: Principal,
        access: AttemptAccess,
        *,
        lock: bool,
    ) -> tuple[Attempt, Test, datetime | None]:
        """The row, if `principal` may act on it with `access` (refused as REST refuses), and
        the database clock when the read was unlocked."""
        dialect = s.get_bind().dialect.name
        teaches = needs_teaches(principal, access)
        statement = _attempt_statement(lock=lock, teaches=teaches, dialect=dialect)
        found = (
            await s.execute(statement, {"attempt_id": attempt_id, "user_id": principal.user_id})
        ).one_or_none()
        if found is None:
            attempt_access(attempt_id, None, principal, access)
            raise NotFound("attempt", attempt_id)  # pragma: no cover - refused just above
        attempt, test, *more = found
        attempt_access(
            attempt_id, attempt.user_id, principal, access, teaches=teaches and bool(more[0])
        )
        return attempt, test, None if lock else clock_value(dialect, more[-1])

    async def run_after(self, held: HeldAttempt) -> None:
        """What a committed decision left to do (timers, events), each failure logged."""
        for action in held.after:
            await run_safely(action())

    def expiry_grace(self, held: HeldAttempt) -> timedelta:
        return expiry_grace(self.grace, held.policies)

    # ---- the ledger and the announcements -----------------------------------------------------

    async def log(
        self,
        held: HeldAttempt,
        type_: str,
        source: Source,
        *,
        actor: uuid.UUID | None = None,
        payload: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        """Append to the attempt's ledger chain in the same transaction as the change."""
        await self.ledger.record(
            held.session,
            held.now,
            chain=attempt_chain(held.attempt.id),
            type=type_,
            source=source,
            actor_id=actor,
            candidate_id=held.attempt.user_id,
            attempt_id=held.attempt.id,
            session_id=held.attempt.session_id,
            payload=payload,
            reason=reason,
        )

    async def act(
        self,
        held: HeldAttempt,
        principal: Principal,
        action: str,
        reason: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """A pause, resume or extension: staff actions are the audit trail, and those that change
        the outcome need a reason; a candidate pausing their own attempt is their event."""
        require_reason(principal, action, reason)
        source: Source = "staff" if principal.is_staff else "candidate"
        await self.log(
            held, action, source, actor=principal.user_id, payload=details, reason=reason
        )

    def after_timer_change(self, held: HeldAttempt) -> None:
        """Re-arm the timer and tell the candidate (and proctors) once `held` commits."""
        attempt_id = str(held.attempt.id)
        timer = timer_of(held.attempt, held.test, held.now)
        if held.attempt.state == "in_progress" and held.attempt.deadline is not None:
            deadline, now, late = held.attempt.deadline, held.now, late_window(held.policies)
            held.after.append(lambda: self.timers.schedule(attempt_id, deadline, now, late=late))
        else:
            held.after.append(lambda: self.timers.cancel(attempt_id))
        data = {"state": held.attempt.state, "timer": timer.model_dump(mode="json")}
        held.after.append(lambda: self.bus.publish(attempt_channel(attempt_id), "timer", data))
        self.notify_proctors(held, "timer_changed", data)

    def notify_proctors(self, held: HeldAttempt, type_: str, data: dict[str, Any]) -> None:
        """Session attempts also report to their session's proctor feed, after the commit."""
        session_id = held.attempt.session_id
        if session_id is None:
            return
        event = data | {"student_id": str(held.attempt.user_id), "attempt_id": str(held.attempt.id)}
        channel = proctor_channel(str(session_id))
        held.after.append(lambda: self.bus.publish(channel, type_, event))

    # ---- the attempt's items, and what the candidate sees -------------------------------------

    async def form(self, s: AsyncSession, attempt: Attempt) -> list[ItemContent]:
        return await self.items.many(s, attempt.form)

    async def item(self, s: AsyncSession, attempt: Attempt, identifier: str) -> ItemContent:
        for item in await self.form(s, attempt):
            if item.identifier == identifier:
                return item
        raise UnknownItem(identifier)

    @staticmethod
    async def state_row(s: AsyncSession, attempt_id: uuid.UUID, item: ItemContent) -> ItemState:
        key = (attempt_id, uuid.UUID(item.item_id))
        return await s.get(ItemState, key) or _new_state(s, *key)

    async def current(self, held: HeldAttempt) -> CurrentItem:
        form = await self.form(held.session, held.attempt)
        item = form[held.attempt.position]
        state = await held.session.get(ItemState, (held.attempt.id, uuid.UUID(item.item_id)))
        return current_item(held.attempt, held.test, form, state, now=held.now)

    async def view(
        self, s: AsyncSession, attempt: Attempt, test: Test, now: datetime, principal: Principal
    ) -> AttemptView:
        """The view of rows this transaction holds (after a write changed them)."""
        last_seq = await s.scalar(
            select(func.coalesce(func.max(ResponseEvent.client_seq), 0)).where(
                ResponseEvent.attempt_id == attempt.id
            )
        )
        return attempt_view(
            attempt,
            test,
            await self.form(s, attempt),
            await item_states(s, attempt.id),
            now=now,
            principal=principal,
            last_client_seq=int(last_seq or 0),
        )


def _new_state(s: AsyncSession, attempt_id: uuid.UUID, item_id: uuid.UUID) -> ItemState:
    """An item the candidate has not touched yet gets its state row on first write."""
    state = ItemState(attempt_id=attempt_id, item_id=item_id, flagged=False)
    s.add(state)
    return state


async def locked_attempt(s: AsyncSession, attempt_id: uuid.UUID) -> Attempt | None:
    """The attempt row under a lock, fresh from the database (not the session's cached copy)."""
    found: Attempt | None = await s.scalar(
        select(Attempt)
        .where(Attempt.id == attempt_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return found


async def held_in(s: AsyncSession, attempt: Attempt, now: datetime | None = None) -> HeldAttempt:
    """An attempt the caller already locked, with its test and the clock (read now unless given)."""
    test = await s.get(Test, attempt.test_id)
    if test is None:  # pragma: no cover - foreign key guarantees it
        raise NotFound("test", attempt.test_id)
    return HeldAttempt(s, attempt, test, now if now is not None else await db_now(s))
