"""The grading queue (teachers), reviews and results across attempts."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.read_models.results import (
    AttemptReview,
    CandidateResult,
    GradeOut,
    GradingTask,
)
from delivery_service.schemas.actions import GradeIn

router = APIRouter(tags=["grading and results"])


@router.get("/grading", response_model=list[GradingTask])
async def grading_queue(
    user: CurrentUser,
    runtime: RuntimeDep,
    test_id: uuid.UUID | None = None,
    status: Literal["pending", "graded", "all"] = "pending",
) -> list[GradingTask]:
    """Staff: answered essays of ended attempts, oldest submission first."""
    return await runtime.grading.queue(user, test_id=test_id, status=status)


@router.post("/grading/{attempt_id}/{item_id}", response_model=GradeOut)
async def grade(
    attempt_id: uuid.UUID, item_id: str, body: GradeIn, user: CurrentUser, runtime: RuntimeDep
) -> GradeOut:
    """Staff: grade one essay; changing a grade already given needs a reason."""
    return await runtime.grading.grade(
        user, attempt_id, item_id, score=body.score, reason=body.reason
    )


@router.get("/attempts/{attempt_id}/review", response_model=AttemptReview)
async def review(attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> AttemptReview:
    """A finished attempt as the test's review policy lets its candidate see it (staff: all)."""
    return await runtime.grading.review(user, attempt_id)


@router.get("/tests/{test_id}/results", response_model=list[CandidateResult])
async def results(
    test_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep, user_id: uuid.UUID | None = None
) -> list[CandidateResult]:
    """Results across attempts by the test's attempt_scoring; candidates get their own."""
    return await runtime.grading.results(user, test_id, user_id=user_id)
