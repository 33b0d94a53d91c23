"""What a bulk import of users reports: one row per line of the file (a table), a summary, and
the generated passwords, which are shown this once and kept nowhere in clear."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field


class ImportRowOut(BaseModel):
    line: int = Field(description="the line of the file the row starts on (the header is 1)")
    username: str
    display_name: str
    role: str
    action: Literal["create", "update", "unchanged", "refused"] = Field(
        description="what the row does (a dry run: would do)"
    )
    changes: list[str] = Field(description="for an update: display_name, role, password, classes")
    classes_added: list[str] = Field(description="classes the user joins (never leaves)")
    password: Literal["generated", "set"] | None = Field(
        description="generated: a new password in `passwords`; set: the file's password"
    )
    code: str | None = Field(description="why the row is refused (stable snake_case)")
    reason: str | None


class ImportSummaryOut(BaseModel):
    rows: int
    create: int
    update: int
    unchanged: int
    refused: int
    classes_created: int
    batches: int = Field(description="transactions committed (0 for a dry run or a refusal)")


class IssuedPasswordOut(BaseModel):
    line: int
    username: str
    display_name: str
    password: str = Field(description="shown once; the user must choose their own at sign-in")


class ImportReport(BaseModel):
    import_id: uuid.UUID | None = Field(
        description="the ledger chain `users-import:{id}` records it; null for a dry run"
    )
    dry_run: bool
    ok: bool = Field(description="no row refused")
    summary: ImportSummaryOut
    classes_created: list[str]
    rows: list[ImportRowOut]
    passwords: list[IssuedPasswordOut] = Field(
        description="generated passwords, only when applied; returned this once"
    )
