"""An attempt as its candidate and staff see it: the view, the current item, the timer,
progress, and the acknowledgements of answers, flags and completion."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
)

from delivery_service.domain.timing import TimerView
from delivery_service.read_models.times import UtcTime


class Timer(BaseModel):
    deadline: UtcTime | None = Field(description="when time runs out, null unless running")
    server_now: UtcTime = Field(description="the server's clock when this was sent")
    remaining_ms: int = Field(description="milliseconds left at server_now")
    running: bool

    @classmethod
    def of(cls, view: TimerView) -> Timer:
        return cls(
            deadline=view.deadline,
            server_now=view.server_now,
            remaining_ms=view.remaining_ms,
            running=view.running,
        )


class Choice(BaseModel):
    identifier: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=10_000)


class Associable(BaseModel):
    identifier: str
    text: str
    match_max: int = 1


class DeliveredItem(BaseModel):
    """An item as a candidate sees it: never its correct response or scoring. Which fields
    are set depends on `type` (docs/api.md, "Interaction types")."""

    item_id: str
    type: str
    position: int
    prompt: str
    choices: list[Choice] | None = None
    max_choices: int | None = None
    min_choices: int | None = None
    sources: list[Associable] | None = None
    targets: list[Associable] | None = None
    gap_texts: list[Associable] | None = None
    gaps: list[str] | None = None
    max_associations: int | None = None
    expected_length: int | None = None
    max_length: int | None = None
    section: str | None = Field(None, description="the section this item belongs to")


class ItemSummary(BaseModel):
    item_id: str
    position: int
    answered: bool
    flagged: bool


class AttemptView(BaseModel):
    id: uuid.UUID
    test_id: uuid.UUID
    user_id: uuid.UUID
    attempt_number: int
    state: str
    version: int
    position: int
    total_items: int
    navigation_mode: str
    allow_pause: bool
    items: list[ItemSummary]
    responses: dict[str, Any]
    flags: list[str]
    timer: Timer
    started_at: UtcTime | None
    ended_at: UtcTime | None
    end_reason: str | None
    score: float | None = Field(None, description="staff only; null for candidates")
    max_score: float | None = None
    last_client_seq: int = Field(
        0, description="the highest client_seq received: a new device continues above it"
    )
    lockdown: dict[str, Any] = Field(
        default_factory=dict,
        description="the test's lockdown policy as the candidate app applies it (no SEB keys)",
    )
    review: list[dict[str, Any]] | None = Field(
        None, description="staff only: why the attempt was marked for review"
    )


class AttemptSummary(BaseModel):
    """One line of an attempt list: enough to find and resume it, without its responses."""

    id: uuid.UUID
    test_id: uuid.UUID
    test_title: str
    user_id: uuid.UUID
    attempt_number: int
    state: str
    started_at: UtcTime | None
    deadline: UtcTime | None
    ended_at: UtcTime | None
    end_reason: str | None


class SectionTime(BaseModel):
    section: str
    limit_seconds: int
    remaining_ms: int = Field(description="0 once the section's time is spent")
    deadline: UtcTime | None = Field(description="when it runs out, while its time runs")


class CurrentItem(BaseModel):
    position: int
    total_items: int = Field(
        description="items in the form; with adaptive sections, at most this many"
    )
    item: DeliveredItem
    response: Any | None
    flagged: bool
    timer: Timer
    locked: bool = Field(
        False, description="the answer is final (per-item feedback given, or adaptive and passed)"
    )
    section_time: SectionTime | None = Field(
        None, description="the current section's own time limit, when it has one"
    )


class ItemFeedback(BaseModel):
    """How one answer went, shown only as the test's feedback and review policies allow."""

    item_id: str
    response: Any = None
    score: float | None = Field(description="null while an essay waits for its grade")
    max_score: float
    correct: bool | None = Field(description="null when there is no single right answer")
    pending: bool
    correct_response: Any = Field(None, description='only when the review policy is "full"')


class AnswerAck(BaseModel):
    """Sent only after the answer's transaction committed."""

    item_id: str
    client_seq: int
    applied: bool = Field(description="false when a newer client_seq already set this item")
    duplicate: bool = Field(description="true when this client_seq was saved before")
    saved_at: UtcTime
    answered: int
    feedback: ItemFeedback | None = Field(
        None, description="per_item feedback tests: the answer's score; the item is now locked"
    )


class FlagAck(BaseModel):
    item_id: str
    flagged: bool


class Progress(BaseModel):
    state: str
    position: int
    total_items: int
    answered: int
    flagged: int
    timer: Timer


class Completion(BaseModel):
    attempt_id: uuid.UUID
    state: str
    reason: Literal["submitted", "expired", "terminated"]
    ended_at: UtcTime
    answered: int
    total_items: int
    feedback: list[ItemFeedback] | None = Field(
        None, description="after_submission feedback tests: every item's outcome"
    )
