"""Attempt use cases: each loads the row under a lock, reads the database clock, lets the domain
decide, commits, and only then schedules timers and publishes events.

Ordering matters: an answer is acknowledged only after its commit (DESIGN.md §2 rule 1), and a
Redis failure after a commit is logged, never reported as a failed write, because the sweepers'
reconcile pass rebuilds whatever Redis missed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from delivery_service.domain import attempts as rules
from delivery_service.domain import navigation, section_clock
from delivery_service.domain.attempt_machine import FINAL_STATES, OPEN_STATES
from delivery_service.domain.authority import may_pause, require_reason
from delivery_service.domain.errors import (
    AttemptLimitReached,
    AttemptNotInProgress,
    ClientSeqConflict,
    Conflict,
    DeadlinePassed,
    Forbidden,
    InvalidResponse,
    NavigationForbidden,
    NotFound,
    UnknownItem,
    VersionConflict,
)
from delivery_service.domain.grace import expiry_grace, late_window
from delivery_service.domain.section_clock import clock_at
from delivery_service.domain.timing import iso
from delivery_service.live.bus import Bus
from delivery_service.live.keys import attempt_channel, proctor_channel
from delivery_service.live.timers import Timers
from delivery_service.metrics import Metrics
from delivery_service.schemas import (
    AnswerAck,
    AttemptSummary,
    AttemptView,
    Completion,
    CurrentItem,
    DeliveredItem,
    FlagAck,
    ItemFeedback,
    Progress,
    SectionTime,
    Timer,
)
from delivery_service.services import adaptive
from delivery_service.services.access import (
    AttemptAccess,
    attempt_access,
    attempts_managed_by,
    membership,
    needs_teaches,
    teaches_attempt,
)
from delivery_service.services.after_commit import AfterCommit, run_safely
from delivery_service.services.attempt_views import attempt_view, read_view, timer_of
from delivery_service.services.bank import available_items, candidate_of
from delivery_service.services.catalog import blueprint_of
from delivery_service.services.items import ItemCache
from delivery_service.services.ledger_log import log_event
from delivery_service.services.scores import (
    item_feedback,
    item_states,
    policies_of,
    record_result,
    score_attempt,
)
from delivery_service.services.security import Principal
from delivery_service.storage import answers
from delivery_service.storage.database import clock_column, clock_value, db_now
from delivery_service.storage.ledger import Ledger, attempt_chain
from delivery_service.storage.models import (
    Attempt,
    GroupSession,
    Item,
    ItemState,
    ResponseEvent,
    Test,
)
from integrity import chain as sealing
from integrity import events as ev
from integrity.events import Source
from test_assembly.adaptive import advance, begin, close
from test_assembly.assembly import Form, assemble
from test_assembly.feedback import feedback_for
from test_assembly.interactions import ItemContent, ResponseError, interaction_for
from test_assembly.model import Policies
from test_assembly.rng import new_seed
from test_assembly.scoring import score_item

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


class AttemptService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        timers: Timers,
        bus: Bus,
        items: ItemCache,
        grace: timedelta,
        ledger: Ledger,
        metrics: Metrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._ledger = ledger
        self._metrics = metrics
        self._timers = timers
        self._bus = bus
        self._items = items
        self._grace = grace

    # ---- creating and reading -------------------------------------------------------------

    async def create(self, principal: Principal, test_id: uuid.UUID) -> tuple[AttemptView, bool]:
        """Create the caller's next attempt, or return the open one (created=False)."""
        for _ in range(3):
            try:
                async with self._sessions() as s, s.begin():
                    test = await s.get(Test, test_id)
                    if test is None:
                        raise NotFound("test", test_id)
                    now = await db_now(s)
                    if not principal.is_staff:
                        await _refuse_if_reserved(s, test_id, principal)
                    open_attempt = await s.scalar(
                        select(Attempt).where(
                            Attempt.test_id == test_id,
                            Attempt.user_id == principal.user_id,
                            Attempt.state.in_(OPEN_STATES),
                        )
                    )
                    if open_attempt is not None:
                        return await self._view(s, open_attempt, test, now, principal), False
                    used = await s.scalar(
                        select(func.coalesce(func.max(Attempt.attempt_number), 0)).where(
                            Attempt.test_id == test_id, Attempt.user_id == principal.user_id
                        )
                    )
                    if (used or 0) >= test.attempt_limit:
                        raise AttemptLimitReached(test.attempt_limit)
                    attempt = await self._new_attempt(s, test, principal.user_id, now)
                    return await self._view(s, attempt, test, now, principal), True
            except IntegrityError:
                continue  # a concurrent create took this attempt number: look again
        raise VersionConflict("the attempt could not be created; retry")

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
        async with self._sessions() as s:
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
        rules.start(
            attempt, now=now, time_limit_seconds=test.time_limit_seconds, fixed_deadline=deadline
        )
        clock_at(attempt, now, enter=True)
        await s.flush()
        await self.log(
            HeldAttempt(s, attempt, test, now), ev.ATTEMPT_STARTED, "server",
            payload={"deadline": iso(deadline)},
        )  # fmt: skip
        attempt_id, late = str(attempt.id), late_window(policies_of(test))
        after.append(lambda: self._timers.schedule(attempt_id, deadline, now, late=late))
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
            form, seed, layout = await self._assemble(s, test)
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
        await self.log(
            HeldAttempt(s, attempt, test, now), ev.ATTEMPT_CREATED, "server",
            payload={"test_id": str(test.id), "attempt_number": attempt.attempt_number,
                     "form": attempt.form, "layout": attempt.layout,
                     "seed_sha256": sealing.digest(seed) if seed else None},
        )  # fmt: skip
        return attempt

    @staticmethod
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

    async def get(self, principal: Principal, attempt_id: uuid.UUID) -> AttemptView:
        async with self._sessions() as s, s.begin():
            return await self.view_in(s, principal, attempt_id)

    async def view_in(
        self, s: AsyncSession, principal: Principal, attempt_id: uuid.UUID
    ) -> AttemptView:
        """The attempt as `principal` may see it, read inside the caller's transaction (a
        socket's state sync reads it beside the session): one Core statement."""
        return await read_view(s, self._items, principal, attempt_id)

    async def require(
        self, principal: Principal, attempt_id: uuid.UUID, access: AttemptAccess
    ) -> None:
        """Refuse (as REST refuses) unless `principal` may act on the attempt with `access`."""
        async with self._sessions() as s:
            await self._fetch(s, attempt_id, principal, access, lock=False)

    async def current(self, principal: Principal, attempt_id: uuid.UUID) -> CurrentItem:
        async with self._sessions() as s, s.begin():
            held = await self._load(s, attempt_id, principal, "owner", lock=False)
            if held.attempt.state != "in_progress":
                raise AttemptNotInProgress(held.attempt.state)
            return await self._current(held)

    async def progress(self, principal: Principal, attempt_id: uuid.UUID) -> Progress:
        async with self._sessions() as s, s.begin():
            held = await self._load(s, attempt_id, principal, "read", lock=False)
            states = await item_states(s, held.attempt.id)
            return Progress(
                state=held.attempt.state,
                position=held.attempt.position,
                total_items=adaptive.planned_total(held.attempt.layout, len(held.attempt.form)),
                answered=sum(1 for st in states.values() if st.response is not None),
                flagged=sum(1 for st in states.values() if st.flagged),
                timer=self._timer(held.attempt, held.test, held.now),
            )

    async def timer(self, principal: Principal, attempt_id: uuid.UUID) -> Timer:
        async with self._sessions() as s, s.begin():
            held = await self._load(s, attempt_id, principal, "read", lock=False)
            return self._timer(held.attempt, held.test, held.now)

    # ---- the candidate's writes ------------------------------------------------------------

    async def start(self, principal: Principal, attempt_id: uuid.UUID) -> AttemptView:
        async def decide(held: HeldAttempt) -> AttemptView:
            rules.start(held.attempt, now=held.now, time_limit_seconds=held.test.time_limit_seconds)
            clock_at(held.attempt, held.now, enter=True)
            deadline = iso(held.attempt.deadline) if held.attempt.deadline else None
            await self.log(
                held, ev.ATTEMPT_STARTED, "candidate", actor=principal.user_id,
                payload={"deadline": deadline},
            )  # fmt: skip
            self._after_timer_change(held)
            return await self._view(held.session, held.attempt, held.test, held.now, principal)

        return await self._write(principal, attempt_id, "owner", decide)

    async def save_answer(
        self,
        principal: Principal,
        attempt_id: uuid.UUID,
        *,
        item_id: str,
        response: Any,
        client_seq: int,
        connection_id: str | None = None,
    ) -> AnswerAck:
        started = time.perf_counter()
        try:
            ack = await self._save_answer(
                principal, attempt_id, item_id, response, client_seq, connection_id
            )
            if self._metrics is not None:
                self._metrics.answer_save.observe(time.perf_counter() - started)
            return ack
        except AttemptNotInProgress as refused:
            if refused.details.get("state") in FINAL_STATES:
                await self._record_late_answer(principal, attempt_id, item_id, client_seq)
            raise

    async def _record_late_answer(
        self, principal: Principal, attempt_id: uuid.UUID, item_id: str, client_seq: int
    ) -> None:
        """An answer for an attempt that has ended is refused; the refusal is evidence too
        (its own transaction: the refused write rolled back)."""
        async with self._sessions() as s, s.begin():
            attempt = await locked_attempt(s, attempt_id)
            test = await s.get(Test, attempt.test_id) if attempt else None
            if attempt is None or test is None:
                return
            held = HeldAttempt(s, attempt, test, await db_now(s))
            await self.log(
                held, ev.LATE_ANSWER_REFUSED, "server", actor=principal.user_id,
                payload={"item_id": item_id, "client_seq": client_seq, "state": attempt.state},
            )  # fmt: skip

    async def _save_answer(
        self,
        principal: Principal,
        attempt_id: uuid.UUID,
        item_id: str,
        response: Any,
        client_seq: int,
        connection_id: str | None,
    ) -> AnswerAck:
        async with self._sessions() as s:
            async with s.begin():
                attempt, test = await self._row(s, attempt_id, principal, "owner", lock=True)
                item = await self._item(s, attempt, item_id)
                try:
                    normalized = interaction_for(item).normalize(item, response)
                except ResponseError as bad:
                    raise InvalidResponse(bad.message, **bad.details) from None
                # The clock, the item's state and a prior answer, in one round trip after the
                # lock (the answer path's cost is mostly its round trips).
                found = await answers.lookup(s, attempt.id, uuid.UUID(item.item_id), client_seq)
                held = HeldAttempt(s, attempt, test, found.now)
                # A replay is answered before the deadline check: a client whose ack was lost must
                # get the same ack, even after time ran out.
                prior = found.prior
                if prior is not None:
                    if prior.item_id != uuid.UUID(item.item_id) or prior.response != normalized:
                        raise ClientSeqConflict(client_seq)
                    return AnswerAck(
                        item_id=item_id,
                        client_seq=client_seq,
                        applied=prior.applied,
                        duplicate=True,
                        saved_at=prior.received_at,
                        answered=found.state.answered,
                        feedback=self._answer_feedback(held, item, prior.response),
                    )
                overdue = rules.is_overdue(attempt, now=held.now, grace=self.expiry_grace(held))
                late = overdue or rules.is_overdue(attempt, now=held.now, grace=self._grace)
                if late:
                    await self.log(
                        held, ev.LATE_ANSWER_REFUSED, "server", actor=principal.user_id,
                        payload={"item_id": item_id, "client_seq": client_seq,
                                 "connection_id": connection_id},
                    )  # fmt: skip
                    if overdue:
                        await self._finish(held, "expire")
                else:
                    rules.require_writable(attempt, now=held.now, grace=self._grace)
                    self._require_section_time(held, item)
                    ack = await self._record_answer(
                        held, item, found.state, normalized, client_seq, principal, connection_id
                    )
            if late:
                # The refusal is committed evidence; in a grace window only submitting is left.
                await self._run_after(held)
                raise DeadlinePassed(iso(attempt.deadline or held.now))
            self._notify_proctors(
                held,
                "answer_submitted",
                {
                    "item_id": ack.item_id,
                    "client_seq": ack.client_seq,
                    "applied": ack.applied,
                    "response": normalized,
                    "answered": ack.answered,
                    "total_items": len(attempt.form),
                    "at": iso(ack.saved_at),
                },
            )
            await self._run_after(held)
            return ack

    async def navigate(
        self, principal: Principal, attempt_id: uuid.UUID, to: navigation.Target
    ) -> CurrentItem:
        async def decide(held: HeldAttempt) -> CurrentItem:
            rules.require_writable(held.attempt, now=held.now, grace=self._grace)
            target = to
            if await self._adaptive_step(held, target, principal) == "stopped_last":
                return await self._current(held)  # the adaptive end of the test: submit is next
            leaving = held.attempt.position
            here, limit, next_section = section_clock.section_at(held.attempt.layout, leaving)
            spent = limit is not None and self._section_left(held, here, limit) <= timedelta(0)
            if spent and target == "next" and next_section < len(held.attempt.form):
                target = next_section  # this section's time is spent: on to the next section
            held.attempt.position = navigation.next_position(
                current=held.attempt.position,
                to=target,
                total=len(held.attempt.form),
                mode="linear" if held.test.navigation_mode == "linear" else "nonlinear",
            )
            if held.attempt.position != leaving:
                await self._submit_individually(held, leaving)
                there, there_limit, _ = section_clock.section_at(
                    held.attempt.layout, held.attempt.position
                )
                if there != here and there_limit is not None:
                    if self._section_left(held, there, there_limit) <= timedelta(0):
                        raise Conflict(
                            "section_time_over",
                            f"the time for section {there} is spent",
                            section=there,
                        )
                if there != here:
                    clock_at(held.attempt, held.now, enter=False, position=leaving)
                    clock_at(held.attempt, held.now, enter=True)
            self._notify_proctors(
                held,
                "progress_update",
                {"position": held.attempt.position, "total_items": len(held.attempt.form)},
            )
            return await self._current(held)

        return await self._write(principal, attempt_id, "owner", decide)

    @staticmethod
    def _section_left(held: HeldAttempt, section: str, limit: int) -> timedelta:
        return section_clock.left(held.attempt.layout, section, limit, held.now)

    def _require_section_time(self, held: HeldAttempt, item: ItemContent) -> None:
        section_clock.require_time(held.attempt.layout, item.identifier, held.now, self._grace)

    def _section_time(self, held: HeldAttempt) -> SectionTime | None:
        running = held.attempt.state == "in_progress"
        left = section_clock.time_left(
            held.attempt.layout, held.attempt.position, held.now, running=running
        )
        return None if left is None else SectionTime.model_validate(left, from_attributes=True)

    async def _submit_individually(self, held: HeldAttempt, position: int) -> None:
        """QTI's `individual` submission mode: an item's response is submitted when the
        candidate leaves it, and is final from then on (one attempt per item)."""
        if held.policies.submission_mode != "individual":
            return
        item = (await self._form(held.session, held.attempt))[position]
        state = await held.session.get(ItemState, (held.attempt.id, uuid.UUID(item.item_id)))
        if state is not None and state.response is not None:
            state.locked = True

    async def _adaptive_step(
        self, held: HeldAttempt, to: navigation.Target, principal: Principal
    ) -> str:
        """Leaving the current item of a running adaptive section: score it, lock it, and let
        the engine choose what follows (another item of the section, or the section's end)."""
        if not (held.attempt.layout or {}).get("adaptive") or held.attempt.seed is None:
            return "not_adaptive"  # most tests: decided without reading the form
        form = await self._form(held.session, held.attempt)
        current = form[held.attempt.position]
        found = adaptive.frontier(held.attempt.layout, current.identifier)
        if found is None or held.attempt.layout is None:
            return "not_adaptive"
        if to not in ("next", held.attempt.position + 1):
            raise NavigationForbidden(
                "an adaptive section moves one item at a time, forward only",
                current=held.attempt.position,
            )
        section_id, state = found
        item_state = await self._state_row(held.session, held.attempt.id, current)
        scored = score_item(current, item_state.response)
        right = item_state.response is not None and scored.score == scored.max_score
        item_state.locked = True
        bank = await adaptive.bank_of(held.session, held.attempt.layout, state)
        step = advance(state, bank, current.identifier, right, seed=held.attempt.seed,
                       label=section_id)  # fmt: skip
        held.attempt.layout = adaptive.with_step(held.attempt.layout, section_id, state, step.item)
        held.attempt.form = adaptive.form_of(held.attempt.layout)
        await self.log(
            held, "adaptive_step", "server", actor=principal.user_id,
            payload={"section": section_id, "item_id": current.identifier, "score": int(right),
                     "theta": state.theta, "se": state.se, "next": step.item,
                     "stopped": step.reason},
        )  # fmt: skip
        last = held.attempt.position + 1 >= len(held.attempt.form)
        return "stopped_last" if step.item is None and last else "stepped"

    async def _close_adaptive(self, held: HeldAttempt) -> None:
        """At the end, an answered current item of a running adaptive section still counts in
        its ability estimate (the engine chooses nothing after it)."""
        layout = held.attempt.layout
        if not layout or not layout.get("adaptive"):
            return
        form = {item.identifier: item for item in await self._form(held.session, held.attempt)}
        for section in Form.from_json(layout).sections:
            found = adaptive.frontier(layout, section.items[-1]) if section.items else None
            if found is None:
                continue
            section_id, state = found
            item = form[section.items[-1]]
            item_state = await held.session.get(
                ItemState, (held.attempt.id, uuid.UUID(item.item_id))
            )
            if item_state is None or item_state.response is None:
                continue
            scored = score_item(item, item_state.response)
            bank = await adaptive.bank_of(held.session, layout, state)
            close(state, bank, item.identifier, scored.score == scored.max_score)
            layout = adaptive.with_step(layout, section_id, state, None)
        held.attempt.layout = layout

    async def adaptive_audit(
        self, principal: Principal, attempt_id: uuid.UUID
    ) -> list[dict[str, Any]]:
        """Staff: the engine replayed over each adaptive section's stored log."""
        async with self._sessions() as s, s.begin():
            held = await self._load(s, attempt_id, principal, "staff", lock=False)
            return await adaptive.audit(s, held.attempt)

    async def flag(
        self, principal: Principal, attempt_id: uuid.UUID, item_id: str, flagged: bool
    ) -> FlagAck:
        async def decide(held: HeldAttempt) -> FlagAck:
            rules.require_writable(held.attempt, now=held.now, grace=self._grace)
            item = await self._item(held.session, held.attempt, item_id)
            state = await self._state_row(held.session, held.attempt.id, item)
            state.flagged = flagged
            return FlagAck(item_id=item_id, flagged=flagged)

        return await self._write(principal, attempt_id, "owner", decide)

    async def pause(
        self, principal: Principal, attempt_id: uuid.UUID, *, reason: str | None = None
    ) -> AttemptView:
        async def decide(held: HeldAttempt) -> AttemptView:
            rules.pause(held.attempt, now=held.now, allowed=self._may_pause(principal, held))
            clock_at(held.attempt, held.now, enter=False)
            self._after_timer_change(held)
            await self._act(held, principal, "attempt_paused", reason)
            return await self._view(held.session, held.attempt, held.test, held.now, principal)

        return await self._write(principal, attempt_id, "read", decide)

    async def resume(
        self, principal: Principal, attempt_id: uuid.UUID, *, reason: str | None = None
    ) -> AttemptView:
        async def decide(held: HeldAttempt) -> AttemptView:
            if not self._may_pause(principal, held):
                raise Forbidden("only a proctor can resume this attempt")
            rules.resume(held.attempt, now=held.now)
            clock_at(held.attempt, held.now, enter=True)
            self._after_timer_change(held)
            await self._act(held, principal, "attempt_resumed", reason)
            return await self._view(held.session, held.attempt, held.test, held.now, principal)

        return await self._write(principal, attempt_id, "read", decide)

    @staticmethod
    def _may_pause(principal: Principal, held: HeldAttempt) -> bool:
        in_session = held.attempt.session_id is not None
        return may_pause(principal, allow_pause=held.test.allow_pause, in_session=in_session)

    async def submit(self, principal: Principal, attempt_id: uuid.UUID) -> Completion:
        async def decide(held: HeldAttempt) -> Completion:
            return await self._finish(held, "submit", actor=principal)

        return await self._write(principal, attempt_id, "owner", decide)

    # ---- staff actions --------------------------------------------------------------------

    async def terminate(
        self, principal: Principal, attempt_id: uuid.UUID, *, reason: str
    ) -> Completion:
        async def decide(held: HeldAttempt) -> Completion:
            return await self._finish(held, "terminate", actor=principal, reason=reason)

        return await self._write(principal, attempt_id, "staff", decide)

    async def extend(
        self,
        principal: Principal,
        attempt_id: uuid.UUID,
        seconds: int,
        *,
        reason: str | None = None,
    ) -> Timer:
        async def decide(held: HeldAttempt) -> Timer:
            require_reason(principal, "time_extended", reason)
            rules.extend(held.attempt, seconds=seconds)
            self._after_timer_change(held)
            deadline = iso(held.attempt.deadline) if held.attempt.deadline else None
            await self._act(
                held, principal, "time_extended", reason, {"seconds": seconds, "deadline": deadline}
            )
            return self._timer(held.attempt, held.test, held.now)

        return await self._write(principal, attempt_id, "staff", decide)

    async def end_for_session(
        self, s: AsyncSession, attempt: Attempt, now: datetime
    ) -> HeldAttempt:
        """End one open attempt when its session completes (caller's transaction): a running one
        expires, a paused one is terminated (the machine has no other way out of paused)."""
        test = await s.get(Test, attempt.test_id)
        if test is None:  # pragma: no cover - foreign key guarantees it
            raise NotFound("test", attempt.test_id)
        held = HeldAttempt(s, attempt, test, now)
        await self._finish(held, "expire" if attempt.state == "in_progress" else "terminate")
        return held

    async def enforce(
        self, attempt_id: uuid.UUID, action: Literal["pause", "terminate"], *, reason: str
    ) -> bool:
        """The server acting on a violation rule: pause (a proctor resumes) or terminate.
        Logged as the server's own act, with the rule's reason. False if nothing was running."""
        held: HeldAttempt | None = None
        async with self._sessions() as s:
            async with s.begin():
                attempt = await locked_attempt(s, attempt_id)
                if attempt is None or attempt.state != "in_progress":
                    return False
                test = await s.get(Test, attempt.test_id)
                if test is None:  # pragma: no cover - foreign key guarantees it
                    raise NotFound("test", attempt.test_id)
                held = HeldAttempt(s, attempt, test, await db_now(s))
                if rules.is_overdue(attempt, now=held.now, grace=self.expiry_grace(held)):
                    await self._finish(held, "expire")
                elif action == "pause":
                    rules.pause(attempt, now=held.now, allowed=True)
                    clock_at(attempt, held.now, enter=False)
                    self._after_timer_change(held)
                    await self.log(held, "attempt_paused", "server", reason=reason)
                else:
                    await self._finish(held, "terminate", reason=reason)
        await self._run_after(held)
        return True

    async def run_after(self, held: HeldAttempt) -> None:
        await self._run_after(held)

    # ---- the system's own work --------------------------------------------------------------

    async def expire_due(self, attempt_id: str) -> bool:
        """Expire an attempt the sweeper claimed, if the database agrees it is due. Exactly once:
        the locked row's state decides, whichever worker gets here first."""
        try:
            ident = uuid.UUID(attempt_id)
        except ValueError:
            await self._timers.cancel(attempt_id)
            return False
        held: HeldAttempt | None = None
        expired = False
        async with self._sessions() as s:
            async with s.begin():
                attempt = await locked_attempt(s, ident)
                if attempt is not None and attempt.state == "in_progress":
                    test = await s.get(Test, attempt.test_id)
                    if test is None:  # pragma: no cover - foreign key guarantees it
                        raise NotFound("test", attempt.test_id)
                    held = HeldAttempt(s, attempt, test, await db_now(s))
                    grace = self.expiry_grace(held)
                    expired = rules.is_overdue(attempt, now=held.now, grace=grace)
                    if expired:
                        await self._finish(held, "expire")
                        if self._metrics is not None and attempt.deadline is not None:
                            lag = held.now - (attempt.deadline + grace)
                            self._metrics.expiry_lag.observe(max(lag.total_seconds(), 0.0))
                    elif attempt.deadline is not None:
                        # Redis was early or stale (an extension it missed): re-arm only.
                        deadline, now = attempt.deadline, held.now
                        late = late_window(held.policies)
                        held.after.append(
                            lambda: self._timers.schedule(attempt_id, deadline, now, late=late)
                        )
        if held is None:  # gone, final or paused: nothing to time
            await run_safely(self._timers.cancel(attempt_id))
            return False
        await self._run_after(held)
        return expired

    async def running_deadlines(self) -> list[tuple[str, datetime, timedelta]]:
        """Every attempt whose timer runs, with its deadline and its test's submission window
        after it: what Redis must hold."""
        # Plain columns, and each test's policies parsed once: with 14,000 running attempts,
        # an ORM row per attempt held the worker's loop for 0.4 s every reconcile.
        async with self._sessions() as s:
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

    # ---- internals --------------------------------------------------------------------------

    async def _write(
        self,
        principal: Principal,
        attempt_id: uuid.UUID,
        access: AttemptAccess,
        decide: Callable[[HeldAttempt], Awaitable[R]],
    ) -> R:
        """Run one decision in a transaction with optimistic locking; expire first if overdue."""
        for _ in range(3):
            try:
                async with self._sessions() as s:
                    async with s.begin():
                        held = await self._load(s, attempt_id, principal, access, lock=True)
                        overdue = rules.is_overdue(
                            held.attempt, now=held.now, grace=self.expiry_grace(held)
                        )
                        if overdue:
                            completion = await self._finish(held, "expire")
                        else:
                            result = await decide(held)
                    await self._run_after(held)
                    if overdue:
                        raise DeadlinePassed(iso(completion.ended_at))
                    return result
            except StaleDataError:
                log.info("attempt %s changed underneath; retrying", attempt_id)
        raise VersionConflict("the attempt kept changing; retry")

    async def _load(
        self,
        s: AsyncSession,
        attempt_id: uuid.UUID,
        principal: Principal,
        access: AttemptAccess,
        *,
        lock: bool,
    ) -> HeldAttempt:
        attempt, test, now = await self._fetch(s, attempt_id, principal, access, lock=lock)
        return HeldAttempt(s, attempt, test, now if now is not None else await db_now(s))

    @classmethod
    async def _row(
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
        attempt, test, _ = await cls._fetch(s, attempt_id, principal, access, lock=lock)
        return attempt, test

    @staticmethod
    async def _fetch(
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

    async def _finish(
        self,
        held: HeldAttempt,
        event: str,
        *,
        actor: Principal | None = None,
        reason: str | None = None,
    ) -> Completion:
        """Submit, expire or terminate: score what was saved, stamp the end, announce it."""
        if event == "terminate" and actor is not None:
            require_reason(actor, "attempt_terminated", reason)
        rules.finish(held.attempt, event=event, now=held.now)
        await self._close_adaptive(held)
        form = await self._form(held.session, held.attempt)
        states = await item_states(held.session, held.attempt.id)
        result = score_attempt(held.attempt, held.test, form, states)
        record_result(held.attempt, result)
        for item in form:  # answered essays join the grading queue
            state = states.get(uuid.UUID(item.item_id))
            if state is not None and result.items[item.item_id].score is None:
                state.needs_grade = True
        policies = held.policies
        feedback = None
        if policies.feedback == "after_submission":
            feedback = [item_feedback(item, states, policies) for item in form]
        completion = Completion(
            attempt_id=held.attempt.id,
            state=held.attempt.state,
            reason=held.attempt.state,
            ended_at=held.now,
            answered=sum(1 for st in states.values() if st.response is not None),
            total_items=len(held.attempt.form),
            feedback=feedback,
        )
        source: Source = "server"
        if actor is not None:
            source = "staff" if actor.is_staff else "candidate"
        await self.log(
            held, f"attempt_{held.attempt.state}", source,
            actor=actor.user_id if actor else None, reason=reason,
            payload={"score": held.attempt.score, "max_score": held.attempt.max_score,
                     "pending_grades": held.attempt.pending_grades, "passed": held.attempt.passed,
                     "answered": completion.answered, "total_items": completion.total_items},
        )  # fmt: skip
        attempt_id = str(held.attempt.id)
        held.after.append(lambda: self._timers.cancel(attempt_id))
        held.after.append(
            lambda: self._bus.publish(
                attempt_channel(attempt_id),
                "assessment_completed",
                completion.model_dump(mode="json"),
            )
        )
        self._notify_proctors(
            held,
            "assessment_completed",
            completion.model_dump(mode="json") | {"score": held.attempt.score},
        )
        return completion

    def after_timer_change(self, held: HeldAttempt) -> None:
        """Re-arm the timer and tell the candidate (and proctors) once `held` commits."""
        self._after_timer_change(held)

    def _after_timer_change(self, held: HeldAttempt) -> None:
        attempt_id = str(held.attempt.id)
        timer = self._timer(held.attempt, held.test, held.now)
        if held.attempt.state == "in_progress" and held.attempt.deadline is not None:
            deadline, now, late = held.attempt.deadline, held.now, late_window(held.policies)
            held.after.append(lambda: self._timers.schedule(attempt_id, deadline, now, late=late))
        else:
            held.after.append(lambda: self._timers.cancel(attempt_id))
        data = {"state": held.attempt.state, "timer": timer.model_dump(mode="json")}
        held.after.append(lambda: self._bus.publish(attempt_channel(attempt_id), "timer", data))
        self._notify_proctors(held, "timer_changed", data)

    def _notify_proctors(self, held: HeldAttempt, type_: str, data: dict[str, Any]) -> None:
        """Session attempts also report to their session's proctor feed, after the commit."""
        session_id = held.attempt.session_id
        if session_id is None:
            return
        event = data | {"student_id": str(held.attempt.user_id), "attempt_id": str(held.attempt.id)}
        channel = proctor_channel(str(session_id))
        held.after.append(lambda: self._bus.publish(channel, type_, event))

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
        await log_event(
            self._ledger,
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

    async def _act(
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

    async def _run_after(self, held: HeldAttempt) -> None:
        for action in held.after:
            await run_safely(action())

    async def _record_answer(
        self,
        held: HeldAttempt,
        item: ItemContent,
        state: answers.AnswerState,
        normalized: Any,
        client_seq: int,
        principal: Principal,
        connection_id: str | None,
    ) -> AnswerAck:
        item_id = uuid.UUID(item.item_id)
        if state.locked:
            raise Conflict(
                "item_locked",
                "this item's answer is final: it was scored or the test moved on from it",
                item_id=item.identifier,
            )
        applied = state.client_seq is None or client_seq > state.client_seq
        feedback = self._answer_feedback(held, item, normalized) if applied else None
        locked = feedback is not None  # feedback given: a second try would make it a hint
        await answers.record(
            held.session,
            attempt_id=held.attempt.id,
            item_id=item_id,
            client_seq=client_seq,
            response=normalized,
            applied=applied,
            locked=locked,
            actor_id=principal.user_id,
            connection_id=connection_id,
            at=held.now,
        )
        answered = state.answered
        if applied:
            answered += (normalized is not None) - state.has_response
        await self.log(
            held, ev.ANSWER_SAVED, "candidate", actor=principal.user_id,
            payload={"item_id": item.identifier, "client_seq": client_seq, "applied": applied,
                     "response_sha256": sealing.digest(normalized),
                     "connection_id": connection_id, "locked": locked},
        )  # fmt: skip
        return AnswerAck(
            item_id=item.identifier,
            client_seq=client_seq,
            applied=applied,
            duplicate=False,
            saved_at=held.now,
            answered=answered,
            feedback=feedback,
        )

    @staticmethod
    def _answer_feedback(
        held: HeldAttempt, item: ItemContent, response: Any
    ) -> ItemFeedback | None:
        """Per-item feedback tests score an answer as it is given (clearing one scores nothing)."""
        policies = held.policies
        if policies.feedback != "per_item" or response is None:
            return None
        told = feedback_for(item, response, policies)
        return ItemFeedback.model_validate(told, from_attributes=True)

    def expiry_grace(self, held: HeldAttempt) -> timedelta:
        return expiry_grace(self._grace, held.policies)

    async def _form(self, s: AsyncSession, attempt: Attempt) -> list[ItemContent]:
        return await self._items.many(s, attempt.form)

    async def _item(self, s: AsyncSession, attempt: Attempt, identifier: str) -> ItemContent:
        for item in await self._form(s, attempt):
            if item.identifier == identifier:
                return item
        raise UnknownItem(identifier)

    @staticmethod
    async def _state_row(s: AsyncSession, attempt_id: uuid.UUID, item: ItemContent) -> ItemState:
        key = (attempt_id, uuid.UUID(item.item_id))
        return await s.get(ItemState, key) or _new_state(s, *key)

    def _timer(self, attempt: Attempt, test: Test, now: datetime) -> Timer:
        return timer_of(attempt, test, now)

    async def _current(self, held: HeldAttempt) -> CurrentItem:
        form = await self._form(held.session, held.attempt)
        item = form[held.attempt.position]
        state = await held.session.get(ItemState, (held.attempt.id, uuid.UUID(item.item_id)))
        return CurrentItem(
            position=held.attempt.position,
            total_items=adaptive.planned_total(held.attempt.layout, len(form)),
            item=delivered(item, held.attempt.position, held.attempt.layout),
            response=state.response if state else None,
            flagged=bool(state and state.flagged),
            timer=self._timer(held.attempt, held.test, held.now),
            locked=bool(state and state.locked),
            section_time=self._section_time(held),
        )

    async def _view(
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
            await self._form(s, attempt),
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


async def _refuse_if_reserved(s: AsyncSession, test_id: uuid.UUID, principal: Principal) -> None:
    """A test that a proctored session will use (or is using) cannot be taken self-paced:
    it would show the exam's items before the exam. The session is named to its own class's
    students only (to anyone else its id is another class's business)."""
    reserved = (
        await s.execute(
            select(GroupSession.id, *membership(GroupSession.class_id)).where(
                GroupSession.test_id == test_id,
                GroupSession.state.in_(("scheduled", "waiting", "in_progress")),
            ),
            {"user_id": principal.user_id},
        )
    ).first()
    if reserved is None:
        return
    session_id, _, enrolled = reserved
    details = {"session_id": str(session_id)} if enrolled else {}
    raise Conflict(
        "test_reserved_for_session",
        "this test is reserved for a proctored session; join the session instead",
        **details,
    )


def delivered(
    item: ItemContent, position: int, layout: dict[str, Any] | None = None
) -> DeliveredItem:
    """The candidate's view of an item: the body only, never `scoring`; choices in this
    attempt's shuffled order when the form shuffled them."""
    body = dict(item.body)
    section = None
    if layout:
        order = layout.get("choice_order", {}).get(item.identifier)
        if order and body.get("choices"):
            by_id = {c["identifier"]: c for c in body["choices"]}
            body["choices"] = [by_id[c] for c in order]
        section = next(
            (s["identifier"] for s in layout["sections"] if item.identifier in s["items"]), None
        )
    body.pop("shuffle", None)
    body.pop("title", None)
    return DeliveredItem.model_validate(
        body | {"item_id": item.identifier, "type": item.type, "position": position,
                "section": section}
    )  # fmt: skip
