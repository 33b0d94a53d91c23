"""Before a socket is served: the Origin check, the ticket, the first-message `auth`.

A browser cannot set headers on a WebSocket, so a socket authenticates with a single-use ticket
in its URL (POST /ws-tickets) or, failing that, with an `auth` message first, within a few
seconds. Refusals send an `error` the client can read, then the close code that says what next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import jwt
from fastapi import WebSocket
from pydantic import ValidationError

from delivery_service.api.ws import messages as p
from delivery_service.api.ws.codes import CLOSE_UNAUTHORIZED
from delivery_service.domain.principal import Principal
from delivery_service.security.tokens import TokenService

#: the claims that bind a WebSocket ticket to one socket (POST /ws-tickets)
TICKET_SCOPES = ("attempt_id", "session_id")


class Rejected(Exception):
    """Raised by `admit` to refuse a socket with an error message and a close code."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """CORS does not cover WebSockets: accept the page's own origin (scheme and host: a page
    served over https may not open this server's plain-ws socket, nor the other way round) or
    an exact allow-list entry. Non-browser clients send no Origin and cannot be tricked into
    cross-site requests."""
    origin = websocket.headers.get("origin")
    if origin is None or origin in allowed:
        return True
    page = urlsplit(origin)
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return page.scheme == scheme and page.netloc == websocket.headers.get("host")


def ticket_fits(claims: Mapping[str, Any], ticket_scope: tuple[str, str]) -> bool:
    """A ticket bound to a socket (an attempt's or a session's) opens that one only; an
    unbound ticket opens any the user may use."""
    claim, expected = ticket_scope
    for scope in TICKET_SCOPES:
        bound = claims.get(scope)
        if bound is not None and (scope != claim or bound != expected):
            return False
    return True


async def first_message_auth(
    websocket: WebSocket, tokens: TokenService, timeout: float
) -> Principal | None:
    """The principal of a socket opened without a ticket: its first message must be `auth`
    with a valid token, within `timeout` seconds. None when refused (and told) or gone."""
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout=timeout)
    except TimeoutError:
        await reject(websocket, "unauthorized", f"no auth message within {timeout:g}s")
        return None
    if message["type"] == "websocket.disconnect":
        return None
    try:
        parsed = p.Auth.model_validate_json(message.get("text") or "")
        principal = tokens.verify(parsed.data.token)
    except (ValidationError, ValueError, jwt.InvalidTokenError) as exc:
        await reject(websocket, "unauthorized", f"the first message must be a valid auth: {exc}")
        return None
    if principal.password_change_required:
        await reject(websocket, "password_change_required", "choose a new password first")
        return None
    return principal


async def reject(
    websocket: WebSocket, code: str, message: str, close_code: int = CLOSE_UNAUTHORIZED
) -> None:
    """Refuse a socket before it is served: the `error`, then the close (neither queued)."""
    with contextlib.suppress(Exception):
        error = p.Error(data=p.ErrorData(code=code, message=message))
        await websocket.send_text(error.model_dump_json())
        await websocket.close(code=close_code)
