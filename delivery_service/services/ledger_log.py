"""Appending one event to the integrity ledger from a use case.

Every service that records evidence builds an `Entry` and appends it in its own transaction, at
the database's `now`. This is that step once, with the entry's fields as keywords, so a use
case writes one call instead of building the entry and appending it apart. It lives beside the
services rather than in the attempts package because items, tests, greetings, sessions and the
integrity service append too, and none of them should import the attempt use cases to do it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.storage.ledger import Entry, Ledger
from delivery_service.storage.models import LedgerEvent
from integrity.events import Source


async def log_event(
    ledger: Ledger,
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
    """Seal and store one event on `chain` in the caller's transaction (the ledger's lock
    order applies: lock the attempt row, if any, before calling)."""
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
    return await ledger.append(s, entry, now)
