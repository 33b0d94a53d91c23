"""Staff actions that carry a reason, an extension or a grade."""

from __future__ import annotations

from pydantic import (
    Field,
)

from delivery_service.schemas.base import StrictModel


class ReasonIn(StrictModel):
    reason: str | None = Field(None, max_length=1000, description="kept in the audit log")


class RequiredReasonIn(StrictModel):
    reason: str = Field(min_length=1, max_length=1000, description="kept in the audit log")


class ExtendIn(StrictModel):
    seconds: int = Field(ge=-24 * 3600, le=24 * 3600, description="negative takes time away")
    reason: str | None = Field(None, max_length=1000, description="kept in the audit log")


class GradeIn(StrictModel):
    score: float = Field(ge=0, description="from 0 to the item's max_score")
    reason: str | None = Field(
        None, max_length=2000, description="required when changing a grade already given"
    )
