"""Integrity messages from either socket into the service, and their acknowledgements back.

The attempt socket (self-paced) and the session socket (proctored) accept the same messages, so
the candidate app sends its sensors' events the same way wherever the candidate is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from delivery_service.api.ws import messages as p
from delivery_service.services.evidence import Recorded, Reported

IntegrityMessage = p.TabViolation | p.TextHighlighted | p.IntegrityEvent


def client_time(value: float | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def reported(message: IntegrityMessage) -> Reported:
    payload: dict[str, Any] = message.data.model_dump(
        exclude={"client_time", "client_event_id", "kind"}, exclude_none=True
    )
    kind = message.data.kind if isinstance(message, p.IntegrityEvent) else message.type
    return Reported(
        kind=kind,
        wire_type=message.type,
        payload=payload,
        client_time=client_time(message.data.client_time),
        client_event_id=message.data.client_event_id,
    )


def recorded_data(ack: Recorded) -> p.EventRecordedData:
    return p.EventRecordedData(
        type=ack.wire_type,
        event_id=ack.event_id,
        count=ack.count,
        client_event_id=ack.client_event_id,
        duplicate=ack.duplicate,
    )


def batch_of(message: p.IntegrityBatch) -> list[Reported]:
    return [reported(event) for event in message.data.events]
