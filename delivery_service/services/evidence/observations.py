"""Server-observed events: what the server saw happen to a candidate (a connection opened or
superseded, a login, a ticket, a refused Safe Exam Browser check), on the ledger beside what the
candidate's app reported."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import (
    Ledger,
    attempt_chain,
    participant_chain,
    user_chain,
)
from delivery_service.storage.models import Attempt, GroupSession
from integrity.events import Source

log = logging.getLogger(__name__)


class Observations:
    def __init__(self, *, db: async_sessionmaker[AsyncSession], ledger: Ledger) -> None:
        self._db = db
        self._ledger = ledger

    async def record(
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
        """Something the server saw happen to a candidate: its own transaction, never in the way
        of the caller (a failure is logged, not raised)."""
        try:
            async with self._db() as s, s.begin():
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
                await self._ledger.record(
                    s,
                    await db_now(s),
                    chain=chain,
                    type=type_,
                    source=source,
                    actor_id=actor_id,
                    candidate_id=candidate_id,
                    attempt_id=attempt_id,
                    session_id=session_id,
                    payload=payload or {},
                )
        except Exception:
            log.exception("could not record %s for %s", type_, candidate_id)
