"""Integrity: candidate events over REST, and the staff views of the ledger (verification, the
appeal report, the review queue, the admin audit trail)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from delivery_service.api.deps import CurrentUser, RuntimeDep
from delivery_service.api.ws import messages as p
from delivery_service.api.ws.integrity_messages import batch_of, recorded_data
from delivery_service.services.evidence import verification_out

router = APIRouter(tags=["integrity"])


class EventsOut(BaseModel):
    events: list[p.EventRecordedData]


class BrokenLinkOut(BaseModel):
    seq: int
    event_id: int | None
    problem: str = Field(description="seal_mismatch, prev_mismatch, seq_gap, truncated, …")
    detail: str


class VerificationOut(BaseModel):
    chain: str
    ok: bool
    events: int = Field(description="events read before the verdict")
    head_seq: int | None
    first_broken: BrokenLinkOut | None


@router.post("/attempts/{attempt_id}/events", response_model=EventsOut)
async def report_events(
    attempt_id: uuid.UUID, body: p.IntegrityBatchData, user: CurrentUser, runtime: RuntimeDep
) -> EventsOut:
    """The candidate's own integrity events, as over the socket (`integrity_batch`): for a
    page that is closing, or a client without a socket. Idempotent by `client_event_id`."""
    message = p.IntegrityBatch(type="integrity_batch", data=body)
    acks = await runtime.evidence.events.record(user, batch_of(message), attempt_id=attempt_id)
    return EventsOut(events=[recorded_data(a) for a in acks])


@router.get("/attempts/{attempt_id}/ledger")
async def ledger(
    attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep
) -> list[dict[str, Any]]:
    """Staff: every event of the attempt's chain, in order, with its seal."""
    return await runtime.evidence.reports.ledger(user, attempt_id)


@router.get("/attempts/{attempt_id}/ledger/verify", response_model=VerificationOut)
async def verify(attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> Any:
    """Staff: recompute every seal of the attempt's chain; name the first broken link."""
    return verification_out(await runtime.evidence.reports.verify(user, attempt_id))


@router.get("/attempts/{attempt_id}/integrity")
async def report(attempt_id: uuid.UUID, user: CurrentUser, runtime: RuntimeDep) -> dict[str, Any]:
    """Staff: the attempt's integrity report for an appeal (the console shows it as a page at
    /console/report.html?attempt=ID)."""
    return await runtime.evidence.reports.report(user, attempt_id)


@router.get("/integrity/review")
async def review_queue(user: CurrentUser, runtime: RuntimeDep) -> list[dict[str, Any]]:
    """Staff: attempts a violation rule marked for review, with the reasons."""
    return await runtime.evidence.reports.review_queue(user)


@router.get("/audit")
async def audit(
    user: CurrentUser,
    runtime: RuntimeDep,
    actor_id: uuid.UUID | None = None,
    action: str | None = Query(None, max_length=40),
    attempt_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    since: datetime | None = None,
    limit: int = Query(200, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Admins: the staff audit trail (who did what to whom, when and why), newest first."""
    return await runtime.evidence.reports.audit(
        user,
        actor_id=actor_id,
        action=action,
        attempt_id=attempt_id,
        session_id=session_id,
        since=since,
        limit=limit,
    )
