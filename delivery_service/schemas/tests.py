"""Tests and items as authors send them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from delivery_service.domain.availability import MAX_NETWORKS, normalize_network
from delivery_service.schemas.base import Id, StrictModel, When
from integrity.policy import LockdownPolicy
from test_assembly.model import Blueprint, ItemDefinition, Policies


class Audience(StrictModel):
    """Who may take a test self-paced, and when (domain/availability.py); the fields a test
    is created with and `PUT /tests/{id}/availability` replaces."""

    assigned_to: list[Id] = Field(
        default_factory=list,
        max_length=500,
        description="class ids whose students may take it self-paced; empty: staff only",
    )
    opens_at: When | None = Field(None, description="not before (UTC); null: open already")
    closes_at: When | None = Field(None, description="not from (UTC); null: no end")
    allowed_networks: list[str] = Field(
        default_factory=list,
        max_length=MAX_NETWORKS,
        description="CIDR networks (IPv4 or IPv6) candidates may take it from; empty: any",
    )

    @field_validator("opens_at", "closes_at")
    @classmethod
    def _aware(cls, moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        if moment.tzinfo is None:
            raise ValueError("give the time with its offset, e.g. 2026-12-01T09:00:00Z")
        return moment.astimezone(UTC)

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        return list(dict.fromkeys(normalize_network(n) for n in networks))

    @field_validator("assigned_to")
    @classmethod
    def _classes(cls, classes: list[Id]) -> list[Id]:
        return list(dict.fromkeys(classes))

    @model_validator(mode="after")
    def _window(self) -> Audience:
        if self.opens_at and self.closes_at and self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        return self


def _access_password(description: str) -> str | None:
    return Field(None, min_length=1, max_length=200, description=description)


class AvailabilityIn(Audience):
    """`PUT /tests/{id}/availability`: the audience, window and networks replace the test's;
    `password` sets the access password, `null` clears it, and leaving it out keeps it."""

    password: str | None = _access_password(
        "write-only: a new access password; null clears it; omitted keeps it"
    )

    @property
    def password_given(self) -> bool:
        return "password" in self.model_fields_set


class TestIn(Audience):
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
    password: str | None = _access_password(
        "write-only: candidates give it to start an attempt (stored hashed)"
    )

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
