"""The attempt WebSocket's messages, defined once (DESIGN.md §7, source 004's catalogue).

Client messages are one discriminated union validated on the way in; every server message is a
model too, so what goes out is validated by construction. The messages it shares with the session
socket are in `messages` and named here too, so this module is the attempt socket's whole
vocabulary; `schema.json_schema()` exports both sockets' unions for client authors
(docs/ws-protocol.schema.json, kept current by a test).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, TypeAdapter

from delivery_service.api.ws.messages import MAX_INT as MAX_INT
from delivery_service.api.ws.messages import AnswerFeedback as AnswerFeedback
from delivery_service.api.ws.messages import Auth as Auth
from delivery_service.api.ws.messages import Empty as Empty
from delivery_service.api.ws.messages import Error as Error
from delivery_service.api.ws.messages import ErrorData as ErrorData
from delivery_service.api.ws.messages import EventRecorded as EventRecorded
from delivery_service.api.ws.messages import EventRecordedData as EventRecordedData
from delivery_service.api.ws.messages import EventsRecorded as EventsRecorded
from delivery_service.api.ws.messages import Heartbeat as Heartbeat
from delivery_service.api.ws.messages import IntegrityBatch as IntegrityBatch
from delivery_service.api.ws.messages import IntegrityEvent as IntegrityEvent
from delivery_service.api.ws.messages import Ping as Ping
from delivery_service.api.ws.messages import Pong as Pong
from delivery_service.api.ws.messages import PongData as PongData
from delivery_service.api.ws.messages import Question as Question
from delivery_service.api.ws.messages import Superseded as Superseded
from delivery_service.api.ws.messages import TabViolation as TabViolation
from delivery_service.api.ws.messages import TextHighlighted as TextHighlighted
from delivery_service.api.ws.messages import TimerData as TimerData
from delivery_service.api.ws.messages import TimerMessage as TimerMessage
from delivery_service.api.ws.messages import _Client, _In, _Server
from delivery_service.read_models.attempts import AttemptView, Completion, FlagAck, Progress
from delivery_service.read_models.classes import UserOut
from delivery_service.read_models.times import UtcTime


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


class ProgressUpdate(_Server):
    type: Literal["progress_update"] = "progress_update"
    data: Progress


class FlagSaved(_Server):
    type: Literal["flag_saved"] = "flag_saved"
    data: FlagAck


class AssessmentCompleted(_Server):
    type: Literal["assessment_completed"] = "assessment_completed"
    data: Completion


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
