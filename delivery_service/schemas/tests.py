"""Tests and items as authors send them."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from delivery_service.schemas.base import StrictModel
from integrity.policy import LockdownPolicy
from test_assembly.model import Blueprint, ItemDefinition, Policies


class TestIn(StrictModel):
    __test__ = False  # not a pytest class

    title: str = Field(min_length=1, max_length=200)
    time_limit_seconds: int = Field(ge=10, le=24 * 3600)
    navigation_mode: Literal["linear", "nonlinear"] = "nonlinear"
    attempt_limit: int = Field(1, ge=1, le=100)
    allow_pause: bool = Field(True, description="may a candidate pause their own attempt")
    items: list[ItemDefinition] = Field(
        default_factory=list,
        max_length=500,
        description="the test's own items (any interaction type); without a blueprint they "
        "are the form, in order",
    )
    blueprint: Blueprint | None = Field(
        None, description="sections drawing from these items and the item bank"
    )
    policies: Policies = Field(default_factory=Policies)
    lockdown: LockdownPolicy = Field(default_factory=LockdownPolicy)

    @model_validator(mode="after")
    def _unique_items(self) -> TestIn:
        ids = [i.identifier for i in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("item identifiers must be unique within a test")
        if not self.items and self.blueprint is None:
            raise ValueError("give the test items, a blueprint, or both")
        return self


class ReasonedItemIn(StrictModel):
    item: ItemDefinition
    reason: str | None = Field(None, max_length=1000, description="kept in the item's history")
