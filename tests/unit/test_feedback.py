"""When a candidate may learn how an answer went, and whether the answer key ever leaves the
server (test_assembly/feedback.py): every review level against every level asked for, and every
feedback × review policy for what one item's feedback carries."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from test_assembly.feedback import REVIEW_LEVELS, feedback_for, reveals
from test_assembly.model import ItemDefinition, Policies

CHOICES = [{"identifier": c, "text": f"choice {c}"} for c in "ABCD"]
FEEDBACK = ("none", "per_item", "after_submission")


def choice_item(**more: Any) -> Any:
    spec = {"identifier": "q1", "prompt": "?", "type": "choice", "choices": CHOICES,
            "correct": ["B"], "points": 2} | more  # fmt: skip
    return ItemDefinition.model_validate(spec).content("row-q1")


def essay_item() -> Any:
    spec = {"identifier": "q2", "prompt": "?", "type": "extended_text", "points": 10}
    return ItemDefinition.model_validate(spec).content("row-q2")


def policies(*, feedback: str = "none", review: str = "score", **more: Any) -> Policies:
    return Policies.model_validate({"feedback": feedback, "review": review} | more)


SHOWN = {
    "none": set(),
    "score": {"score"},
    "responses": {"score", "responses"},
    "full": {"score", "responses", "full"},
}


@pytest.mark.parametrize(
    ("review", "level"), list(itertools.product(REVIEW_LEVELS, ("score", "responses", "full")))
)
def test_a_review_policy_reveals_exactly_the_levels_at_or_below_it(review: str, level: str) -> None:
    assert reveals(policies(review=review), level) is (level in SHOWN[review])


def test_the_review_levels_are_ordered_from_nothing_to_the_answer_key() -> None:
    assert REVIEW_LEVELS == ("none", "score", "responses", "full")


def test_a_review_of_none_reveals_not_even_the_score() -> None:
    assert not reveals(policies(review="none"), "score")


def test_only_a_full_review_reveals_the_correct_responses() -> None:
    assert [r for r in REVIEW_LEVELS if reveals(policies(review=r), "full")] == ["full"]


@pytest.mark.parametrize(("feedback", "review"), list(itertools.product(FEEDBACK, REVIEW_LEVELS)))
def test_the_answer_key_is_in_an_items_feedback_only_under_a_full_review(
    feedback: str, review: str
) -> None:
    told = feedback_for(choice_item(), ["A"], policies(feedback=feedback, review=review))
    assert told.correct_response == (["B"] if review == "full" else None)


@pytest.mark.parametrize(("feedback", "review"), list(itertools.product(FEEDBACK, REVIEW_LEVELS)))
def test_an_items_feedback_scores_the_answer_whatever_the_policies(
    feedback: str, review: str
) -> None:
    right = feedback_for(choice_item(), ["B"], policies(feedback=feedback, review=review))
    wrong = feedback_for(choice_item(), ["A"], policies(feedback=feedback, review=review))
    assert (right.score, right.max_score, right.correct, right.pending) == (2, 2, True, False)
    assert (wrong.score, wrong.max_score, wrong.correct, wrong.pending) == (0, 2, False, False)
    assert right.item_id == "q1"
    assert right.response == ["B"]


@pytest.mark.parametrize(("negative_marking", "score"), [(True, -0.5), (False, 0)])
def test_a_wrong_answer_costs_the_items_penalty_only_under_negative_marking(
    negative_marking: bool, score: float
) -> None:
    item = choice_item(penalty=0.5)
    told = feedback_for(item, ["A"], policies(negative_marking=negative_marking))
    assert told.score == score


def test_an_ungraded_essay_is_pending_with_no_score_and_no_verdict() -> None:
    told = feedback_for(essay_item(), "some prose", policies(review="full"))
    assert (told.score, told.correct, told.pending, told.max_score) == (None, None, True, 10)


def test_a_graded_essay_carries_its_grade() -> None:
    told = feedback_for(essay_item(), "some prose", policies(review="score"), grade=7)
    assert (told.score, told.pending) == (7, False)
