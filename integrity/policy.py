"""A test's lockdown policy: what the candidate app must do, and what the server does when a
candidate goes past what is allowed.

The browser cannot be locked down by a web page (source 001 pitfall 5): fullscreen can always be
left and copy can always be attempted. So the page asks, blocks what it can and reports; the
server counts what is reported and acts (warn, flag for review, pause, terminate). Only Safe Exam
Browser is a real lock, and the server verifies its request headers itself.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Action = Literal["warn", "flag", "pause", "terminate"]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class LockdownPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    require_fullscreen: bool = Field(
        False, description="the app asks to stay in fullscreen; leaving it counts as a tab switch"
    )
    forbid_copy_paste: bool = Field(
        False, description="the app blocks copy, cut and paste; each attempt flags for review"
    )
    allowed_tab_switches: int | None = Field(
        None, ge=0, le=1000, description="null: switches are recorded, never acted on"
    )
    ignore_absence_under_ms: int = Field(
        0,
        ge=0,
        le=600_000,
        description="absences shorter than this are recorded but not counted (a notification)",
    )
    on_exceed: Action = Field("warn", description="what happens past allowed_tab_switches")
    require_seb: bool = Field(False, description="only Safe Exam Browser with a known key")
    seb_config_keys: list[str] = Field(
        default_factory=list, description="SEB Config Keys (hex SHA-256), never sent to clients"
    )
    seb_browser_exam_keys: list[str] = Field(
        default_factory=list,
        description="SEB Browser Exam Keys (hex SHA-256), never sent to clients",
    )

    @field_validator("seb_config_keys", "seb_browser_exam_keys")
    @classmethod
    def _hex_keys(cls, keys: list[str]) -> list[str]:
        cleaned = [k.strip().lower() for k in keys]
        bad = [k for k in cleaned if not _HEX64.match(k)]
        if bad:
            raise ValueError(f"SEB keys are 64 hex characters; not {bad[0]!r}")
        return cleaned

    @model_validator(mode="after")
    def _seb_needs_a_key(self) -> LockdownPolicy:
        if self.require_seb and not (self.seb_config_keys or self.seb_browser_exam_keys):
            raise ValueError("require_seb needs at least one Config Key or Browser Exam Key")
        return self

    def public(self) -> dict[str, Any]:
        """What the candidate app is told: the rules, never the SEB keys."""
        return self.model_dump(exclude={"seb_config_keys", "seb_browser_exam_keys"})


def policy_of(stored: dict[str, Any] | None) -> LockdownPolicy:
    return LockdownPolicy.model_validate(stored or {})
