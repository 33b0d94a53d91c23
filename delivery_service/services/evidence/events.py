"""Candidate events into the ledger: a batch stored in one transaction, acknowledged only after
its commit, like an answer (DESIGN.md §2 rule 1). An event resent from the app's outbox under the
same `client_event_id` is stored once. The proctor feed hears each new one; the violation rules
(`enforcement`) act on the batch before it commits."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Forbidden, NotFound, VersionConflict
from delivery_service.domain.principal import Principal
from delivery_service.domain.timing import iso
from delivery_service.live.bus import Bus
from delivery_service.live.keys import proctor_channel
from delivery_service.services.access import session_for
from delivery_service.services.after_commit import AfterCommit, run_safely
from delivery_service.services.attempts import AttemptService, locked_attempt
from delivery_service.services.evidence.enforcement import Enforcement
from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import Entry, Ledger, attempt_chain, participant_chain
from delivery_service.storage.models import Attempt, LedgerEvent, Participant, Test
from integrity.events import CANDIDATE_KINDS, TAB_VIOLATION, TEXT_HIGHLIGHTED
from integrity.policy import LockdownPolicy, policy_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reported:
    """One candidate event as it arrived, whatever the message that carried it."""

    kind: str  # the ledger type: tab_hidden, copy, tab_violation, text_highlighted, …
    wire_type: str  # the message type it came in (the proctor feed keeps that name)
    payload: dict[str, Any]
    client_time: datetime | None = None
    client_event_id: str | None = None

    @property
    def duration_ms(self) -> int | None:
        value = self.payload.get("duration_ms")
        return value if isinstance(value, int) else None


@dataclass
class Recorded:
    """The acknowledgement of one event; `feed` is what the proctor feed gets."""

    event_id: int
    type: str
    wire_type: str
    client_event_id: str | None
    duplicate: bool
    at: datetime
    count: int
    feed: dict[str, Any]


@dataclass
class Batch:
    """One batch being stored: its transaction, whose it is and where it goes, and what the
    rules left to do once it committed (publish, then pause or terminate the attempt)."""

    s: AsyncSession
    principal: Principal
    now: datetime
    chain: str
    attempt: Attempt | None
    session_id: uuid.UUID | None
    policy: LockdownPolicy
    after: list[AfterCommit] = field(default_factory=list)
    enforce: list[tuple[uuid.UUID, str, str]] = field(default_factory=list)


class CandidateEvents:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        bus: Bus,
        attempts: AttemptService,
        enforcement: Enforcement,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._bus = bus
        self._attempts = attempts
        self._enforcement = enforcement

    async def record(
        self,
        principal: Principal,
        events: Sequence[Reported],
        *,
        attempt_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
    ) -> list[Recorded]:
        """Store a batch of the caller's own events in one transaction, then act and publish."""
        for _ in range(3):
            try:
                return await self._record(principal, events, attempt_id, session_id)
            except IntegrityError:  # the same events, resent concurrently: the retry finds them
                continue
        raise VersionConflict("the events could not be stored; resend them")

    async def _record(
        self,
        principal: Principal,
        events: Sequence[Reported],
        attempt_id: uuid.UUID | None,
        session_id: uuid.UUID | None,
    ) -> list[Recorded]:
        async with self._db() as s:
            async with s.begin():
                batch = await self._batch(s, principal, attempt_id, session_id)
                # Two queries per batch, not two per event: what was stored before under these
                # ids (a resend), and how many events of each type the candidate has so far.
                known = await self._prior(s, principal.user_id, events)
                counts = await self._counts(batch)
                acks: list[Recorded] = []
                fresh: list[LedgerEvent] = []
                for event in events:
                    prior = known.get(event.client_event_id or "")
                    row = prior or await self._ledger.append(
                        s, self._entry(batch, event), batch.now
                    )
                    if prior is None:
                        fresh.append(row)
                        counts[row.type] = counts.get(row.type, 0) + 1
                        if event.client_event_id:
                            known[event.client_event_id] = row
                    acks.append(self._ack(batch, row, event, counts, duplicate=prior is not None))
                if fresh and batch.attempt is not None:
                    await self._enforcement.apply(batch, fresh)
            for ack in acks:
                if not ack.duplicate and batch.session_id is not None:
                    channel = proctor_channel(str(batch.session_id))
                    await run_safely(self._bus.publish(channel, ack.wire_type, ack.feed))
            for step in batch.after:
                await run_safely(step())
            for ident, action, reason in batch.enforce:
                try:
                    await self._attempts.lifecycle.enforce(ident, action, reason=reason)  # type: ignore[arg-type]
                except Exception:  # the evidence is stored; a sweep or a proctor can act
                    log.exception("could not %s attempt %s for a violation", action, ident)
            return acks

    async def _batch(
        self,
        s: AsyncSession,
        principal: Principal,
        attempt_id: uuid.UUID | None,
        session_id: uuid.UUID | None,
    ) -> Batch:
        now = await db_now(s)
        attempt: Attempt | None = None
        if session_id is not None:
            session = await session_for(s, principal, session_id, manage=False)
            if principal.is_staff:
                raise Forbidden("only students report integrity events")
            participant = await s.get(Participant, (session.id, principal.user_id))
            attempt_id = participant.attempt_id if participant else None
        if attempt_id is not None:
            # The attempt row before the chain head: the lock order of storage.ledger.
            attempt = await locked_attempt(s, attempt_id)
            if attempt is None or attempt.user_id != principal.user_id:
                raise NotFound("attempt", attempt_id)
            session_id = attempt.session_id
            test = await s.get(Test, attempt.test_id)
            policy = policy_of(test.lockdown if test else None)
            return Batch(s, principal, now, attempt_chain(attempt.id), attempt, session_id, policy)
        if session_id is None:
            raise NotFound("attempt", attempt_id)
        chain = participant_chain(session_id, principal.user_id)
        return Batch(s, principal, now, chain, None, session_id, LockdownPolicy())

    @staticmethod
    def _entry(batch: Batch, event: Reported) -> Entry:
        return Entry(
            chain=batch.chain,
            type=event.kind,
            source="candidate",
            actor_id=batch.principal.user_id,
            candidate_id=batch.principal.user_id,
            attempt_id=batch.attempt.id if batch.attempt else None,
            session_id=batch.session_id,
            payload=event.payload,
            client_event_id=event.client_event_id,
            client_time=event.client_time,
        )

    @staticmethod
    async def _prior(
        s: AsyncSession, user_id: uuid.UUID, events: Sequence[Reported]
    ) -> dict[str, LedgerEvent]:
        ids = [e.client_event_id for e in events if e.client_event_id]
        if not ids:
            return {}
        rows = await s.scalars(
            select(LedgerEvent).where(
                LedgerEvent.actor_id == user_id, LedgerEvent.client_event_id.in_(ids)
            )
        )
        return {row.client_event_id: row for row in rows if row.client_event_id}

    @staticmethod
    async def _counts(batch: Batch) -> dict[str, int]:
        """The candidate's events so far by type, in the session (or the attempt's chain)."""
        scope = (
            LedgerEvent.session_id == batch.session_id
            if batch.session_id is not None
            else LedgerEvent.chain == batch.chain
        )
        rows = await batch.s.execute(
            select(LedgerEvent.type, func.count())
            .where(
                scope,
                LedgerEvent.candidate_id == batch.principal.user_id,
                LedgerEvent.source == "candidate",
                LedgerEvent.type.in_(CANDIDATE_KINDS),
            )
            .group_by(LedgerEvent.type)
        )
        return {type_: int(n) for type_, n in rows}

    @staticmethod
    def _ack(
        batch: Batch,
        row: LedgerEvent,
        event: Reported,
        counts: dict[str, int],
        *,
        duplicate: bool,
    ) -> Recorded:
        # Counted by the message type the client used, as the acknowledgement documents it:
        # `integrity_event` covers every kind but the two with messages of their own.
        if event.wire_type == "integrity_event":
            own = (TAB_VIOLATION, TEXT_HIGHLIGHTED)
            count = sum(n for type_, n in counts.items() if type_ not in own)
        else:
            count = counts.get(event.wire_type, 0)
        feed = dict(row.payload)
        if event.wire_type == "integrity_event":
            feed["kind"] = row.type
        feed |= {
            "event_id": row.id,
            "student_id": str(batch.principal.user_id),
            "username": batch.principal.username,
            "attempt_id": str(row.attempt_id) if row.attempt_id else None,
            "count": count,
            "client_time": iso(row.client_time) if row.client_time else None,
            "client_event_id": row.client_event_id,
            "duplicate": duplicate,
            "at": iso(row.server_time),
        }
        return Recorded(
            event_id=row.id,
            type=row.type,
            wire_type=event.wire_type,
            client_event_id=row.client_event_id,
            duplicate=duplicate,
            at=row.server_time,
            count=count,
            feed=feed,
        )
