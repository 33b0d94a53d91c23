"""Classes and their members."""

from __future__ import annotations

import uuid

from pydantic import (
    BaseModel,
    Field,
)

from delivery_service.read_models.times import UtcTime


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    role: str


class ClassOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    state: str
    teachers: list[UserOut] | None = Field(
        description="the class's teachers; null for a student (rosters are for staff)"
    )
    students: list[UserOut] | None = Field(
        description="the enrolled students; null for a student (rosters are for staff)"
    )
    created_at: UtcTime
    updated_at: UtcTime | None
