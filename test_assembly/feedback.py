"""What a candidate may learn about their answers, and when (sources 003/004 answer_feedback).

Two test policies decide it. `feedback` says *when* a candidate hears how an answer went: never
during the attempt (`none`), right after each answer (`per_item`: the item is then locked, or
the feedback would be a free second try), or in the completion message (`after_submission`).
`review` says *how much* they may see once the attempt is over: nothing, the score, their
responses marked right or wrong, or also the correct responses (`full`). Correct responses and
scoring rules never leave the server unless `review` is `full`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from test_assembly.interactions import ItemContent
from test_assembly.model import Policies
from test_assembly.scoring import score_item

REVIEW_LEVELS = ("none", "score", "responses", "full")


@dataclass(frozen=True)
class ItemFeedback:
    item_id: str  # the identifier the candidate's answers use
    response: Any
    score: float | None  # None while an essay waits for its grade
    max_score: float
    correct: bool | None  # None when there is no single right answer
    pending: bool
    correct_response: Any = None  # only when the review policy is "full"


def reveals(policies: Policies, level: str) -> bool:
    """Does the review policy allow at least `level` (score < responses < full)?"""
    return REVIEW_LEVELS.index(policies.review) >= REVIEW_LEVELS.index(level)


def feedback_for(
    item: ItemContent,
    response: Any,
    policies: Policies,
    *,
    grade: float | None = None,
) -> ItemFeedback:
    scored = score_item(item, response, negative_marking=policies.negative_marking, grade=grade)
    return ItemFeedback(
        item_id=item.identifier,
        response=response,
        score=scored.score,
        max_score=scored.max_score,
        correct=scored.correct,
        pending=scored.score is None,
        correct_response=item.scoring.get("correct") if reveals(policies, "full") else None,
    )
