"""The answer path, and nothing else: the hottest write the server makes.

Five statements per answer (docs/decisions.md, "Answers"): the locked attempt with its test, one
round trip for the clock, the item's state and a prior answer, then the history row and the
ledger event. Keep it that way: any read added here is paid on every answer.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from delivery_service.domain import attempts as attempt_rules
from delivery_service.domain import section_clock
from delivery_service.domain.attempt_machine import FINAL_STATES
from delivery_service.domain.errors import (
    AttemptNotInProgress,
    ClientSeqConflict,
    Conflict,
    DeadlinePassed,
    InvalidResponse,
)
from delivery_service.domain.principal import Principal
from delivery_service.domain.timing import iso
from delivery_service.read_models.attempts import AnswerAck, ItemFeedback
from delivery_service.services.attempts.context import AttemptContext, HeldAttempt, locked_attempt
from delivery_service.services.attempts.ending import finish
from delivery_service.storage import answers as stored
from delivery_service.storage.database import db_now
from delivery_service.storage.models import Test
from integrity import chain as sealing
from integrity import events as ev
from test_assembly.feedback import feedback_for
from test_assembly.interactions import ItemContent, ResponseError, interaction_for


class AttemptAnswers:
    def __init__(self, context: AttemptContext) -> None:
        self._context = context

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
            metrics = self._context.metrics
            if metrics is not None:
                metrics.answer_save.observe(time.perf_counter() - started)
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
        async with self._context.db() as s, s.begin():
            attempt = await locked_attempt(s, attempt_id)
            test = await s.get(Test, attempt.test_id) if attempt else None
            if attempt is None or test is None:
                return
            held = HeldAttempt(s, attempt, test, await db_now(s))
            await self._context.log(
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
        context = self._context
        async with context.db() as s:
            async with s.begin():
                attempt, test = await context.row(s, attempt_id, principal, "owner", lock=True)
                item = await context.item(s, attempt, item_id)
                try:
                    normalized = interaction_for(item).normalize(item, response)
                except ResponseError as bad:
                    raise InvalidResponse(bad.message, **bad.details) from None
                # The clock, the item's state and a prior answer, in one round trip after the
                # lock (the answer path's cost is mostly its round trips).
                found = await stored.lookup(s, attempt.id, uuid.UUID(item.item_id), client_seq)
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
                        feedback=_answer_feedback(held, item, prior.response),
                    )
                overdue = attempt_rules.is_overdue(
                    attempt, now=held.now, grace=context.expiry_grace(held)
                )
                late = overdue or attempt_rules.is_overdue(
                    attempt, now=held.now, grace=context.grace
                )
                if late:
                    await context.log(
                        held, ev.LATE_ANSWER_REFUSED, "server", actor=principal.user_id,
                        payload={"item_id": item_id, "client_seq": client_seq,
                                 "connection_id": connection_id},
                    )  # fmt: skip
                    if overdue:
                        await finish(context, held, "expire")
                else:
                    attempt_rules.require_writable(attempt, now=held.now, grace=context.grace)
                    section_clock.require_time(
                        attempt.layout, item.identifier, held.now, context.grace
                    )
                    ack = await self._record_answer(
                        held, item, found.state, normalized, client_seq, principal, connection_id
                    )
            if late:
                # The refusal is committed evidence; in a grace window only submitting is left.
                await context.run_after(held)
                raise DeadlinePassed(iso(attempt.deadline or held.now))
            context.notify_proctors(
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
            await context.run_after(held)
            return ack

    async def _record_answer(
        self,
        held: HeldAttempt,
        item: ItemContent,
        state: stored.AnswerState,
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
        feedback = _answer_feedback(held, item, normalized) if applied else None
        locked = feedback is not None  # feedback given: a second try would make it a hint
        await stored.record(
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
        await self._context.log(
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


def _answer_feedback(held: HeldAttempt, item: ItemContent, response: Any) -> ItemFeedback | None:
    """Per-item feedback tests score an answer as it is given (clearing one scores nothing)."""
    policies = held.policies
    if policies.feedback != "per_item" or response is None:
        return None
    told = feedback_for(item, response, policies)
    return ItemFeedback.model_validate(told, from_attributes=True)
