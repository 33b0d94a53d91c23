"""Moving through the form: navigation with its section clocks, the adaptive engine's steps
(and the staff audit that replays them), and flags.

Leaving an item can make it final: in QTI's `individual` submission mode, and in a running
adaptive section, where the engine scores it to choose the next item.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from delivery_service.domain import attempts as attempt_rules
from delivery_service.domain import section_clock
from delivery_service.domain.errors import Conflict, NavigationForbidden
from delivery_service.domain.navigation import Target, next_position
from delivery_service.domain.principal import Principal
from delivery_service.domain.section_clock import clock_at
from delivery_service.read_models.attempts import CurrentItem, FlagAck
from delivery_service.services import adaptive
from delivery_service.services.attempts.context import AttemptContext, HeldAttempt
from delivery_service.storage.models import ItemState
from test_assembly.adaptive import advance
from test_assembly.scoring import score_item


class AttemptNavigation:
    def __init__(self, context: AttemptContext) -> None:
        self._context = context

    async def navigate(
        self, principal: Principal, attempt_id: uuid.UUID, to: Target
    ) -> CurrentItem:
        context = self._context

        async def decide(held: HeldAttempt) -> CurrentItem:
            attempt_rules.require_writable(held.attempt, now=held.now, grace=context.grace)
            target = to
            if await self._adaptive_step(held, target, principal) == "stopped_last":
                return await context.current(held)  # the adaptive end of the test: submit is next
            layout, leaving = held.attempt.layout, held.attempt.position
            here, limit, next_section = section_clock.section_at(layout, leaving)
            spent = limit is not None and section_clock.left(
                layout, here, limit, held.now
            ) <= timedelta(0)
            if spent and target == "next" and next_section < len(held.attempt.form):
                target = next_section  # this section's time is spent: on to the next section
            held.attempt.position = next_position(
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
                    left = section_clock.left(held.attempt.layout, there, there_limit, held.now)
                    if left <= timedelta(0):
                        raise Conflict(
                            "section_time_over",
                            f"the time for section {there} is spent",
                            section=there,
                        )
                if there != here:
                    clock_at(held.attempt, held.now, enter=False, position=leaving)
                    clock_at(held.attempt, held.now, enter=True)
            context.notify_proctors(
                held,
                "progress_update",
                {"position": held.attempt.position, "total_items": len(held.attempt.form)},
            )
            return await context.current(held)

        return await context.write(principal, attempt_id, "owner", decide)

    async def flag(
        self, principal: Principal, attempt_id: uuid.UUID, item_id: str, flagged: bool
    ) -> FlagAck:
        context = self._context

        async def decide(held: HeldAttempt) -> FlagAck:
            attempt_rules.require_writable(held.attempt, now=held.now, grace=context.grace)
            item = await context.item(held.session, held.attempt, item_id)
            state = await context.state_row(held.session, held.attempt.id, item)
            state.flagged = flagged
            return FlagAck(item_id=item_id, flagged=flagged)

        return await context.write(principal, attempt_id, "owner", decide)

    async def adaptive_audit(
        self, principal: Principal, attempt_id: uuid.UUID
    ) -> list[dict[str, Any]]:
        """Staff: the engine replayed over each adaptive section's stored log."""
        async with self._context.db() as s, s.begin():
            held = await self._context.load(s, attempt_id, principal, "staff", lock=False)
            return await adaptive.audit(s, held.attempt)

    async def _submit_individually(self, held: HeldAttempt, position: int) -> None:
        """QTI's `individual` submission mode: an item's response is submitted when the
        candidate leaves it, and is final from then on (one attempt per item)."""
        if held.policies.submission_mode != "individual":
            return
        item = (await self._context.form(held.session, held.attempt))[position]
        state = await held.session.get(ItemState, (held.attempt.id, uuid.UUID(item.item_id)))
        if state is not None and state.response is not None:
            state.locked = True

    async def _adaptive_step(self, held: HeldAttempt, to: Target, principal: Principal) -> str:
        """Leaving the current item of a running adaptive section: score it, lock it, and let
        the engine choose what follows (another item of the section, or the section's end)."""
        if not (held.attempt.layout or {}).get("adaptive") or held.attempt.seed is None:
            return "not_adaptive"  # most tests: decided without reading the form
        form = await self._context.form(held.session, held.attempt)
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
        item_state = await self._context.state_row(held.session, held.attempt.id, current)
        scored = score_item(current, item_state.response)
        right = item_state.response is not None and scored.score == scored.max_score
        item_state.locked = True
        bank = await adaptive.bank_of(held.session, held.attempt.layout, state)
        step = advance(state, bank, current.identifier, right, seed=held.attempt.seed,
                       label=section_id)  # fmt: skip
        held.attempt.layout = adaptive.with_step(held.attempt.layout, section_id, state, step.item)
        held.attempt.form = adaptive.form_of(held.attempt.layout)
        await self._context.log(
            held, "adaptive_step", "server", actor=principal.user_id,
            payload={"section": section_id, "item_id": current.identifier, "score": int(right),
                     "theta": state.theta, "se": state.se, "next": step.item,
                     "stopped": step.reason},
        )  # fmt: skip
        last = held.attempt.position + 1 >= len(held.attempt.form)
        return "stopped_last" if step.item is None and last else "stepped"
