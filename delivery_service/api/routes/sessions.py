"""Proctored group sessions (source 002 and its addendum), under /api/v1/sessions."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.read_models.attempts import AttemptView, Completion, Timer
from delivery_service.read_models.sessions import (
    AuditOut,
    ParticipantView,
    SessionOut,
    SessionStats,
    TimelineEntry,
)
from delivery_service.schemas.actions import ExtendIn, ReasonIn, RequiredReasonIn
from delivery_service.schemas.sessions import AccommodationIn, NoticeIn, SessionIn

router = APIRouter(prefix="/sessions", tags=["sessions"])


@router.post("", response_model=SessionOut, status_code=201)
async def create_session(body: SessionIn, user: CurrentUser, runtime: RuntimeDep) -> SessionOut:
    return await runtime.group_sessions.lifecycle.create(user, body)


@router.get("", response_model=list[SessionOut])
async def list_sessions(user: CurrentUser, runtime: RuntimeDep) -> list[SessionOut]:
    """Admins: all; teachers: their classes' sessions; students: their own (as my-sessions)."""
    return await runtime.group_sessions.lifecycle.list_sessions(user)


@router.get("/my-sessions", response_model=list[SessionOut])
async def my_sessions(user: CurrentUser, runtime: RuntimeDep) -> list[SessionOut]:
    """The sessions of the classes the calling student is enrolled in."""
    return await runtime.group_sessions.lifecycle.list_sessions(user)


@router.get("/{session_id}", response_model=SessionOut)
async def get_session(session_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> SessionOut:
    return await runtime.group_sessions.lifecycle.get(user, session_id)


@router.post("/{session_id}/start-waiting", response_model=SessionOut)
async def start_waiting(
    session_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep
) -> SessionOut:
    """Open the waiting room: SCHEDULED → WAITING_FOR_STUDENTS."""
    return await runtime.group_sessions.lifecycle.open_waiting_room(user, session_id)


@router.post("/{session_id}/start", response_model=SessionOut)
async def start(session_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> SessionOut:
    """Start the global timer for everyone; connected students get their attempts at once."""
    return await runtime.group_sessions.lifecycle.start(user, session_id)


@router.post("/{session_id}/complete", response_model=SessionOut)
async def complete(
    session_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep, body: ReasonIn | None = None
) -> SessionOut:
    """Force-complete: every open attempt ends now, saved responses scored."""
    return await runtime.group_sessions.lifecycle.complete(
        user, session_id, reason=body.reason if body else None
    )


@router.post("/{session_id}/cancel", response_model=SessionOut)
async def cancel(session_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> SessionOut:
    """Cancel before it starts."""
    return await runtime.group_sessions.lifecycle.cancel(user, session_id)


@router.delete("/{session_id}", status_code=204)
async def delete_session(session_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> Response:
    """Admin only; never while in progress. Attempts and the audit log are kept."""
    await runtime.group_sessions.lifecycle.delete(user, session_id)
    return Response(status_code=204)


@router.get("/{session_id}/stats", response_model=SessionStats)
async def stats(session_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> SessionStats:
    return await runtime.group_sessions.monitoring.stats(user, session_id)


@router.get("/{session_id}/participants", response_model=list[ParticipantView])
async def participants(
    session_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep
) -> list[ParticipantView]:
    """The live grid: every enrolled student with connection, position, answers, time, events."""
    return await runtime.group_sessions.monitoring.participants(user, session_id)


@router.get("/{session_id}/participants/{student_id}/timeline", response_model=list[TimelineEntry])
async def timeline(
    session_id: uuid.UUID, student_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep
) -> list[TimelineEntry]:
    return await runtime.group_sessions.monitoring.timeline(user, session_id, student_id)


@router.put("/{session_id}/participants/{student_id}/accommodation", response_model=ParticipantView)
async def accommodation(
    session_id: uuid.UUID,
    student_id: uuid.UUID,
    body: AccommodationIn,
    user: CurrentUser,
    runtime: RuntimeDep,
) -> ParticipantView:
    """Extra seconds and/or a time multiplier for one student, before or during the exam."""
    return await runtime.group_sessions.proctoring.set_accommodation(
        user, session_id, student_id, body
    )


@router.post("/{session_id}/participants/{student_id}/extend", response_model=Timer)
async def extend_student(
    session_id: uuid.UUID,
    student_id: uuid.UUID,
    body: ExtendIn,
    user: CurrentUser,
    runtime: RuntimeDep,
) -> Timer:
    attempt_id = await runtime.group_sessions.proctoring.student_attempt(
        user, session_id, student_id
    )
    return await runtime.attempts.lifecycle.extend(
        user, attempt_id, body.seconds, reason=body.reason
    )


@router.post("/{session_id}/participants/{student_id}/pause", response_model=AttemptView)
async def pause_student(
    session_id: uuid.UUID,
    student_id: uuid.UUID,
    user: CurrentUser,
    runtime: RuntimeDep,
    body: ReasonIn | None = None,
) -> AttemptView:
    attempt_id = await runtime.group_sessions.proctoring.student_attempt(
        user, session_id, student_id
    )
    return await runtime.attempts.lifecycle.pause(
        user, attempt_id, reason=body.reason if body else None
    )


@router.post("/{session_id}/participants/{student_id}/resume", response_model=AttemptView)
async def resume_student(
    session_id: uuid.UUID,
    student_id: uuid.UUID,
    user: CurrentUser,
    runtime: RuntimeDep,
    body: ReasonIn | None = None,
) -> AttemptView:
    attempt_id = await runtime.group_sessions.proctoring.student_attempt(
        user, session_id, student_id
    )
    return await runtime.attempts.lifecycle.resume(
        user, attempt_id, reason=body.reason if body else None
    )


@router.post("/{session_id}/participants/{student_id}/terminate", response_model=Completion)
async def terminate_student(
    session_id: uuid.UUID,
    student_id: uuid.UUID,
    body: RequiredReasonIn,
    user: CurrentUser,
    runtime: RuntimeDep,
) -> Completion:
    attempt_id = await runtime.group_sessions.proctoring.student_attempt(
        user, session_id, student_id
    )
    return await runtime.attempts.lifecycle.terminate(user, attempt_id, reason=body.reason)


@router.post("/{session_id}/notices", status_code=201)
async def notice(
    session_id: uuid.UUID, body: NoticeIn, user: CurrentUser, runtime: RuntimeDep
) -> dict[str, object]:
    """A message to every student of the session, or to one."""
    return await runtime.group_sessions.proctoring.notice(user, session_id, body)


@router.get("/{session_id}/audit", response_model=list[AuditOut])
async def audit(session_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> list[AuditOut]:
    """Every staff action on this session and its students: who, when, why."""
    return await runtime.group_sessions.monitoring.audit(user, session_id)
