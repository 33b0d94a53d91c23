"""How an attempt ends, whichever way it ends: submitted by its candidate, terminated by staff or
the server, or expired (by the sweeper, by a session's end, or by the write that found it
overdue).

Its own module because the shared write path expires an overdue attempt before any decision, so
the context needs it as much as the lifecycle does. It reaches the context only through the
object it is given (imported for its type alone), which keeps the import graph one-way.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from delivery_service.domain import attempts as attempt_rules
from delivery_service.domain.authority import require_reason
from delivery_service.domain.principal import Principal
from delivery_service.live.keys import attempt_channel
from delivery_service.read_models.attempts import Completion
from delivery_service.services import adaptive
from delivery_service.services.scores import (
    item_feedback,
    item_states,
    record_result,
    score_attempt,
)
from delivery_service.storage.models import ItemState
from integrity.events import Source
from test_assembly.adaptive import close
from test_assembly.assembly import Form
from test_assembly.scoring import score_item

if TYPE_CHECKING:
    from delivery_service.services.attempts.context import AttemptContext, HeldAttempt


async def finish(
    context: AttemptContext,
    held: HeldAttempt,
    event: str,
    *,
    actor: Principal | None = None,
    reason: str | None = None,
) -> Completion:
    """Submit, expire or terminate: score what was saved, stamp the end, announce it."""
    if event == "terminate" and actor is not None:
        require_reason(actor, "attempt_terminated", reason)
    attempt_rules.finish(held.attempt, event=event, now=held.now)
    await close_adaptive(context, held)
    form = await context.form(held.session, held.attempt)
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
    await context.log(
        held, f"attempt_{held.attempt.state}", source,
        actor=actor.user_id if actor else None, reason=reason,
        payload={"score": held.attempt.score, "max_score": held.attempt.max_score,
                 "pending_grades": held.attempt.pending_grades, "passed": held.attempt.passed,
                 "answered": completion.answered, "total_items": completion.total_items},
    )  # fmt: skip
    attempt_id = str(held.attempt.id)
    held.after.append(lambda: context.timers.cancel(attempt_id))
    held.after.append(
        lambda: context.bus.publish(
            attempt_channel(attempt_id),
            "assessment_completed",
            completion.model_dump(mode="json"),
        )
    )
    context.notify_proctors(
        held,
        "assessment_completed",
        completion.model_dump(mode="json") | {"score": held.attempt.score},
    )
    return completion


async def close_adaptive(context: AttemptContext, held: HeldAttempt) -> None:
    """At the end, an answered current item of a running adaptive section still counts in
    its ability estimate (the engine chooses nothing after it)."""
    layout = held.attempt.layout
    if not layout or not layout.get("adaptive"):
        return
    form = {item.identifier: item for item in await context.form(held.session, held.attempt)}
    for section in Form.from_json(layout).sections:
        found = adaptive.frontier(layout, section.items[-1]) if section.items else None
        if found is None:
            continue
        section_id, state = found
        item = form[section.items[-1]]
        item_state = await held.session.get(ItemState, (held.attempt.id, uuid.UUID(item.item_id)))
        if item_state is None or item_state.response is None:
            continue
        scored = score_item(item, item_state.response)
        bank = await adaptive.bank_of(held.session, layout, state)
        close(state, bank, item.identifier, scored.score == scored.max_score)
        layout = adaptive.with_step(layout, section_id, state, None)
    held.attempt.layout = layout
