"""Both sockets' protocols as one JSON Schema document, for client authors.

Here, not beside either protocol, because it reads both: the session protocol builds on the
shared messages, and neither protocol module needs to know the document exists.
`examserver ws-schema` writes it to docs/ws-protocol.schema.json, which a test keeps current.
"""

from __future__ import annotations

from typing import Any

from delivery_service.api.ws.attempt_protocol import client_message, server_message
from delivery_service.api.ws.session_protocol import (
    session_client_message,
    session_server_message,
)


def json_schema() -> dict[str, Any]:
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
