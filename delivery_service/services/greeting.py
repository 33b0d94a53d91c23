"""Greeting a socket: what its first messages need, in two short transactions.

A reconnect storm is this work times the number of candidates, so it reads and writes in as few
statements as the rules allow. For an attempt socket (self-paced), `admit_attempt` is the whole
admission: the attempt's owner, the Safe Exam Browser check and the connection's ledger entry,
in one transaction; its state is `AttemptService.get`, read after subscribing. For a session
socket: `admit` decides whether it may stay, in one transaction:
who may see the session (one statement reads the session, its test, the student's place in it,
whether they teach or are enrolled, and the database clock), the Safe Exam Browser check, the
join, and the connection's entry in the integrity ledger. `state` reads what the client is sent
after its missed events (the session, and the student's attempt or the proctor's grid), in
another; the socket calls it only once it has subscribed and read its channels' positions, so no
event can fall between that state and the events that follow it (api/ws/subscriptions.py).

Before this module a greeting took eleven transactions (admission, SEB, join, ledger, state
sync, each with its own connection check-out); docs/performance.md has the figures.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import Select

from delivery_service.domain import availability
from delivery_service.domain.errors import Conflict, Forbidden, NotFound, SebRequired
from delivery_service.domain.principal import Principal
from delivery_service.read_models.attempts import AttemptView
from delivery_service.read_models.sessions import ParticipantView, SessionOut
from delivery_service.services.access import (
    manages,
    membership,
    require_visible,
    sees,
)
from delivery_service.services.attempts import AttemptService
from delivery_service.services.availability import network_refusal
from delivery_service.services.evidence import seb_failure
from delivery_service.services.sessions import GroupSessions, Joining, Work
from delivery_service.storage.database import clock_column, clock_value
from delivery_service.storage.ledger import Ledger, attempt_chain, participant_chain
from delivery_service.storage.models import (
    Attempt,
    Class,
    GroupSession,
    Participant,
    Test,
)
from integrity import events as ev
from integrity import seb
from integrity.policy import policy_of


@dataclass(frozen=True)
class Arrival:
    """What the server saw of a connecting student: for the ledger, and for the SEB check
    (skipped when the ticket was issued to a request that passed it)."""

    resumed: bool
    payload: Mapping[str, Any]
    url: str
    headers: Mapping[str, str] = field(repr=False)
    seb_verified: bool = False
    #: the client's address, as the trusted-proxy setting resolved it (the networks check)
    client: str | None = None


@dataclass(frozen=True)
class Admission:
    proctor: bool
    attempt_id: uuid.UUID | None = None
    problem: Conflict | None = None  # admitted, but told why there is no attempt (yet)


@dataclass(frozen=True)
class SessionState:
    session: SessionOut
    attempt: AttemptView | None = None
    participants: list[ParticipantView] | None = None


class Greeter:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        group_sessions: GroupSessions,
        attempts: AttemptService,
        ledger: Ledger,
    ) -> None:
        self._db = db
        self._group = group_sessions
        self._attempts = attempts
        self._ledger = ledger

    async def admit(
        self, principal: Principal, session_id: uuid.UUID, arrival: Arrival
    ) -> Admission:
        """Proctors (the class's teachers, admins) are admitted as such; enrolled students join
        (from the paper's allowed networks), with their connection recorded on their attempt's
        chain (or their place's, before they have one). Anyone else: NotFound (students) or
        Forbidden (staff), as for REST."""
        work = Work()
        refused: seb.SebCheck | None = None
        refused_network = False
        joining: Joining | None = None
        async with self._db() as s:
            async with s.begin():
                row, now, manager = await self._read(s, principal, session_id)
                if manager:
                    return Admission(proctor=True)
                if not availability.network_allowed(row.allowed_networks, arrival.client):
                    refused_network = True
                    await self._append(
                        s, principal, session_id, row.attempt_id, ev.NETWORK_REFUSED,
                        network_refusal(arrival.client), now,
                    )  # fmt: skip
                elif not arrival.seb_verified:
                    check = seb.check(policy_of(row.lockdown), arrival.url, arrival.headers)
                    if not check.ok:
                        refused = check
                        await self._append(
                            s, principal, session_id, None, ev.SEB_CHECK_FAILED,
                            seb_failure(check, arrival.url, row.test_id), now,
                        )  # fmt: skip
                if refused is None and not refused_network:
                    joining = await self._group.attendance.join_in(
                        s, principal, session_id, now, work,
                        state=row.state, attempt_id=row.attempt_id,
                    )  # fmt: skip
                    kind = ev.RECONNECTED if arrival.resumed else ev.CONNECTION_OPENED
                    await self._append(
                        s, principal, session_id, joining.attempt_id, kind, arrival.payload, now
                    )
        if refused_network:  # the refusal is on the ledger: committed, then refused
            availability.require_network(row.allowed_networks, arrival.client)
        if refused is not None:  # likewise
            raise SebRequired(refused.code, refused.message)
        if joining is None:  # pragma: no cover - a student not refused has joined
            raise RuntimeError("a student was admitted without joining")
        await self._group.run_after(work)
        await self._group.attendance.announce_join(principal, session_id, joining, now)
        return Admission(proctor=False, attempt_id=joining.attempt_id, problem=joining.problem)

    async def admit_attempt(
        self, principal: Principal, attempt_id: uuid.UUID, arrival: Arrival
    ) -> None:
        """Only the attempt's candidate opens its socket (staff: Forbidden; anyone else is not
        told it exists); the test's allowed networks; the SEB check; the connection (or its
        refusal) on the attempt's ledger chain."""
        refused: seb.SebCheck | None = None
        async with self._db() as s, s.begin():
            dialect = s.get_bind().dialect.name
            found = (
                await s.execute(_attempt_statement(dialect), {"attempt_id": attempt_id})
            ).one_or_none()
            if found is None or found.user_id != principal.user_id:
                if found is not None and principal.is_staff:
                    raise Forbidden("only the candidate may open this socket")
                raise NotFound("attempt", attempt_id)
            now = clock_value(dialect, found.now)
            kind = ev.RECONNECTED if arrival.resumed else ev.CONNECTION_OPENED
            payload: Mapping[str, Any] = arrival.payload
            networks = found.allowed_networks if not principal.is_staff else []
            if not availability.network_allowed(networks, arrival.client):
                kind, payload = ev.NETWORK_REFUSED, network_refusal(arrival.client)
            elif not arrival.seb_verified:
                check = seb.check(policy_of(found.lockdown), arrival.url, arrival.headers)
                if not check.ok:
                    refused = check
                    kind = ev.SEB_CHECK_FAILED  # instead of the connection, which is refused
                    payload = seb_failure(check, arrival.url, found.test_id)
            await self._append(s, principal, found.session_id, attempt_id, kind, payload, now)
        if kind == ev.NETWORK_REFUSED:  # the refusal is on the ledger: committed, then refused
            availability.require_network(networks, arrival.client)
        if refused is not None:  # likewise
            raise SebRequired(refused.code, refused.message)

    async def state(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        *,
        proctor: bool,
        attempt_id: uuid.UUID | None,
    ) -> SessionState:
        """The session, and the student's attempt (one transaction) or the proctor's grid."""
        if proctor:
            summary = await self._group.lifecycle.get(principal, session_id)
            grid = await self._group.monitoring.participants(principal, session_id)
            return SessionState(summary, participants=grid)
        async with self._db() as s, s.begin():
            row, *_ = await self._read(s, principal, session_id)
            attempt = (
                await self._attempts.reads.view_in(s, principal, attempt_id) if attempt_id else None
            )
        # The row's columns are named as SessionOut's fields (see _statement).
        return SessionState(SessionOut.model_validate(row._mapping), attempt)

    async def _read(
        self, s: AsyncSession, principal: Principal, session_id: uuid.UUID
    ) -> tuple[Row[Any], datetime, bool]:
        """The session's row (with its class's name, its test's settings, the student's
        attempt id, whether the principal teaches or is enrolled, and the clock), refused as
        REST refuses; the clock; and whether the principal manages the session."""
        dialect = s.get_bind().dialect.name
        found = (
            await s.execute(
                _statement(dialect), {"session_id": session_id, "user_id": principal.user_id}
            )
        ).one_or_none()
        if found is None:
            raise NotFound("session", session_id)
        visible = sees(principal, teaches_class=found.teaches, enrolled_in_class=found.enrolled)
        require_visible(visible, principal, "session", session_id)
        manager = manages(principal, teaches_class=found.teaches)
        return found, clock_value(dialect, found.now), manager

    async def _append(
        self,
        s: AsyncSession,
        principal: Principal,
        session_id: uuid.UUID | None,
        attempt_id: uuid.UUID | None,
        type_: str,
        payload: Mapping[str, Any],
        now: datetime,
    ) -> None:
        """What the server saw, on the attempt's chain, or the student's place's before they
        have an attempt (as Observations.record chooses)."""
        if attempt_id is not None:
            chain = attempt_chain(attempt_id)
        elif session_id is not None:
            chain = participant_chain(session_id, principal.user_id)
        else:  # pragma: no cover - every caller names an attempt or a session
            raise ValueError("an observation needs an attempt or a session")
        await self._ledger.record(
            s,
            now,
            chain=chain,
            type=type_,
            source="server",
            actor_id=principal.user_id,
            candidate_id=principal.user_id,
            attempt_id=attempt_id,
            session_id=session_id,
            payload=payload,
        )


def _statement(dialect: str) -> Select[Any]:
    """Core, not ORM entities: a greeting reads this twice, and loading four entities into the
    session cost more than the statement (bench.greeting). The first fourteen columns are
    named as SessionOut's fields."""
    cached = _STATEMENTS.get(dialect)
    if cached is not None:
        return cached
    sessions, classes, tests = GroupSession.__table__, Class.__table__, Test.__table__
    places = Participant.__table__
    teaches, enrolled = membership(sessions.c.class_id)
    place = and_(places.c.session_id == sessions.c.id, places.c.user_id == bindparam("user_id"))
    statement: Select[Any] = (
        select(
            sessions.c.id,
            sessions.c.class_id,
            classes.c.name.label("class_name"),
            sessions.c.test_id,
            tests.c.title.label("test_title"),
            tests.c.time_limit_seconds,
            sessions.c.title,
            sessions.c.state,
            sessions.c.scheduled_at,
            sessions.c.started_at,
            sessions.c.ends_at,
            sessions.c.completed_at,
            sessions.c.created_by,
            sessions.c.created_at,
            tests.c.lockdown,
            tests.c.allowed_networks,
            places.c.attempt_id,
            teaches,
            enrolled,
            clock_column(dialect),
        )
        .join(classes, classes.c.id == sessions.c.class_id)
        .join(tests, tests.c.id == sessions.c.test_id)
        .outerjoin(places, place)
        .where(sessions.c.id == bindparam("session_id"))
    )
    _STATEMENTS[dialect] = statement
    return statement


def _attempt_statement(dialect: str) -> Select[Any]:
    cached = _ATTEMPT_STATEMENTS.get(dialect)
    if cached is not None:
        return cached
    attempts, tests = Attempt.__table__, Test.__table__
    statement: Select[Any] = (
        select(
            attempts.c.user_id,
            attempts.c.session_id,
            attempts.c.test_id,
            tests.c.lockdown,
            tests.c.allowed_networks,
            clock_column(dialect),
        )
        .join(tests, tests.c.id == attempts.c.test_id)
        .where(attempts.c.id == bindparam("attempt_id"))
    )
    _ATTEMPT_STATEMENTS[dialect] = statement
    return statement


# Built once per dialect (the clock column differs): every greeting runs it, twice.
_STATEMENTS: dict[str, Select[Any]] = {}
_ATTEMPT_STATEMENTS: dict[str, Select[Any]] = {}
