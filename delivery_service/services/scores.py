"""Scoring an attempt from what is stored: its form, its item states and the teachers' grades.

Submission, expiry, grading and the review all score through `score_attempt`, so a grade given
later gives the same total the submission would have given had the grade been there.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.read_models.attempts import ItemFeedback
from delivery_service.storage.models import Attempt, ItemState, Test
from test_assembly.assembly import Form
from test_assembly.feedback import feedback_for
from test_assembly.interactions import ItemContent
from test_assembly.model import Policies
from test_assembly.scoring import Result, ScoringRules, score_form


def policies_of(test: Test) -> Policies:
    return Policies.model_validate(test.policies or {})


def sections_of(attempt: Attempt, form: list[ItemContent]) -> list[tuple[str, list[ItemContent]]]:
    """The form's items grouped by section (one section for tests without a blueprint)."""
    if not attempt.layout:
        return [("main", form)]
    by_identifier = {item.identifier: item for item in form}
    layout = Form.from_json(attempt.layout)
    return [(sec.identifier, [by_identifier[i] for i in sec.items]) for sec in layout.sections]


async def item_states(s: AsyncSession, attempt_id: uuid.UUID) -> dict[uuid.UUID, ItemState]:
    rows = await s.scalars(select(ItemState).where(ItemState.attempt_id == attempt_id))
    return {row.item_id: row for row in rows}


def score_attempt(
    attempt: Attempt,
    test: Test,
    form: list[ItemContent],
    states: dict[uuid.UUID, ItemState],
) -> Result:
    responses: dict[str, Any] = {str(k): st.response for k, st in states.items()}
    grades = {str(k): st.grade for k, st in states.items() if st.grade is not None}
    policies = policies_of(test)
    rules = ScoringRules(
        negative_marking=policies.negative_marking, pass_mark=policies.pass_mark, grades=grades
    )
    return score_form(sections_of(attempt, form), responses, rules)


def record_result(attempt: Attempt, result: Result) -> None:
    """Write the result onto the attempt; `passed` stays unknown until nothing is pending."""
    attempt.score, attempt.max_score = result.score, result.max_score
    attempt.passed = result.passed
    attempt.pending_grades = result.pending


def item_feedback(
    item: ItemContent, states: dict[uuid.UUID, ItemState], policies: Policies
) -> ItemFeedback:
    """One item's outcome from its stored state (its response and any teacher's grade)."""
    state = states.get(uuid.UUID(item.item_id))
    response = state.response if state else None
    told = feedback_for(item, response, policies, grade=state.grade if state else None)
    return ItemFeedback.model_validate(told, from_attributes=True)
