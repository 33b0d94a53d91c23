"""The session WebSocket's messages (source 002 and its addendum), defined once.

Students send monitoring events and may answer through it; proctors only listen (their actions
are REST calls, each audited). Events relayed from the bus share one envelope type whose `type`
is one of SESSION_EVENTS.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, TypeAdapter

from delivery_service.api.ws.messages import (
    MAX_INT,
    AnswerFeedback,
    Auth,
    Error,
    EventRecorded,
    EventsRecorded,
    Heartbeat,
    IntegrityBatch,
    IntegrityEvent,
    Ping,
    Pong,
    Question,
    Superseded,
    TabViolation,
    TextHighlighted,
    TimerMessage,
    _Client,
    _In,
    _Server,
)
from delivery_service.read_models.attempts import AttemptView
from delivery_service.read_models.classes import UserOut
from delivery_service.read_models.sessions import ParticipantView, SessionOut


class Empty(_In):
    pass


class StateSyncRequest(_Client):
    type: Literal["state_sync_request"]
    data: Empty = Field(default_factory=Empty)


class AnswerData(_In):
    item_id: str = Field(
        min_length=1, max_length=128, validation_alias=AliasChoices("item_id", "question_id")
    )
    response: Any = Field(None, validation_alias=AliasChoices("response", "answer"))
    client_seq: int = Field(ge=0, le=2**53)


class AnswerSubmitted(_Client):
    type: Literal["answer_submitted"]
    data: AnswerData


class ProgressData(_In):
    position: Literal["next", "previous"] | Annotated[int, Field(ge=0, le=MAX_INT)]


class ProgressUpdate(_Client):
    type: Literal["progress_update"]
    data: ProgressData


SessionClientMessage = Annotated[
    Auth
    | Heartbeat
    | Ping
    | StateSyncRequest
    | AnswerSubmitted
    | TabViolation
    | TextHighlighted
    | IntegrityEvent
    | IntegrityBatch
    | ProgressUpdate,
    Field(discriminator="type"),
]
SESSION_CLIENT_TYPES = frozenset(
    {
        "auth",
        "heartbeat",
        "ping",
        "state_sync_request",
        "answer_submitted",
        "tab_violation",
        "text_highlighted",
        "integrity_event",
        "integrity_batch",
        "progress_update",
    }
)
session_client_message = TypeAdapter[SessionClientMessage](SessionClientMessage)


# ---- server → client ---------------------------------------------------------------------------


class ConnectedData(BaseModel):
    session_id: uuid.UUID
    user: UserOut
    role: Literal["student", "proctor"]
    connection_id: str
    recovered: bool | None = None
    positions: dict[str, str] = Field(
        default_factory=dict,
        description="the current seq of each channel kind: resume from here if no event follows",
    )


class Connected(_Server):
    type: Literal["connected"] = "connected"
    data: ConnectedData


class StateSyncData(BaseModel):
    session: SessionOut
    attempt: AttemptView | None = Field(None, description="students: their attempt, if any")
    participants: list[ParticipantView] | None = Field(None, description="proctors: the grid")


class StateSyncResponse(_Server):
    type: Literal["state_sync_response"] = "state_sync_response"
    data: StateSyncData


SessionEventType = Literal[
    "session_status_changed",
    "waiting_room_opened",
    "session_started",
    "session_completed",
    "participant_joined",
    "participant_disconnected",
    "notice",
    "accommodation_changed",
    "answer_submitted",
    "tab_violation",
    "text_highlighted",
    "integrity_event",
    "progress_update",
    "timer_changed",
    "assessment_completed",
    "integrity_alert",
    "integrity_warning",
]


class SessionEvent(_Server):
    """An event relayed from the session's channels; `seq` resumes after it (last_event_id)."""

    type: SessionEventType
    data: dict[str, Any]


SessionServerMessage = Annotated[
    Connected
    | StateSyncResponse
    | EventRecorded
    | EventsRecorded
    | SessionEvent
    | AnswerFeedback
    | Question
    | TimerMessage
    | Pong
    | Superseded
    | Error,
    Field(discriminator="type"),
]
session_server_message = TypeAdapter[SessionServerMessage](SessionServerMessage)
