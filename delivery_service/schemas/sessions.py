"""Proctored sessions, accommodations and notices, as staff send them."""

from __future__ import annotations

from pydantic import (
    Field,
)

from delivery_service.schemas.base import Id, StrictModel, When


class SessionIn(StrictModel):
    class_id: Id
    test_id: Id
    title: str = Field(min_length=1, max_length=200)
    scheduled_at: When


class AccommodationIn(StrictModel):
    extra_seconds: int = Field(0, ge=0, le=24 * 3600)
    time_multiplier: float = Field(1.0, ge=1.0, le=4.0)
    reason: str | None = Field(None, max_length=1000)


class NoticeIn(StrictModel):
    message: str = Field(min_length=1, max_length=2000)
    student_id: Id | None = Field(None, description="one student; all when omitted")
