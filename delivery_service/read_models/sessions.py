"""Proctored sessions: the session, the proctor's grid, its timeline, audit and statistics."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
)

from delivery_service.read_models.classes import UserOut
from delivery_service.read_models.times import UtcTime


class SessionOut(BaseModel):
    id: uuid.UUID
    class_id: uuid.UUID
    class_name: str
    test_id: uuid.UUID
    test_title: str
    time_limit_seconds: int
    title: str
    state: str
    scheduled_at: UtcTime
    started_at: UtcTime | None
    ends_at: UtcTime | None = Field(
        description="the global end, for students without accommodations"
    )
    completed_at: UtcTime | None
    created_by: uuid.UUID
    created_at: UtcTime


class ParticipantView(BaseModel):
    """One row of the proctor's live grid."""

    student: UserOut
    connected: bool
    joined_at: UtcTime | None
    attempt_id: uuid.UUID | None
    state: str | None
    position: int | None
    answered: int
    total_items: int
    deadline: UtcTime | None
    remaining_ms: int | None
    violations: int
    highlights: int
    marked_for_review: bool = Field(False, description="a violation rule flagged the attempt")
    last_activity: UtcTime | None
    extra_seconds: int
    time_multiplier: float
    score: float | None
    max_score: float | None


class TimelineEntry(BaseModel):
    at: UtcTime
    kind: Literal["answer", "event", "staff_action", "server"]
    type: str
    data: dict[str, Any]


class AuditOut(BaseModel):
    at: UtcTime
    actor: UserOut
    action: str
    student_id: uuid.UUID | None
    attempt_id: uuid.UUID | None
    reason: str | None
    details: dict[str, Any]


class SessionStats(BaseModel):
    session_id: uuid.UUID
    state: str
    enrolled: int
    joined: int
    not_joined: int
    by_state: dict[str, int]
    completion_rate: float = Field(description="finished attempts / enrolled students")
    average_score: float | None
    highest_score: float | None
    lowest_score: float | None
    max_score: float | None
    average_time_used_seconds: float | None
    students: list[ParticipantView]
