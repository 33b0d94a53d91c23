"""Login, the caller's identity, and WebSocket tickets."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel, Field

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.schemas import StrictModel, UserOut

router = APIRouter(tags=["auth"])


class LoginIn(StrictModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: UserOut


class TicketIn(StrictModel):
    attempt_id: uuid.UUID | None = Field(
        None, description="optional: bind the ticket to one attempt's socket"
    )
    session_id: uuid.UUID | None = Field(
        None, description="optional: bind the ticket to one session's socket"
    )


class TicketOut(BaseModel):
    ticket: str
    expires_in: int


@router.post("/auth/login", response_model=LoginOut)
async def login(body: LoginIn, runtime: RuntimeDep) -> LoginOut:
    token, principal = await runtime.accounts.login(body.username, body.password)
    return LoginOut(
        access_token=token,
        expires_in=runtime.tokens.ttl_seconds,
        user=UserOut(id=principal.user_id, username=principal.username, role=principal.role),
    )


@router.get("/auth/me", response_model=UserOut)
async def me(user: CurrentUser) -> UserOut:
    return UserOut(id=user.user_id, username=user.username, role=user.role)


@router.post("/ws-tickets", response_model=TicketOut, status_code=201)
async def issue_ticket(
    user: CurrentUser, runtime: RuntimeDep, body: TicketIn | None = None
) -> TicketOut:
    """A single-use ticket for a WebSocket handshake (`?ticket=…`), valid for a few seconds."""
    claims = user.claims()
    if body is not None and body.attempt_id is not None:
        claims["attempt_id"] = str(body.attempt_id)
    if body is not None and body.session_id is not None:
        claims["session_id"] = str(body.session_id)
    ticket = await runtime.tickets.issue(claims)
    return TicketOut(ticket=ticket, expires_in=runtime.tickets.ttl_seconds)
