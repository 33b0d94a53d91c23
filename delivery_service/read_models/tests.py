"""Tests and items as authors see them, and what a QTI import reports."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
)

from delivery_service.read_models.attempts import Choice
from delivery_service.read_models.times import UtcTime
from test_assembly.model import Blueprint, ItemDefinition, Policies


class ItemOut(BaseModel):
    identifier: str
    type: str
    prompt: str
    choices: list[Choice] | None = None
    max_choices: int | None = None
    correct: Any = Field(None, description="staff only")
    points: float | None = Field(None, description="staff only")
    definition: ItemDefinition | None = Field(None, description="staff only: the whole item")


class TestOut(BaseModel):
    id: uuid.UUID
    title: str
    time_limit_seconds: int
    navigation_mode: str
    attempt_limit: int
    allow_pause: bool
    item_count: int
    created_at: UtcTime
    items: list[ItemOut] | None = Field(None, description="staff only")
    lockdown: dict[str, Any] = Field(
        default_factory=dict, description="the lockdown policy; SEB keys for staff only"
    )
    blueprint: Blueprint | None = Field(None, description="staff only")
    policies: Policies | None = Field(None, description="staff only")
    assigned_to: list[uuid.UUID] = Field(
        default_factory=list,
        description="the classes whose students may take it self-paced (a student sees only "
        "their own among them); empty: staff only",
    )
    opens_at: UtcTime | None = None
    closes_at: UtcTime | None = None
    window: Literal["upcoming", "open", "closed"] = Field(
        "open", description="where the server's clock is in [opens_at, closes_at) now"
    )
    password_required: bool = Field(False, description="starting an attempt needs its password")
    allowed_networks: list[str] | None = Field(
        None, description="staff only: the CIDR networks candidates may take it from ([]: any)"
    )
    reserved_for_session: bool | None = Field(
        None, description="staff only: a proctored session uses it, so it is never self-paced"
    )


class BankItemOut(BaseModel):
    """An item of the bank at one version (staff only)."""

    id: uuid.UUID
    identifier: str
    state: Literal["active", "retired"] | str
    version: int
    version_id: uuid.UUID = Field(description="the immutable row attempts pin")
    created_at: UtcTime
    updated_at: UtcTime | None
    item: ItemDefinition


class QtiProblem(BaseModel):
    file: str
    identifier: str | None
    reason: str


class QtiImportOut(BaseModel):
    version: str = Field(description="the package's QTI version (2.1 and 2.2 are upgraded)")
    items: dict[str, str] = Field(description="identifier -> created | updated | unchanged")
    test_id: uuid.UUID | None
    problems: list[QtiProblem] = Field(description="what was skipped, per item, and why")
