"""Integrity use cases: candidate events into the ledger, violation rules acted on, alerts to
proctors, the staff views (ledger, verification, report, review queue, audit trail).

A candidate event is acknowledged only after its commit, like an answer (DESIGN.md §2 rule 1),
and an event resent from the app's outbox under the same `client_event_id` is stored once. The
rules read the attempt's whole event history from the ledger (integrity.rules), so what they
decide can always be recomputed from the evidence.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Forbidden, NotFound, SebRequired, VersionConflict
from delivery_service.domain.timing import iso
from delivery_service.live.bus import Bus
from delivery_service.live.keys import attempt_channel, proctor_channel
from delivery_service.services.access import attempts_managed_by, check_attempt, session_for
from delivery_service.services.after_commit import AfterCommit, run_safely
from delivery_service.services.attempts import AttemptService, locked_attempt
from delivery_service.services.security import Principal
from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import (
    Entry,
    Ledger,
    attempt_chain,
    participant_chain,
    user_chain,
)
from delivery_service.storage.models import (
    Attempt,
    GroupSession,
    LedgerEvent,
    Participant,
    Test,
    User,
)
from integrity import events as ev
from integrity import rules, seb
from integrity.chain import Verification
from integrity.events import Source
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
class _Context:
    s: AsyncSession
    principal: Principal
    now: datetime
    chain: str
    attempt: Attempt | None
    session_id: uuid.UUID | None
    policy: LockdownPolicy
    after: list[AfterCommit] = field(default_factory=list)
    enforce: list[tuple[uuid.UUID, str, str]] = field(default_factory=list)


class IntegrityService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        bus: Bus,
        attempts: AttemptService,
    ) -> None:
        self._sessions = sessions
        self._ledger = ledger
        self._bus = bus
        self._attempts = attempts

    # ---- candidate events ---------------------------------------------------------------------

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
        async with self._sessions() as s:
            async with s.begin():
                x = await self._context(s, principal, attempt_id, session_id)
                # Two queries per batch, not two per event: what was stored before under these
                # ids (a resend), and how many events of each type the candidate has so far.
                known = await self._prior(s, principal.user_id, events)
                counts = await self._counts(x)
                acks: list[Recorded] = []
                fresh: list[LedgerEvent] = []
                for event in events:
                    prior = known.get(event.client_event_id or "")
                    row = prior or await self._ledger.append(s, self._entry(x, event), x.now)
                    if prior is None:
                        fresh.append(row)
                        counts[row.type] = counts.get(row.type, 0) + 1
                        if event.client_event_id:
                            known[event.client_event_id] = row
                    acks.append(self._ack(x, row, event, counts, duplicate=prior is not None))
                if fresh and x.attempt is not None:
                    await self._apply_rules(x, fresh)
            for ack in acks:
                if not ack.duplicate and x.session_id is not None:
                    channel = proctor_channel(str(x.session_id))
                    await run_safely(self._bus.publish(channel, ack.wire_type, ack.feed))
            for step in x.after:
                await run_safely(step())
            for ident, action, reason in x.enforce:
                try:
                    await self._attempts.lifecycle.enforce(ident, action, reason=reason)  # type: ignore[arg-type]
                except Exception:  # the evidence is stored; a sweep or a proctor can act
                    log.exception("could not %s attempt %s for a violation", action, ident)
            return acks

    async def _context(
        self,
        s: AsyncSession,
        principal: Principal,
        attempt_id: uuid.UUID | None,
        session_id: uuid.UUID | None,
    ) -> _Context:
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
            return _Context(
                s, principal, now, attempt_chain(attempt.id), attempt, session_id, policy
            )
        if session_id is None:
            raise NotFound("attempt", attempt_id)
        chain = participant_chain(session_id, principal.user_id)
        return _Context(s, principal, now, chain, None, session_id, LockdownPolicy())

    @staticmethod
    def _entry(x: _Context, event: Reported) -> Entry:
        return Entry(
            chain=x.chain,
            type=event.kind,
            source="candidate",
            actor_id=x.principal.user_id,
            candidate_id=x.principal.user_id,
            attempt_id=x.attempt.id if x.attempt else None,
            session_id=x.session_id,
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
    async def _counts(x: _Context) -> dict[str, int]:
        """The candidate's events so far by type, in the session (or the attempt's chain)."""
        scope = (
            LedgerEvent.session_id == x.session_id
            if x.session_id is not None
            else LedgerEvent.chain == x.chain
        )
        rows = await x.s.execute(
            select(LedgerEvent.type, func.count())
            .where(
                scope,
                LedgerEvent.candidate_id == x.principal.user_id,
                LedgerEvent.source == "candidate",
                LedgerEvent.type.in_(ev.CANDIDATE_KINDS),
            )
            .group_by(LedgerEvent.type)
        )
        return {type_: int(n) for type_, n in rows}

    @staticmethod
    def _ack(
        x: _Context,
        row: LedgerEvent,
        event: Reported,
        counts: dict[str, int],
        *,
        duplicate: bool,
    ) -> Recorded:
        # Counted by the message type the client used, as the acknowledgement documents it:
        # `integrity_event` covers every kind but the two with messages of their own.
        if event.wire_type == "integrity_event":
            own = (ev.TAB_VIOLATION, ev.TEXT_HIGHLIGHTED)
            count = sum(n for type_, n in counts.items() if type_ not in own)
        else:
            count = counts.get(event.wire_type, 0)
        feed = dict(row.payload)
        if event.wire_type == "integrity_event":
            feed["kind"] = row.type
        feed |= {
            "event_id": row.id,
            "student_id": str(x.principal.user_id),
            "username": x.principal.username,
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

    # ---- rules ----------------------------------------------------------------------------------

    async def _apply_rules(self, x: _Context, fresh: list[LedgerEvent]) -> None:
        attempt = x.attempt
        if attempt is None:
            return
        history = await _observed(x.s, x.chain)
        new_ids = {row.id for row in fresh}
        before = rules.assess(x.policy, [o for o in history if o.event_id not in new_ids])
        after = rules.assess(x.policy, history)
        violations = rules.new_violations(before, after)
        touched = {inc.id for row in fresh if (inc := after.incident_of(row.id)) is not None}
        review = list(attempt.review or [])
        for v in violations:
            await self._ledger.append(
                x.s,
                Entry(
                    chain=x.chain,
                    type=ev.VIOLATION,
                    source="server",
                    candidate_id=attempt.user_id,
                    attempt_id=attempt.id,
                    session_id=attempt.session_id,
                    payload={"rule": v.rule, "action": v.action, "incident_id": v.incident_id,
                             "event_ids": list(v.event_ids)},
                    reason=v.reason,
                ),
                x.now,
            )  # fmt: skip
            if v.action != "warn":
                review.append(
                    {"rule": v.rule, "action": v.action, "reason": v.reason,
                     "incident_id": v.incident_id, "event_ids": list(v.event_ids),
                     "at": iso(x.now)}
                )  # fmt: skip
            if v.action in ("pause", "terminate") and attempt.state == "in_progress":
                x.enforce.append((attempt.id, v.action, f"{v.rule}: {v.reason}"))
            warning = {"rule": v.rule, "action": v.action, "reason": v.reason,
                       "tab_switches": after.tab_switches,
                       "allowed_tab_switches": x.policy.allowed_tab_switches,
                       "at": iso(x.now)}  # fmt: skip
            # Session students follow their attempt's channel too: one publish reaches both.
            self._publish_later(x, attempt_channel(str(attempt.id)), "integrity_warning", warning)
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
                "username": x.principal.username,
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
            self._publish_later(x, channel, "integrity_alert", alert)

    def _publish_later(self, x: _Context, channel: str, type_: str, data: dict[str, Any]) -> None:
        x.after.append(lambda: self._bus.publish(channel, type_, data))

    # ---- Safe Exam Browser --------------------------------------------------------------------

    async def require_seb(
        self,
        principal: Principal,
        *,
        url: str,
        headers: Mapping[str, str],
        test_id: uuid.UUID | None = None,
        attempt_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
    ) -> bool:
        """Refuse a candidate's request when the test requires Safe Exam Browser and the request
        does not prove it (integrity.seb). True when SEB was required and verified. Staff are
        not candidates: they never sit the test, so they are not held to it."""
        if principal.is_staff:
            return False
        async with self._sessions() as s:
            if attempt_id is not None:
                row = await s.execute(
                    select(Attempt.test_id, Attempt.session_id).where(Attempt.id == attempt_id)
                )
                found = row.first()
                if found is None:
                    return False  # the route answers the 404
                test_id, session_id = found
            elif session_id is not None:
                test_id = await s.scalar(
                    select(GroupSession.test_id).where(GroupSession.id == session_id)
                )
            if test_id is None:
                return False
            lockdown = await s.scalar(select(Test.lockdown).where(Test.id == test_id))
        policy = policy_of(lockdown)
        result = seb.check(policy, url, headers)
        if result.ok:
            return policy.require_seb
        await self.observed(
            type_=ev.SEB_CHECK_FAILED,
            candidate_id=principal.user_id,
            attempt_id=attempt_id,
            session_id=session_id,
            actor_id=principal.user_id,
            payload=seb_failure(result, url, test_id),
        )
        raise SebRequired(result.code, result.message)

    # ---- server-observed events ----------------------------------------------------------------

    async def observed(
        self,
        *,
        type_: str,
        candidate_id: uuid.UUID,
        attempt_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        actor_id: uuid.UUID | None = None,
        payload: dict[str, Any] | None = None,
        source: Source = "server",
    ) -> None:
        """Something the server saw happen to a candidate (a connection opened, superseded, a
        login, a ticket): its own transaction, never in the way of the caller."""
        try:
            async with self._sessions() as s, s.begin():
                # Only ever on the candidate's own attempt, or a session that exists: a request
                # naming someone else's attempt must not write into their chain.
                if attempt_id is not None:
                    found = (
                        await s.execute(
                            select(Attempt.user_id, Attempt.session_id).where(
                                Attempt.id == attempt_id
                            )
                        )
                    ).first()
                    if found is None or found[0] != candidate_id:
                        return
                    chain, session_id = attempt_chain(attempt_id), found[1]
                elif session_id is not None:
                    if await s.get(GroupSession, session_id) is None:
                        return
                    chain = participant_chain(session_id, candidate_id)
                else:
                    chain = user_chain(candidate_id)
                entry = Entry(
                    chain=chain,
                    type=type_,
                    source=source,
                    actor_id=actor_id,
                    candidate_id=candidate_id,
                    attempt_id=attempt_id,
                    session_id=session_id,
                    payload=payload or {},
                )
                await self._ledger.append(s, entry, await db_now(s))
        except Exception:
            log.exception("could not record %s for %s", type_, candidate_id)

    # ---- staff views ----------------------------------------------------------------------------

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
        async with self._sessions() as s:
            attempt = await self._staff_attempt(s, principal, attempt_id)
            return [
                _event_out(row) for row in await self._ledger.events(s, attempt_chain(attempt.id))
            ]

    async def verify(self, principal: Principal, attempt_id: uuid.UUID) -> Verification:
        async with self._sessions() as s:
            attempt = await self._staff_attempt(s, principal, attempt_id)
            return await self._ledger.verify(s, attempt_chain(attempt.id))

    async def report(self, principal: Principal, attempt_id: uuid.UUID) -> dict[str, Any]:
        """Everything an appeal needs about one attempt, from the ledger."""
        async with self._sessions() as s:
            attempt = await self._staff_attempt(s, principal, attempt_id)
            test = await s.get(Test, attempt.test_id)
            candidate = await s.get(User, attempt.user_id)
            policy = policy_of(test.lockdown if test else None)
            rows = await self._ledger.events(s, attempt_chain(attempt.id))
            verification = await self._ledger.verify(s, attempt_chain(attempt.id))
            assessment = rules.assess(policy, _observed_of(rows))
            actors = await _names(s, {r.actor_id for r in rows if r.actor_id})
        connections = [
            _event_out(r, actors)
            for r in rows
            if r.type in (ev.CONNECTION_OPENED, ev.RECONNECTED, ev.SUPERSEDED, "connection_closed")
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
            "timeline": [_event_out(r, actors) for r in rows],
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
        async with self._sessions() as s:
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
        async with self._sessions() as s:
            rows = list(await s.scalars(stmt.order_by(LedgerEvent.id.desc()).limit(limit)))
            actors = await _names(s, {r.actor_id for r in rows if r.actor_id})
            actors |= await _names(s, {r.candidate_id for r in rows if r.candidate_id})
        return [_event_out(r, actors) for r in rows]


async def _observed(s: AsyncSession, chain: str) -> list[rules.Observed]:
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


def _observed_of(rows: Sequence[LedgerEvent]) -> list[rules.Observed]:
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
) -> rules.Observed:
    """Incidents are grouped on the client's clock when it sent one: a batch arrives at one
    server moment, but its events happened seconds or minutes apart. (The sensors are the
    client's testimony either way; the ledger keeps both times.)"""
    duration = payload.get("duration_ms")
    return rules.Observed(
        event_id=ident,
        kind=type_,
        at=client_time or server_time,
        duration_ms=duration if isinstance(duration, int) else None,
    )


async def _names(s: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await s.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {ident: name for ident, name in rows}


def seb_failure(result: seb.SebCheck, url: str, test_id: uuid.UUID) -> dict[str, Any]:
    """The ledger payload of a refused Safe Exam Browser check: which check, on which page
    (without its query, which may carry a ticket), for which test."""
    return {
        "code": result.code,
        "url": seb.strip_fragment(url).split("?", 1)[0],
        "test_id": str(test_id),
    }


def _event_out(row: LedgerEvent, names: dict[uuid.UUID, str] | None = None) -> dict[str, Any]:
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
