"""Accounts as staff and users send them."""

from __future__ import annotations

from pydantic import Field, model_validator

from delivery_service.domain.accounts import USERNAME
from delivery_service.domain.principal import Role
from delivery_service.schemas.base import Id, StrictModel


class UserIn(StrictModel):
    username: str = Field(min_length=1, max_length=64, pattern=f"^{USERNAME.pattern}$")
    display_name: str | None = Field(None, min_length=1, max_length=200)
    role: Role = "student"
    password: str | None = Field(
        None,
        max_length=1024,
        description="the first password (12+ characters, not a common one); omit it and the "
        "response carries a one-time set-password token instead",
    )
    must_change_password: bool = Field(
        True, description="with a password: the user must choose their own at first sign-in"
    )
    class_ids: list[Id] = Field(
        default_factory=list,
        max_length=50,
        description="enrol the new user (students as students, staff as teachers); a "
        "teacher only into classes they teach",
    )


class UserPatch(StrictModel):
    """Admin only; omitted fields stay as they are."""

    display_name: str | None = Field(None, min_length=1, max_length=200)
    role: Role | None = None
    disabled: bool | None = Field(None, description="a disabled user cannot sign in")

    @model_validator(mode="after")
    def _no_nulls(self) -> UserPatch:
        nulled = [k for k in self.model_fields_set if getattr(self, k) is None]
        if nulled:
            raise ValueError(f"omit a field to keep it; null is not a value for {nulled}")
        return self


class PasswordResetIn(StrictModel):
    password: str | None = Field(
        None,
        max_length=1024,
        description="a temporary password the user must change at next sign-in; omit it for "
        "a one-time set-password token",
    )


class PasswordChangeIn(StrictModel):
    """Either the current password (signed in), or a set-password token (from a link)."""

    new_password: str = Field(min_length=1, max_length=1024)
    current_password: str | None = Field(None, max_length=1024)
    token: str | None = Field(None, max_length=4096, description="a set-password token")

    @model_validator(mode="after")
    def _one_proof(self) -> PasswordChangeIn:
        if (self.current_password is None) == (self.token is None):
            raise ValueError("give current_password (signed in) or token (from a link)")
        return self
