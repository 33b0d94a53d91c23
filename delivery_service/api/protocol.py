"""The attempt WebSocket's messages, defined once (DESIGN.md §7, source 004's catalogue).

Client messages are one discriminated union validated on the way in; every server message is a
model too, so what goes out is validated by construction. `json_schema()` exports both unions for
client authors (docs/ws-protocol.schema.json, kept current by a test).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter

from delivery_service.schemas import (
    AnswerAck,
    AttemptView,
    Completion,
    CurrentItem,
    FlagAck,
    Progress,
    StrictModel,
    Timer,
    UserOut,
    UtcTime,
)

MessageId = Annotated[str, Field(max_length=64)]
# The largest count, position or duration a client may send: an unbounded integer (a frame
# held one of 300 digits) reached the ledger and failed there instead of at the door.
MAX_INT = 2**31 - 1


class _In(StrictModel):
    """Client input is strict: "yes" is not a boolean and "5" is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Client(_In):
    id: MessageId | None = Field(None, description="echoed back as `re` in the reply")


class Empty(_In):
    pass


class AuthData(_In):
    token: str = Field(min_length=1, max_length=4096)


class Auth(_Client):
    type: Literal["auth"]
    data: AuthData


class StartData(_In):
    test_id: str | None = Field(None, description="accepted for source 004 clients; ignored")


class StartAssessment(_Client):
    type: Literal["start_assessment"]
    data: StartData = Field(default_factory=StartData)


class GetQuestionData(_In):
    index: int | None = Field(
        None, ge=0, le=MAX_INT, description="move there first (nonlinear rules apply)"
    )


class GetQuestion(_Client):
    type: Literal["get_question"]
    data: GetQuestionData = Field(default_factory=GetQuestionData)


class SubmitAnswerData(_In):
    item_id: str = Field(
        min_length=1, max_length=128, validation_alias=AliasChoices("item_id", "question_id")
    )
    response: Any = Field(
        None,
        validation_alias=AliasChoices("response", "selected_option"),
        description="null clears",
    )
    client_seq: int = Field(ge=0, le=2**53)


class SubmitAnswer(_Client):
    type: Literal["submit_answer"]
    data: SubmitAnswerData


class GetProgress(_Client):
    type: Literal["get_progress"]
    data: Empty = Field(default_factory=Empty)


class Heartbeat(_Client):
    type: Literal["heartbeat"]
    data: Empty = Field(default_factory=Empty)


class PingData(_In):
    client_time: float | None = Field(None, description="client clock (ms since epoch), echoed")


class Ping(_Client):
    type: Literal["ping"]
    data: PingData = Field(default_factory=PingData)


class NavigateData(_In):
    to: Literal["next", "previous"] | Annotated[int, Field(ge=0, le=MAX_INT)]


class Navigate(_Client):
    type: Literal["navigate"]
    data: NavigateData


class FlagData(_In):
    item_id: str = Field(min_length=1, max_length=128)
    flagged: bool


class FlagItem(_Client):
    type: Literal["flag"]
    data: FlagData


ClientEventId = Annotated[
    str | None,
    Field(
        None,
        min_length=1,
        max_length=64,
        description="names the event so a resend from the client's outbox is stored once",
    ),
]


class TabViolationData(_In):
    violation_type: str = Field("tab_switch", min_length=1, max_length=32)
    duration_ms: int | None = Field(
        None, ge=0, le=MAX_INT, description="how long the page was hidden"
    )
    client_time: float | None = Field(None, description="client clock, ms since epoch")
    client_event_id: ClientEventId = None


class TabViolation(_Client):
    type: Literal["tab_violation"]
    data: TabViolationData = Field(default_factory=TabViolationData)


class HighlightData(_In):
    text: str = Field(min_length=1, max_length=5000)
    item_id: str = Field(
        min_length=1, max_length=128, validation_alias=AliasChoices("item_id", "passage_id")
    )
    position_start: int = Field(ge=0, le=MAX_INT)
    position_end: int = Field(ge=0, le=MAX_INT)
    client_time: float | None = None
    client_event_id: ClientEventId = None


class TextHighlighted(_Client):
    type: Literal["text_highlighted"]
    data: HighlightData


IntegrityKind = Literal[
    "tab_hidden",
    "tab_visible",
    "window_blur",
    "window_focus",
    "fullscreen_exit",
    "fullscreen_enter",
    "copy",
    "cut",
    "paste",
    "context_menu",
    "keyboard_shortcut",
    "network_offline",
    "network_online",
]


class IntegrityData(_In):
    kind: IntegrityKind
    duration_ms: int | None = Field(
        None, ge=0, le=MAX_INT, description="how long it lasted, where known"
    )
    detail: str | None = Field(None, max_length=200, description="e.g. the shortcut pressed")
    client_time: float | None = None
    client_event_id: ClientEventId = None


class IntegrityEvent(_Client):
    """Any other integrity signal from the candidate app (source 001 pattern 5)."""

    type: Literal["integrity_event"]
    data: IntegrityData


class IntegrityBatchData(_In):
    events: list[
        Annotated[TabViolation | TextHighlighted | IntegrityEvent, Field(discriminator="type")]
    ] = Field(min_length=1, max_length=50)


class IntegrityBatch(_Client):
    """Several integrity events in one message and one transaction (the app's batched outbox)."""

    type: Literal["integrity_batch"]
    data: IntegrityBatchData


class EndAssessment(_Client):
    type: Literal["end_assessment"]
    data: Empty = Field(default_factory=Empty)


ClientMessage = Annotated[
    Auth
    | StartAssessment
    | GetQuestion
    | SubmitAnswer
    | GetProgress
    | Heartbeat
    | Ping
    | Navigate
    | FlagItem
    | TabViolation
    | TextHighlighted
    | IntegrityEvent
    | IntegrityBatch
    | EndAssessment,
    Field(discriminator="type"),
]
CLIENT_TYPES = frozenset(
    {
        "auth",
        "start_assessment",
        "get_question",
        "submit_answer",
        "get_progress",
        "heartbeat",
        "ping",
        "navigate",
        "flag",
        "tab_violation",
        "text_highlighted",
        "integrity_event",
        "integrity_batch",
        "end_assessment",
    }
)
client_message = TypeAdapter[ClientMessage](ClientMessage)


# ---- server → client ---------------------------------------------------------------------------


class _Server(BaseModel):
    re: str | None = Field(None, description="the `id` of the client message this answers")
    seq: str | None = Field(None, description="event id (epoch:offset), for last_event_id")


class AuthSuccessData(BaseModel):
    user: UserOut
    attempt_id: uuid.UUID
    connection_id: str
    recovered: bool | None = Field(
        None, description="with last_event_id: true if every missed event follows"
    )
    last_event_id: str = Field(
        "", description="the channel's current position: resume from here if no event follows"
    )


class AuthSuccess(_Server):
    type: Literal["auth_success"] = "auth_success"
    data: AuthSuccessData


class AttemptState(_Server):
    """The full state: sent on connect and whenever the client must resync."""

    type: Literal["attempt_state"] = "attempt_state"
    data: AttemptView


class AssessmentStarted(_Server):
    type: Literal["assessment_started"] = "assessment_started"
    data: AttemptView


class Question(_Server):
    type: Literal["question"] = "question"
    data: CurrentItem


class AnswerFeedback(_Server):
    """The acknowledgement of a saved answer; it never says whether the answer is right."""

    type: Literal["answer_feedback"] = "answer_feedback"
    data: AnswerAck


class ProgressUpdate(_Server):
    type: Literal["progress_update"] = "progress_update"
    data: Progress


class FlagSaved(_Server):
    type: Literal["flag_saved"] = "flag_saved"
    data: FlagAck


class TimerData(BaseModel):
    state: str | None = None
    timer: Timer
    client_time: float | None = Field(None, description="echo of ping.client_time")


class TimerMessage(_Server):
    type: Literal["timer"] = "timer"
    data: TimerData


class PongData(BaseModel):
    server_now: UtcTime


class Pong(_Server):
    type: Literal["pong"] = "pong"
    data: PongData


class AssessmentCompleted(_Server):
    type: Literal["assessment_completed"] = "assessment_completed"
    data: Completion


class SupersededData(BaseModel):
    reason: str = "another connection opened this attempt"


class Superseded(_Server):
    type: Literal["superseded"] = "superseded"
    data: SupersededData = Field(default_factory=SupersededData)


class EventRecordedData(BaseModel):
    type: str
    event_id: int
    count: int = Field(description="how many events of this type the student has in the session")
    client_event_id: str | None = None
    duplicate: bool = Field(False, description="true when this client_event_id was stored before")


class EventRecorded(_Server):
    """The durable acknowledgement of a monitoring event: the client may drop it from its outbox."""

    type: Literal["event_recorded"] = "event_recorded"
    data: EventRecordedData


class EventsRecorded(_Server):
    """The acknowledgement of an `integrity_batch`: one entry per event, in order."""

    type: Literal["events_recorded"] = "events_recorded"
    data: list[EventRecordedData]


class IntegrityWarningData(BaseModel):
    rule: str = Field(description="tab_switch_limit, copy_paste or fullscreen_exit")
    action: str = Field(description="what the server did: warn, flag, pause or terminate")
    reason: str
    tab_switches: int
    allowed_tab_switches: int | None
    at: UtcTime


class IntegrityWarning(_Server):
    """The candidate went past the test's lockdown policy; the app shows `reason`."""

    type: Literal["integrity_warning"] = "integrity_warning"
    data: IntegrityWarningData


class ErrorData(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class Error(_Server):
    type: Literal["error"] = "error"
    data: ErrorData


ServerMessage = Annotated[
    AuthSuccess
    | AttemptState
    | AssessmentStarted
    | Question
    | AnswerFeedback
    | ProgressUpdate
    | FlagSaved
    | TimerMessage
    | Pong
    | AssessmentCompleted
    | Superseded
    | EventRecorded
    | EventsRecorded
    | IntegrityWarning
    | Error,
    Field(discriminator="type"),
]
server_message = TypeAdapter[ServerMessage](ServerMessage)


def json_schema() -> dict[str, Any]:
    from delivery_service.api.session_protocol import (
        session_client_message,
        session_server_message,
    )

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "examserver WebSocket protocols",
        "attempt": {
            "path": "/api/v1/attempts/{attempt_id}/ws",
            "client_to_server": client_message.json_schema(),
            "server_to_client": server_message.json_schema(mode="serialization"),
        },
        "session": {
            "path": "/api/v1/sessions/{session_id}/ws",
            "client_to_server": session_client_message.json_schema(),
            "server_to_client": session_server_message.json_schema(mode="serialization"),
        },
    }
