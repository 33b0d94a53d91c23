"""Wire shapes shared by REST replies and WebSocket messages, so each is defined once."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    model_validator,
)

from delivery_service.domain.timing import TimerView, iso
from integrity.policy import LockdownPolicy
from test_assembly.model import Blueprint, ItemDefinition, Policies

UtcTime = Annotated[datetime, PlainSerializer(iso, return_type=str)]


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


# JSON has no UUID or date-time type: they arrive as strings, which a strict model would
# refuse (FastAPI validates the parsed body as Python objects). Ids and times in client input
# are declared with these.
Id = Annotated[uuid.UUID, Strict(False)]
When = Annotated[datetime, Strict(False)]


class StrictModel(BaseModel):
    """Client input over REST is as strict as over the sockets: unknown fields are refused,
    "5" is not a number and "yes" is not a boolean (a lax parse would accept an answer's
    `client_seq` in a form the socket refuses). And every string in it, however deep (an
    answer's response is any JSON), must be storable: PostgreSQL refuses a NUL character and
    UTF-8 a lone surrogate, and each failed deep in a write instead of at the door."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        bad = unstorable_text(data)
        if bad is not None:
            raise ValueError(f"text that cannot be stored: {bad}")
        return data


def unstorable_text(value: Any) -> str | None:
    """What is wrong with the first unstorable string in `value` (None: nothing)."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "an unpaired surrogate"
        return None
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    for item in items:
        found = unstorable_text(item)
        if found is not None:
            return found
    return None


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


class ReasonedItemIn(StrictModel):
    item: ItemDefinition
    reason: str | None = Field(None, max_length=1000, description="kept in the item's history")


class QtiProblem(BaseModel):
    file: str
    identifier: str | None
    reason: str


class QtiImportOut(BaseModel):
    version: str = Field(description="the package's QTI version (2.1 and 2.2 are upgraded)")
    items: dict[str, str] = Field(description="identifier -> created | updated | unchanged")
    test_id: uuid.UUID | None
    problems: list[QtiProblem] = Field(description="what was skipped, per item, and why")


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    role: str


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


class SessionIn(StrictModel):
    class_id: Id
    test_id: Id
    title: str = Field(min_length=1, max_length=200)
    scheduled_at: When


class SessionOut(BaseModel):
    id: uuid.UUID
    class_id: uuid.UUID
    class_name: str
    test_id: uuid.UUID
    test_title: str
    time_limit_seconds: int
    title: str
    state: str
    scheduled_at: UtcTime
    started_at: UtcTime | None
    ends_at: UtcTime | None = Field(
        description="the global end, for students without accommodations"
    )
    completed_at: UtcTime | None
    created_by: uuid.UUID
    created_at: UtcTime


class AccommodationIn(StrictModel):
    extra_seconds: int = Field(0, ge=0, le=24 * 3600)
    time_multiplier: float = Field(1.0, ge=1.0, le=4.0)
    reason: str | None = Field(None, max_length=1000)


class NoticeIn(StrictModel):
    message: str = Field(min_length=1, max_length=2000)
    student_id: Id | None = Field(None, description="one student; all when omitted")


class ParticipantView(BaseModel):
    """One row of the proctor's live grid."""

    student: UserOut
    connected: bool
    joined_at: UtcTime | None
    attempt_id: uuid.UUID | None
    state: str | None
    position: int | None
    answered: int
    total_items: int
    deadline: UtcTime | None
    remaining_ms: int | None
    violations: int
    highlights: int
    marked_for_review: bool = Field(False, description="a violation rule flagged the attempt")
    last_activity: UtcTime | None
    extra_seconds: int
    time_multiplier: float
    score: float | None
    max_score: float | None


class TimelineEntry(BaseModel):
    at: UtcTime
    kind: Literal["answer", "event", "staff_action", "server"]
    type: str
    data: dict[str, Any]


class AuditOut(BaseModel):
    at: UtcTime
    actor: UserOut
    action: str
    student_id: uuid.UUID | None
    attempt_id: uuid.UUID | None
    reason: str | None
    details: dict[str, Any]


class SessionStats(BaseModel):
    session_id: uuid.UUID
    state: str
    enrolled: int
    joined: int
    not_joined: int
    by_state: dict[str, int]
    completion_rate: float = Field(description="finished attempts / enrolled students")
    average_score: float | None
    highest_score: float | None
    lowest_score: float | None
    max_score: float | None
    average_time_used_seconds: float | None
    students: list[ParticipantView]


class ReasonIn(StrictModel):
    reason: str | None = Field(None, max_length=1000, description="kept in the audit log")


class RequiredReasonIn(StrictModel):
    reason: str = Field(min_length=1, max_length=1000, description="kept in the audit log")


class ExtendIn(StrictModel):
    seconds: int = Field(ge=-24 * 3600, le=24 * 3600, description="negative takes time away")
    reason: str | None = Field(None, max_length=1000, description="kept in the audit log")


class GradingTask(BaseModel):
    """One answered essay (a manually scored item) in the grading queue."""

    attempt_id: uuid.UUID
    test_id: uuid.UUID
    test_title: str
    candidate_id: uuid.UUID
    candidate: str = Field(description="the candidate's username")
    item_id: str = Field(description="the item's identifier in the attempt")
    item_version_id: uuid.UUID = Field(description="the item version the candidate answered")
    prompt: str | None
    response: Any
    max_score: float
    submitted_at: UtcTime | None
    grade: float | None = Field(description="null while it waits for a grade")
    graded_by: uuid.UUID | None
    graded_at: UtcTime | None


class GradeIn(StrictModel):
    score: float = Field(ge=0, description="from 0 to the item's max_score")
    reason: str | None = Field(
        None, max_length=2000, description="required when changing a grade already given"
    )


class AttemptResult(BaseModel):
    attempt_id: uuid.UUID
    attempt_number: int
    state: str
    score: float | None
    max_score: float | None
    passed: bool | None = Field(description="null without a pass mark or until final")
    pending_grades: int
    final: bool = Field(description="ended, and no essay still waits for its grade")


class GradeOut(BaseModel):
    task: GradingTask
    result: AttemptResult


class SectionResult(BaseModel):
    identifier: str
    score: float
    max_score: float
    pending: int


class AttemptReview(BaseModel):
    """What a candidate may see of a finished attempt, as the test's review policy allows."""

    review: Literal["none", "score", "responses", "full"]
    result: AttemptResult
    sections: list[SectionResult]
    items: list[ItemFeedback] | None = Field(
        None, description='review "responses" or "full": each item\'s outcome'
    )
    ability: dict[str, Any] | None = Field(
        None, description="adaptive sections: the final ability estimate per section"
    )


class CandidateResult(BaseModel):
    """One candidate's result on a test across their attempts (the test's attempt_scoring)."""

    test_id: uuid.UUID
    user_id: uuid.UUID
    username: str
    attempt_scoring: Literal["highest", "last", "first", "average"]
    attempts: list[AttemptResult]
    result: float | None = Field(description="over final attempts only; null when none is final")
    max_score: float | None
    passed: bool | None
