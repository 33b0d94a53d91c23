"""Self-paced delivery over REST (source 000's routes, under /api/v1/attempts)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.read_models.attempts import (
    AnswerAck,
    AttemptSummary,
    AttemptView,
    Completion,
    CurrentItem,
    FlagAck,
    Progress,
    Timer,
)
from delivery_service.schemas.actions import ExtendIn, ReasonIn, RequiredReasonIn
from delivery_service.schemas.base import Id, StrictModel


def _attempt_in_path(request: Request) -> uuid.UUID | None:
    """The route's attempt id, if it has one that parses (else the route answers the
    validation error itself)."""
    raw = request.path_params.get("attempt_id")
    try:
        return None if raw is None else uuid.UUID(str(raw))
    except ValueError:
        return None


async def seb_guard(request: Request, user: CurrentUser, runtime: RuntimeDep) -> None:
    """A test that requires Safe Exam Browser refuses a candidate's request without its proof."""
    attempt_id = _attempt_in_path(request)
    if attempt_id is None:
        return
    await runtime.evidence.seb.require(
        user, url=str(request.url), headers=request.headers, attempt_id=attempt_id
    )


async def network_guard(request: Request, user: CurrentUser, runtime: RuntimeDep) -> None:
    """A test with allowed networks refuses a candidate's request about one of its attempts
    from anywhere else (the client address as uvicorn's trusted-proxy setting resolved it)."""
    attempt_id = _attempt_in_path(request)
    if attempt_id is None:
        return
    await runtime.networks.require(user, client=client_address(request), attempt_id=attempt_id)


def client_address(request: Request) -> str | None:
    """The caller's address: the peer's, or a trusted proxy's `X-Forwarded-For` (uvicorn's
    `proxy_headers` with `EXAMSERVER_FORWARDED_ALLOW_IPS` has already put it in `client`)."""
    return request.client.host if request.client else None


router = APIRouter(
    prefix="/attempts",
    tags=["attempts"],
    dependencies=[Depends(seb_guard), Depends(network_guard)],
)


class AttemptIn(StrictModel):
    test_id: Id
    password: str | None = Field(
        None, min_length=1, max_length=200, description="the test's access password, if it has one"
    )


class AnswerIn(StrictModel):
    item_id: str = Field(min_length=1, max_length=128)
    response: Any = Field(description="choice: an identifier or a list of them; null clears")
    client_seq: int = Field(
        ge=0, le=2**53, description="increasing per attempt; makes it idempotent"
    )


class NavigateIn(StrictModel):
    to: Literal["next", "previous"] | int = Field(description='"next", "previous" or an index')


class FlagIn(StrictModel):
    item_id: str = Field(min_length=1, max_length=128)
    flagged: bool


@router.post(
    "",
    response_model=AttemptView,
    status_code=201,
    responses={200: {"model": AttemptView, "description": "the caller's attempt still open"}},
)
async def create_attempt(
    body: AttemptIn,
    user: CurrentUser,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
) -> AttemptView:
    """Create the caller's next attempt; if one is still open it is returned with 200. A
    student needs the test assigned to one of their classes, its window open, no proctored
    session using it, an allowed network and its access password, if it has one."""
    await runtime.evidence.seb.require(
        user, url=str(request.url), headers=request.headers, test_id=body.test_id
    )
    view, created = await runtime.attempts.creation.create(
        user, body.test_id, password=body.password, client=client_address(request)
    )
    if not created:
        response.status_code = 200
    return view


@router.get("", response_model=list[AttemptSummary])
async def list_attempts(
    user: CurrentUser,
    runtime: RuntimeDep,
    test_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
) -> list[AttemptSummary]:
    """The caller's attempts, newest first; staff may filter anyone's by test or candidate."""
    return await runtime.attempts.reads.list_attempts(user, test_id=test_id, user_id=user_id)


@router.get("/{attempt_id}", response_model=AttemptView)
async def get_attempt(attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> AttemptView:
    return await runtime.attempts.reads.get(user, attempt_id)


@router.post("/{attempt_id}/start", response_model=AttemptView)
async def start(attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> AttemptView:
    return await runtime.attempts.lifecycle.start(user, attempt_id)


@router.get("/{attempt_id}/current", response_model=CurrentItem)
async def current(attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> CurrentItem:
    return await runtime.attempts.reads.current(user, attempt_id)


@router.get("/{attempt_id}/progress", response_model=Progress)
async def progress(attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> Progress:
    return await runtime.attempts.reads.progress(user, attempt_id)


@router.get("/{attempt_id}/timer", response_model=Timer)
async def timer(attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> Timer:
    return await runtime.attempts.reads.timer(user, attempt_id)


@router.post("/{attempt_id}/answers", response_model=AnswerAck)
async def answer(
    attempt_id: uuid.UUID, body: AnswerIn, user: CurrentUser, runtime: RuntimeDep
) -> AnswerAck:
    return await runtime.attempts.answers.save_answer(
        user, attempt_id, item_id=body.item_id, response=body.response, client_seq=body.client_seq
    )


@router.post("/{attempt_id}/navigate", response_model=CurrentItem)
async def navigate(
    attempt_id: uuid.UUID, body: NavigateIn, user: CurrentUser, runtime: RuntimeDep
) -> CurrentItem:
    return await runtime.attempts.navigation.navigate(user, attempt_id, body.to)


@router.post("/{attempt_id}/flags", response_model=FlagAck)
async def flag(
    attempt_id: uuid.UUID, body: FlagIn, user: CurrentUser, runtime: RuntimeDep
) -> FlagAck:
    return await runtime.attempts.navigation.flag(user, attempt_id, body.item_id, body.flagged)


@router.post("/{attempt_id}/pause", response_model=AttemptView)
async def pause(
    attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep, body: ReasonIn | None = None
) -> AttemptView:
    return await runtime.attempts.lifecycle.pause(
        user, attempt_id, reason=body.reason if body else None
    )


@router.post("/{attempt_id}/resume", response_model=AttemptView)
async def resume(
    attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep, body: ReasonIn | None = None
) -> AttemptView:
    return await runtime.attempts.lifecycle.resume(
        user, attempt_id, reason=body.reason if body else None
    )


@router.post("/{attempt_id}/submit", response_model=Completion)
async def submit(attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> Completion:
    return await runtime.attempts.lifecycle.submit(user, attempt_id)


@router.post("/{attempt_id}/terminate", response_model=Completion)
async def terminate(
    attempt_id: uuid.UUID, body: RequiredReasonIn, user: CurrentUser, runtime: RuntimeDep
) -> Completion:
    """Staff only: end the attempt now, with a reason; saved responses are scored."""
    return await runtime.attempts.lifecycle.terminate(user, attempt_id, reason=body.reason)


@router.get("/{attempt_id}/adaptive")
async def adaptive_audit(
    attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep
) -> list[dict[str, Any]]:
    """Staff only: each adaptive section's log with the engine's decisions replayed from the
    stored seed, configuration and pinned pool; `consistent` is false if any delivered item
    was not the engine's own choice."""
    return await runtime.attempts.navigation.adaptive_audit(user, attempt_id)


@router.post("/{attempt_id}/extend", response_model=Timer)
async def extend(
    attempt_id: uuid.UUID, body: ExtendIn, user: CurrentUser, runtime: RuntimeDep
) -> Timer:
    """Staff only: move this attempt's deadline; the candidate's countdown updates at once."""
    return await runtime.attempts.lifecycle.extend(
        user, attempt_id, body.seconds, reason=body.reason
    )
