"""Classes and their members, as staff send them."""

from __future__ import annotations

from pydantic import (
    AliasChoices,
    Field,
    model_validator,
)

from delivery_service.schemas.base import Id, StrictModel


class ClassIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)
    teacher_ids: list[Id] = Field(
        default_factory=list, description="more teachers; a teacher creating it is always one"
    )


class ClassUpdate(StrictModel):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)


class MemberIn(StrictModel):
    """Name a user by id or by username."""

    user_id: Id | None = Field(
        None, validation_alias=AliasChoices("user_id", "student_id", "teacher_id")
    )
    username: str | None = Field(None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one(self) -> MemberIn:
        if (self.user_id is None) == (self.username is None):
            raise ValueError("give exactly one of user_id (or student_id/teacher_id) and username")
        return self
