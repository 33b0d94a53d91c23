"""The integrity ledger's adapter: append a sealed event inside the caller's transaction, read
chains back, verify them.

Appends to one chain are serialized by a row lock on its head (`ledger_heads`), so two workers
writing to the same attempt at once still produce one chain with no fork. Lock order, everywhere:
the attempt row first, then the chain head; never the other way round.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.storage.models import LedgerEvent, LedgerHead
from integrity import chain as sealing
from integrity.events import Source


def attempt_chain(attempt_id: uuid.UUID | str) -> str:
    return f"attempt:{attempt_id}"


def participant_chain(session_id: uuid.UUID, user_id: uuid.UUID) -> str:
    """A student's events in a session before they have an attempt (the waiting room)."""
    return f"participant:{session_id}:{user_id}"


def session_chain(session_id: uuid.UUID) -> str:
    return f"session:{session_id}"


def user_chain(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


@dataclass(frozen=True)
class Entry:
    """An event to append. `chain` says which history it extends."""

    chain: str
    type: str
    source: Source
    actor_id: uuid.UUID | None = None
    candidate_id: uuid.UUID | None = None
    attempt_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    client_event_id: str | None = None
    client_time: datetime | None = None


def body_of(row: LedgerEvent) -> dict[str, Any]:
    """Everything a seal covers, in the form it is sealed in."""

    def ident(value: uuid.UUID | None) -> str | None:
        return str(value) if value is not None else None

    return {
        "chain": row.chain,
        "seq": row.seq,
        "type": row.type,
        "source": row.source,
        "actor_id": ident(row.actor_id),
        "candidate_id": ident(row.candidate_id),
        "attempt_id": ident(row.attempt_id),
        "session_id": ident(row.session_id),
        "payload": row.payload,
        "reason": row.reason,
        "client_event_id": row.client_event_id,
        "client_time": sealing.moment(row.client_time),
        "server_time": sealing.moment(row.server_time),
    }


class Ledger:
    def __init__(self, key: bytes) -> None:
        self._key = key

    async def record(
        self,
        s: AsyncSession,
        now: datetime,
        *,
        chain: str,
        type: str,
        source: Source,
        actor_id: uuid.UUID | None = None,
        candidate_id: uuid.UUID | None = None,
        attempt_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        payload: Mapping[str, Any] | None = None,
        reason: str | None = None,
        client_event_id: str | None = None,
        client_time: datetime | None = None,
    ) -> LedgerEvent:
        """How a use case appends: the entry's fields as keywords, in the caller's transaction
        at the database's `now` (lock the attempt row, if any, first: the ledger's lock order)."""
        entry = Entry(
            chain=chain,
            type=type,
            source=source,
            actor_id=actor_id,
            candidate_id=candidate_id,
            attempt_id=attempt_id,
            session_id=session_id,
            payload=payload or {},
            reason=reason,
            client_event_id=client_event_id,
            client_time=client_time,
        )
        return await self.append(s, entry, now)

    async def append(self, s: AsyncSession, entry: Entry, now: datetime) -> LedgerEvent:
        """Seal and store the entry. The row is written with Core statements built once, not
        through the session's unit of work (the answer path appends on every answer, and the
        ORM's bookkeeping cost more than the statements); the returned row is what was stored,
        with its id, but not in the session: later reads in the transaction query for it."""
        seq, prev_hash = await self._lock_head(s, entry.chain)
        row = LedgerEvent(
            chain=entry.chain,
            seq=seq + 1,
            type=entry.type,
            source=entry.source,
            actor_id=entry.actor_id,
            candidate_id=entry.candidate_id,
            attempt_id=entry.attempt_id,
            session_id=entry.session_id,
            payload=dict(entry.payload),
            reason=entry.reason,
            client_event_id=entry.client_event_id,
            client_time=entry.client_time,
            server_time=now,
            prev_hash=prev_hash,
        )
        row.hash = sealing.seal(self._key, row.prev_hash, body_of(row))
        values = {f"event_{column}": getattr(row, column) for column in _EVENT_COLUMNS}
        head = {"head_chain": row.chain, "head_seq": row.seq, "head_hash": row.hash}
        if s.get_bind().dialect.name == "postgresql":
            # One round trip: the head moves in a data-modifying CTE of the insert.
            row.id = (await s.execute(_APPEND_AND_MOVE_HEAD, values | head)).scalar_one()
        else:
            row.id = (await s.execute(_APPEND, values)).scalar_one()
            await s.execute(_MOVE_HEAD, head)
        return row

    @staticmethod
    async def _lock_head(s: AsyncSession, chain: str) -> tuple[int, str]:
        """The chain's head (seq, hash) under a row lock; created first when the chain is
        new. Most appends extend a chain that exists, so the lock comes first and the insert
        only when it found nothing (one statement per append saved on the answer path)."""
        found = (await s.execute(_LOCKED_HEAD, {"chain": chain})).one_or_none()
        if found is not None:
            return found.seq, found.hash
        dialect = s.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await s.execute(
            insert(LedgerHead)
            .values(chain=chain, seq=0, hash=sealing.GENESIS)
            .on_conflict_do_nothing(index_elements=["chain"])
        )
        found = (await s.execute(_LOCKED_HEAD, {"chain": chain})).one_or_none()
        if found is None:  # pragma: no cover - inserted just above, in this transaction
            raise RuntimeError(f"ledger head {chain!r} vanished")
        return found.seq, found.hash

    @staticmethod
    async def events(s: AsyncSession, chain: str) -> list[LedgerEvent]:
        return list(
            await s.scalars(
                select(LedgerEvent).where(LedgerEvent.chain == chain).order_by(LedgerEvent.seq)
            )
        )

    async def verify(self, s: AsyncSession, chain: str) -> sealing.Verification:
        head = await s.get(LedgerHead, chain)
        rows = await s.stream_scalars(
            select(LedgerEvent).where(LedgerEvent.chain == chain).order_by(LedgerEvent.seq)
        )
        links = [_link(row) async for row in rows]
        # A chain with rows but no head lost its head: verify against an empty one, which fails.
        tip = (head.seq, head.hash) if head else (0, sealing.GENESIS)
        return sealing.verify(self._key, chain, links, tip)

    async def chains(self, s: AsyncSession) -> AsyncIterator[str]:
        """Every chain the heads know, plus any whose head was deleted (found from the rows)."""
        known = set(await s.scalars(select(LedgerHead.chain)))
        known |= set(await s.scalars(select(LedgerEvent.chain).distinct()))
        for name in sorted(known):
            yield name


# Built once: every append runs these, and building a statement cost more CPU than running it.
# Core statements on the tables, not ORM entities: no identity map, no unit of work. Every
# parameter is named apart from the columns: a parameter named like a column of the head table
# would be taken as a value to SET in the CTE's update.
_EVENTS = LedgerEvent.metadata.tables[LedgerEvent.__tablename__]
_HEADS = LedgerHead.metadata.tables[LedgerHead.__tablename__]
_EVENT_COLUMNS = tuple(c.name for c in _EVENTS.columns if c.name != "id")
_LOCKED_HEAD = (
    select(_HEADS.c.seq, _HEADS.c.hash)
    .where(_HEADS.c.chain == bindparam("chain"))
    .with_for_update()
)
_MOVE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.chain == bindparam("head_chain"))
    .values(seq=bindparam("head_seq"), hash=bindparam("head_hash"))
)
_APPEND = (
    insert(_EVENTS)
    .values({name: bindparam(f"event_{name}") for name in _EVENT_COLUMNS})
    .returning(_EVENTS.c.id)
)
_APPEND_AND_MOVE_HEAD = _APPEND.add_cte(_MOVE_HEAD.cte("moved_head"))


def _link(row: LedgerEvent) -> sealing.Link:
    return sealing.Link(
        event_id=row.id, seq=row.seq, body=body_of(row), prev_hash=row.prev_hash, hash=row.hash
    )
