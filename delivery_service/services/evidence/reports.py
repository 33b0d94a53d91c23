"""What staff read of the evidence: an attempt's ledger and its verification, the report an
appeal needs, the review queue and the staff audit trail. Ledgers are for staff only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Forbidden
from delivery_service.domain.principal import Principal
from delivery_service.domain.timing import iso
from delivery_service.services.access import attempts_managed_by, check_attempt
from delivery_service.services.evidence.enforcement import observed_of
from delivery_service.storage.ledger import Ledger, attempt_chain
from delivery_service.storage.models import Attempt, LedgerEvent, Test, User
from integrity.chain import Verification
from integrity.events import CONNECTION_OPENED, RECONNECTED, SUPERSEDED
from integrity.policy import policy_of
from integrity.rules import assess


class StaffReports:
    def __init__(self, *, db: async_sessionmaker[AsyncSession], ledger: Ledger) -> None:
        self._db = db
        self._ledger = ledger

    async def _staff_attempt(
        self, s: AsyncSession, principal: Principal, attempt_id: uuid.UUID
    ) -> Attempt:
        """Ledgers are for staff: a candidate is refused even for their own attempt; staff
        of another class are refused too."""
        attempt = await s.get(Attempt, attempt_id)
        if attempt is not None and not principal.is_staff and attempt.user_id == principal.user_id:
            raise Forbidden("the integrity ledger is for staff")
        return await check_attempt(s, principal, attempt_id, attempt, "staff")

    async def ledger(self, principal: Principal, attempt_id: uuid.UUID) -> list[dict[str, Any]]:
        async with self._db() as s:
            attempt = await self._staff_attempt(s, principal, attempt_id)
            return [
                event_out(row) for row in await self._ledger.events(s, attempt_chain(attempt.id))
            ]

    async def verify(self, principal: Principal, attempt_id: uuid.UUID) -> Verification:
        async with self._db() as s:
            attempt = await self._staff_attempt(s, principal, attempt_id)
            return await self._ledger.verify(s, attempt_chain(attempt.id))

    async def report(self, principal: Principal, attempt_id: uuid.UUID) -> dict[str, Any]:
        """Everything an appeal needs about one attempt, from the ledger."""
        async with self._db() as s:
            attempt = await self._staff_attempt(s, principal, attempt_id)
            test = await s.get(Test, attempt.test_id)
            candidate = await s.get(User, attempt.user_id)
            policy = policy_of(test.lockdown if test else None)
            rows = await self._ledger.events(s, attempt_chain(attempt.id))
            verification = await self._ledger.verify(s, attempt_chain(attempt.id))
            assessment = assess(policy, observed_of(rows))
            actors = await _names(s, {r.actor_id for r in rows if r.actor_id})
        connections = [
            event_out(r, actors)
            for r in rows
            if r.type in (CONNECTION_OPENED, RECONNECTED, SUPERSEDED, "connection_closed")
        ]
        return {
            "attempt": {
                "id": str(attempt.id),
                "test_id": str(attempt.test_id),
                "test_title": test.title if test else None,
                "candidate": {
                    "id": str(attempt.user_id),
                    "username": candidate.username if candidate else None,
                },
                "session_id": str(attempt.session_id) if attempt.session_id else None,
                "state": attempt.state,
                "started_at": iso(attempt.started_at) if attempt.started_at else None,
                "deadline": iso(attempt.deadline) if attempt.deadline else None,
                "ended_at": iso(attempt.ended_at) if attempt.ended_at else None,
                "score": attempt.score,
                "max_score": attempt.max_score,
            },  # fmt: skip
            "policy": policy.public(),
            "verification": verification_out(verification),
            "review": attempt.review or [],
            "tab_switches": assessment.tab_switches,
            "incidents": [
                {
                    "incident_id": i.id,
                    "started_at": iso(i.started_at),
                    "last_at": iso(i.last_at),
                    "kinds": i.kinds,
                    "event_ids": i.event_ids,
                    "longest_absence_ms": i.longest_absence_ms,
                    "counted_as_tab_switch": i.counted_departure,
                }
                for i in assessment.incidents
            ],
            "violations": [
                {
                    "rule": v.rule,
                    "action": v.action,
                    "reason": v.reason,
                    "incident_id": v.incident_id,
                    "event_ids": list(v.event_ids),
                }
                for v in assessment.violations
            ],  # fmt: skip
            "connections": connections,
            "timeline": [event_out(r, actors) for r in rows],
        }

    async def review_queue(self, principal: Principal) -> list[dict[str, Any]]:
        """Attempts marked for review that the caller may see, newest first."""
        if not principal.is_staff:
            raise Forbidden("the review queue is for staff")
        stmt = (
            select(Attempt, User.username, Test.title)
            .join(User, User.id == Attempt.user_id)
            .join(Test, Test.id == Attempt.test_id)
            .where(Attempt.review.is_not(None))
            .order_by(Attempt.created_at.desc())
            .limit(500)
        )
        managed = attempts_managed_by(principal, Attempt.session_id, Attempt.user_id)
        if managed is not None:
            stmt = stmt.where(managed)
        async with self._db() as s:
            out = []
            for attempt, username, title in await s.execute(stmt):
                if not attempt.review:
                    continue
                out.append(
                    {"attempt_id": str(attempt.id), "candidate": username, "test_title": title,
                     "session_id": str(attempt.session_id) if attempt.session_id else None,
                     "state": attempt.state, "reasons": attempt.review}
                )  # fmt: skip
            return out

    async def audit(
        self,
        principal: Principal,
        *,
        actor_id: uuid.UUID | None = None,
        action: str | None = None,
        attempt_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """The staff audit trail: admins only."""
        if principal.role != "admin":
            raise Forbidden("the audit trail is for admins")
        stmt = select(LedgerEvent).where(LedgerEvent.source == "staff")
        if actor_id is not None:
            stmt = stmt.where(LedgerEvent.actor_id == actor_id)
        if action is not None:
            stmt = stmt.where(LedgerEvent.type == action)
        if attempt_id is not None:
            stmt = stmt.where(LedgerEvent.attempt_id == attempt_id)
        if session_id is not None:
            stmt = stmt.where(LedgerEvent.session_id == session_id)
        if since is not None:
            stmt = stmt.where(LedgerEvent.server_time >= since)
        async with self._db() as s:
            rows = list(await s.scalars(stmt.order_by(LedgerEvent.id.desc()).limit(limit)))
            actors = await _names(s, {r.actor_id for r in rows if r.actor_id})
            actors |= await _names(s, {r.candidate_id for r in rows if r.candidate_id})
        return [event_out(r, actors) for r in rows]


async def _names(s: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await s.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {ident: name for ident, name in rows}


def event_out(row: LedgerEvent, names: dict[uuid.UUID, str] | None = None) -> dict[str, Any]:
    names = names or {}
    return {
        "event_id": row.id,
        "seq": row.seq,
        "type": row.type,
        "source": row.source,
        "server_time": iso(row.server_time),
        "client_time": iso(row.client_time) if row.client_time else None,
        "actor_id": str(row.actor_id) if row.actor_id else None,
        "actor": names.get(row.actor_id) if row.actor_id else None,
        "candidate": names.get(row.candidate_id) if row.candidate_id else None,
        "candidate_id": str(row.candidate_id) if row.candidate_id else None,
        "attempt_id": str(row.attempt_id) if row.attempt_id else None,
        "session_id": str(row.session_id) if row.session_id else None,
        "payload": row.payload,
        "reason": row.reason,
        "client_event_id": row.client_event_id,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def verification_out(v: Verification) -> dict[str, Any]:
    broken = v.first_broken
    return {
        "chain": v.chain,
        "ok": v.ok,
        "events": v.events,
        "head_seq": v.head_seq,
        "first_broken": None
        if broken is None
        else {
            "seq": broken.seq,
            "event_id": broken.event_id,
            "problem": broken.problem,
            "detail": broken.detail,
        },
    }
