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

from sqlalchemy import Select, select
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

    async def append(self, s: AsyncSession, entry: Entry, now: datetime) -> LedgerEvent:
        head = await self._lock_head(s, entry.chain)
        row = LedgerEvent(
            chain=entry.chain,
            seq=head.seq + 1,
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
            prev_hash=head.hash,
        )
        row.hash = sealing.seal(self._key, row.prev_hash, body_of(row))
        s.add(row)
        head.seq, head.hash = row.seq, row.hash
        await s.flush()
        return row

    @staticmethod
    async def _lock_head(s: AsyncSession, chain: str) -> LedgerHead:
        """The chain's head under a row lock; created first when the chain is new. Most
        appends extend a chain that exists, so the lock comes first and the insert only when
        it found nothing (one statement per append saved on the answer path)."""
        head = await s.scalar(_locked_head(chain))
        if head is not None:
            return head
        dialect = s.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await s.execute(
            insert(LedgerHead)
            .values(chain=chain, seq=0, hash=sealing.GENESIS)
            .on_conflict_do_nothing(index_elements=["chain"])
        )
        head = await s.scalar(_locked_head(chain))
        if head is None:  # pragma: no cover - inserted just above, in this transaction
            raise RuntimeError(f"ledger head {chain!r} vanished")
        return head

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


def _locked_head(chain: str) -> Select[LedgerHead]:
    return (
        select(LedgerHead)
        .where(LedgerHead.chain == chain)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _link(row: LedgerEvent) -> sealing.Link:
    return sealing.Link(
        event_id=row.id, seq=row.seq, body=body_of(row), prev_hash=row.prev_hash, hash=row.hash
    )
