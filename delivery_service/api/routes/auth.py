"""Login, the caller's identity, and WebSocket tickets."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from delivery_service.api.deps import (
    CurrentUser,
    NoStore,
    RuntimeDep,
    SignedInUser,
    bearer,
    signed_in_user,
)
from delivery_service.domain.principal import Principal
from delivery_service.read_models.classes import UserOut
from delivery_service.runtime import Runtime
from delivery_service.schemas.base import Id, StrictModel
from delivery_service.schemas.users import PasswordChangeIn
from delivery_service.security.device_cookies import DeviceCookies
from delivery_service.services.accounts import SignedIn
from integrity import events as ev

router = APIRouter(tags=["auth"])


class LoginIn(StrictModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: UserOut
    must_change_password: bool = Field(
        False,
        description="this token may only choose a new password (POST /api/v1/auth/password) "
        "and read /auth/me; everything else answers 403 password_change_required",
    )


class MeOut(UserOut):
    must_change_password: bool = False


class PasswordChangeOut(LoginOut):
    """A fresh sign-in: every earlier token of the user ended with the change."""


class TicketIn(StrictModel):
    attempt_id: Id | None = Field(
        None, description="optional: bind the ticket to one attempt's socket"
    )
    session_id: Id | None = Field(
        None, description="optional: bind the ticket to one session's socket"
    )


class TicketOut(BaseModel):
    ticket: str
    expires_in: int


@router.post("/auth/login", response_model=LoginOut, dependencies=[NoStore])
async def login(
    body: LoginIn, runtime: RuntimeDep, request: Request, response: Response
) -> LoginOut:
    """Sign in. Attempts are throttled per address and account (429 with `Retry-After`); a
    browser that signed in before carries a device cookie whose attempts count on their own,
    so nobody elsewhere can use up a candidate's tries."""
    source = request.client.host if request.client else "unknown"
    signed_in = await runtime.accounts.login(
        body.username,
        body.password,
        source=source,
        device_cookie=request.cookies.get(DeviceCookies.NAME),
    )
    _set_device_cookie(signed_in, request, response)
    await record_sign_in(runtime, request, signed_in.principal)
    return _login_out(signed_in, runtime.tokens.ttl_seconds)


async def record_sign_in(
    runtime: Runtime, request: Request, principal: Principal, **how: object
) -> None:
    """A sign-in on the user's chain, whichever way it came (`how`: OpenID's method, …)."""
    await runtime.evidence.observations.record(
        type_=ev.LOGIN,
        candidate_id=principal.user_id,
        actor_id=principal.user_id,
        payload={
            "role": principal.role,
            "client": request.client.host if request.client else "unknown",
            "user_agent": request.headers.get("user-agent", "")[:200],
            **how,
        },
    )


@router.get("/auth/me", response_model=MeOut)
async def me(user: SignedInUser) -> MeOut:
    return MeOut(
        id=user.user_id,
        username=user.username,
        role=user.role,
        must_change_password=user.password_change_required,
    )


@router.post("/auth/password", response_model=PasswordChangeOut, dependencies=[NoStore])
async def change_password(
    body: PasswordChangeIn, runtime: RuntimeDep, request: Request, response: Response
) -> LoginOut:
    """Choose a new password: signed in (bearer token, `current_password`), or from a
    one-time set-password link (`token`, no bearer needed). The new password must have 12+
    characters and not be a common one (422 `weak_password`). Every earlier token of the
    user ends; the answer is a fresh sign-in, like /auth/login's."""
    source = request.client.host if request.client else "unknown"
    if body.token is not None:
        signed_in = await runtime.accounts.set_password_with_token(body.token, body.new_password)
    else:
        user = await signed_in_user(runtime, await bearer(request))
        signed_in = await runtime.accounts.change_password(
            user, body.current_password or "", body.new_password, source=source
        )
    _set_device_cookie(signed_in, request, response)
    return _login_out(signed_in, runtime.tokens.ttl_seconds)


def _login_out(signed_in: SignedIn, expires_in: int) -> LoginOut:
    principal = signed_in.principal
    return LoginOut(
        access_token=signed_in.token,
        expires_in=expires_in,
        user=UserOut(id=principal.user_id, username=principal.username, role=principal.role),
        must_change_password=principal.password_change_required,
    )


def _set_device_cookie(signed_in: SignedIn, request: Request, response: Response) -> None:
    response.set_cookie(
        DeviceCookies.NAME,
        signed_in.device_cookie,
        max_age=180 * 24 * 3600,
        path="/api/v1/auth",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


@router.post("/ws-tickets", response_model=TicketOut, status_code=201, dependencies=[NoStore])
async def issue_ticket(
    user: CurrentUser, runtime: RuntimeDep, request: Request, body: TicketIn | None = None
) -> TicketOut:
    """A single-use ticket for a WebSocket handshake (`?ticket=…`), valid for a few seconds.
    A ticket bound to an attempt or session of a test that requires Safe Exam Browser is only
    issued to a request that proves it, and carries that proof to the handshake."""
    claims = user.claims()
    attempt_id = body.attempt_id if body else None
    session_id = body.session_id if body else None
    # A ticket bound to a socket is for someone who may open it (the attempt's candidate, a
    # member or proctor of the session): nobody writes to a stranger's ledger by asking.
    if attempt_id is not None:
        await runtime.attempts.reads.require(user, attempt_id, "owner")
    if session_id is not None:
        await runtime.group_sessions.lifecycle.get(user, session_id)
    if attempt_id is not None:
        claims["attempt_id"] = str(attempt_id)
    if session_id is not None:
        claims["session_id"] = str(session_id)
    if attempt_id is not None or session_id is not None:
        if await runtime.evidence.seb.require(
            user,
            url=str(request.url),
            headers=request.headers,
            attempt_id=attempt_id,
            session_id=session_id,
        ):
            claims["seb"] = True
        if not user.is_staff:
            await runtime.evidence.observations.record(
                type_=ev.TICKET_ISSUED,
                candidate_id=user.user_id,
                actor_id=user.user_id,
                attempt_id=attempt_id,
                session_id=session_id,
            )
    ticket = await runtime.tickets.issue(claims)
    return TicketOut(ticket=ticket, expires_in=runtime.tickets.ttl_seconds)
