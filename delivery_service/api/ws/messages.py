"""What both WebSockets speak: the envelope, and the messages the attempt socket and the
session socket share (auth, heartbeat, ping, the integrity events and their acknowledgements,
answers and questions, superseded, errors).

Defined once so a candidate app sends its sensors' events and reads its acknowledgements the same
way on either socket; each socket's own protocol module adds what only it speaks.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from delivery_service.read_models.attempts import AnswerAck, CurrentItem, Timer
from delivery_service.read_models.times import UtcTime
from delivery_service.schemas.base import StrictModel

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


class Heartbeat(_Client):
    type: Literal["heartbeat"]
    data: Empty = Field(default_factory=Empty)


class PingData(_In):
    client_time: float | None = Field(None, description="client clock (ms since epoch), echoed")


class Ping(_Client):
    type: Literal["ping"]
    data: PingData = Field(default_factory=PingData)


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


# ---- server → client ---------------------------------------------------------------------------


class _Server(BaseModel):
    re: str | None = Field(None, description="the `id` of the client message this answers")
    seq: str | None = Field(None, description="event id (epoch:offset), for last_event_id")


class Question(_Server):
    type: Literal["question"] = "question"
    data: CurrentItem


class AnswerFeedback(_Server):
    """The acknowledgement of a saved answer; it never says whether the answer is right."""

    type: Literal["answer_feedback"] = "answer_feedback"
    data: AnswerAck


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


class ErrorData(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class Error(_Server):
    type: Literal["error"] = "error"
    data: ErrorData
