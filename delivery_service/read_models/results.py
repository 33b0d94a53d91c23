"""Results: grading tasks, scores, reviews and a candidate's result."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
)

from delivery_service.read_models.attempts import ItemFeedback
from delivery_service.read_models.times import UtcTime


class GradingTask(BaseModel):
    """One answered essay (a manually scored item) in the grading queue."""

    attempt_id: uuid.UUID
    test_id: uuid.UUID
    test_title: str
    candidate_id: uuid.UUID
    candidate: str = Field(description="the candidate's username")
    item_id: str = Field(description="the item's identifier in the attempt")
    item_version_id: uuid.UUID = Field(description="the item version the candidate answered")
    prompt: str | None
    response: Any
    max_score: float
    submitted_at: UtcTime | None
    grade: float | None = Field(description="null while it waits for a grade")
    graded_by: uuid.UUID | None
    graded_at: UtcTime | None


class AttemptResult(BaseModel):
    attempt_id: uuid.UUID
    attempt_number: int
    state: str
    score: float | None
    max_score: float | None
    passed: bool | None = Field(description="null without a pass mark or until final")
    pending_grades: int
    final: bool = Field(description="ended, and no essay still waits for its grade")


class GradeOut(BaseModel):
    task: GradingTask
    result: AttemptResult


class SectionResult(BaseModel):
    identifier: str
    score: float
    max_score: float
    pending: int


class AttemptReview(BaseModel):
    """What a candidate may see of a finished attempt, as the test's review policy allows."""

    review: Literal["none", "score", "responses", "full"]
    result: AttemptResult
    sections: list[SectionResult]
    items: list[ItemFeedback] | None = Field(
        None, description='review "responses" or "full": each item\'s outcome'
    )
    ability: dict[str, Any] | None = Field(
        None, description="adaptive sections: the final ability estimate per section"
    )


class CandidateResult(BaseModel):
    """One candidate's result on a test across their attempts (the test's attempt_scoring)."""

    test_id: uuid.UUID
    user_id: uuid.UUID
    username: str
    attempt_scoring: Literal["highest", "last", "first", "average"]
    attempts: list[AttemptResult]
    result: float | None = Field(description="over final attempts only; null when none is final")
    max_score: float | None
    passed: bool | None
