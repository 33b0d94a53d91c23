"""The violation rules acted on: a batch's new events assessed against the attempt's whole event
history from the ledger (integrity.rules), so what they decide can always be recomputed from the
evidence. A new violation goes on the ledger, may mark the attempt for review, pause or end it,
warns the candidate and alerts the proctors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.domain.timing import iso
from delivery_service.live.bus import Bus
from delivery_service.live.keys import attempt_channel, proctor_channel
from delivery_service.storage.ledger import Ledger
from delivery_service.storage.models import LedgerEvent
from integrity.events import VIOLATION
from integrity.rules import Observed, assess, new_violations

if TYPE_CHECKING:
    from delivery_service.services.evidence.events import Batch


class Enforcement:
    def __init__(self, *, ledger: Ledger, bus: Bus) -> None:
        self._ledger = ledger
        self._bus = bus

    async def apply(self, batch: Batch, fresh: list[LedgerEvent]) -> None:
        """Inside the batch's transaction; what is published or enforced waits in `batch` for the
        commit."""
        attempt = batch.attempt
        if attempt is None:
            return
        history = await observed_history(batch.s, batch.chain)
        new_ids = {row.id for row in fresh}
        before = assess(batch.policy, [o for o in history if o.event_id not in new_ids])
        after = assess(batch.policy, history)
        violations = new_violations(before, after)
        touched = {inc.id for row in fresh if (inc := after.incident_of(row.id)) is not None}
        review = list(attempt.review or [])
        for v in violations:
            await self._ledger.record(
                batch.s,
                batch.now,
                chain=batch.chain,
                type=VIOLATION,
                source="server",
                candidate_id=attempt.user_id,
                attempt_id=attempt.id,
                session_id=attempt.session_id,
                payload={"rule": v.rule, "action": v.action, "incident_id": v.incident_id,
                         "event_ids": list(v.event_ids)},
                reason=v.reason,
            )  # fmt: skip
            if v.action != "warn":
                review.append(
                    {"rule": v.rule, "action": v.action, "reason": v.reason,
                     "incident_id": v.incident_id, "event_ids": list(v.event_ids),
                     "at": iso(batch.now)}
                )  # fmt: skip
            if v.action in ("pause", "terminate") and attempt.state == "in_progress":
                batch.enforce.append((attempt.id, v.action, f"{v.rule}: {v.reason}"))
            warning = {"rule": v.rule, "action": v.action, "reason": v.reason,
                       "tab_switches": after.tab_switches,
                       "allowed_tab_switches": batch.policy.allowed_tab_switches,
                       "at": iso(batch.now)}  # fmt: skip
            # Session students follow their attempt's channel too: one publish reaches both.
            self._publish_later(
                batch, attempt_channel(str(attempt.id)), "integrity_warning", warning
            )
        if len(review) != len(attempt.review or []):
            attempt.review = review
        if attempt.session_id is None:
            return
        for incident in after.incidents:
            if incident.id not in touched:
                continue
            alert = {
                "incident_id": incident.id,
                "attempt_id": str(attempt.id),
                "student_id": str(attempt.user_id),
                "username": batch.principal.username,
                "kinds": incident.kinds,
                "events": len(incident.event_ids),
                "event_ids": incident.event_ids,
                "started_at": iso(incident.started_at),
                "last_at": iso(incident.last_at),
                "longest_absence_ms": incident.longest_absence_ms,
                "tab_switches": after.tab_switches,
                "violations": [
                    {"rule": v.rule, "action": v.action, "reason": v.reason}
                    for v in after.violations
                    if v.incident_id == incident.id
                ],
                "marked_for_review": bool(review),
            }
            channel = proctor_channel(str(attempt.session_id))
            self._publish_later(batch, channel, "integrity_alert", alert)

    def _publish_later(self, batch: Batch, channel: str, type_: str, data: dict[str, Any]) -> None:
        batch.after.append(lambda: self._bus.publish(channel, type_, data))


async def observed_history(s: AsyncSession, chain: str) -> list[Observed]:
    """A chain's candidate events, in order, as the rules read them."""
    rows = await s.execute(
        select(
            LedgerEvent.id,
            LedgerEvent.type,
            LedgerEvent.client_time,
            LedgerEvent.server_time,
            LedgerEvent.payload,
        )
        .where(LedgerEvent.chain == chain, LedgerEvent.source == "candidate")
        .order_by(LedgerEvent.seq)
    )
    return [_observe(*row) for row in rows]


def observed_of(rows: Sequence[LedgerEvent]) -> list[Observed]:
    """The same, from ledger rows already loaded."""
    return [
        _observe(r.id, r.type, r.client_time, r.server_time, r.payload)
        for r in rows
        if r.source == "candidate"
    ]


def _observe(
    ident: int,
    type_: str,
    client_time: datetime | None,
    server_time: datetime,
    payload: dict[str, Any],
) -> Observed:
    """Incidents are grouped on the client's clock when it sent one: a batch arrives at one
    server moment, but its events happened seconds or minutes apart. (The sensors are the
    client's testimony either way; the ledger keeps both times.)"""
    duration = payload.get("duration_ms")
    return Observed(
        event_id=ident,
        kind=type_,
        at=client_time or server_time,
        duration_ms=duration if isinstance(duration, int) else None,
    )
