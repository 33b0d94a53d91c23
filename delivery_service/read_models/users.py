"""Accounts as staff see them."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from delivery_service.read_models.times import UtcTime
from delivery_service.storage.models import User


class AccountOut(BaseModel):
    id: uuid.UUID
    username: str
    role: str
    display_name: str
    disabled: bool
    must_change_password: bool
    created_at: UtcTime


def account_out(user: User) -> AccountOut:
    return AccountOut(
        id=user.id,
        username=user.username,
        role=user.role,
        display_name=user.display_name,
        disabled=user.disabled,
        must_change_password=user.must_change_password,
        created_at=user.created_at,
    )
