"""The answer path's read and writes in Core statements built once: what an answer is decided
on, then the item's state and the history row.

Every answer runs these, so they skip the ORM: loading every item state of an attempt to count
the answered ones grew with the test's length, and the unit of work's bookkeeping cost more CPU
than PostgreSQL took to run the statements. The caller holds the attempt's row lock, so the
state read here cannot change before the write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Insert, Select, and_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from delivery_service.storage.database import clock_column, clock_value
from delivery_service.storage.models import ItemState, ResponseEvent


@dataclass(frozen=True)
class AnswerState:
    """What deciding an answer needs of the attempt's item states, in one row."""

    answered: int  # items of the attempt with a response
    locked: bool  # this item's answer is final
    client_seq: int | None  # this item's latest applied client_seq
    has_response: bool  # this item has a response now


@dataclass(frozen=True)
class Prior:
    """The answer stored before under the same client_seq: a resend whose ack was lost."""

    item_id: uuid.UUID
    response: Any
    applied: bool
    received_at: datetime


@dataclass(frozen=True)
class Lookup:
    now: datetime  # the database clock, read after the attempt's row lock was granted
    state: AnswerState
    prior: Prior | None


async def lookup(
    s: AsyncSession, attempt_id: uuid.UUID, item_id: uuid.UUID, client_seq: int
) -> Lookup:
    """Everything an answer is decided on, in one round trip: the clock, the item's state and
    the attempt's answered count, and a prior answer with this client_seq. The caller holds the
    attempt's row lock, so none of it can change before the write."""
    dialect = s.get_bind().dialect.name
    params = {"attempt_id": attempt_id, "item_id": item_id, "client_seq": client_seq}
    row = (await s.execute(_LOOKUPS[dialect], params)).one()
    prior = None
    if row.prior_item_id is not None:
        prior = Prior(row.prior_item_id, row.prior_response, row.prior_applied, row.received_at)
    return Lookup(
        now=clock_value(dialect, row.now),
        state=AnswerState(
            answered=int(row.answered),
            locked=bool(row.locked),
            client_seq=row.client_seq,
            has_response=bool(row.has_response),
        ),
        prior=prior,
    )


async def record(
    s: AsyncSession,
    *,
    attempt_id: uuid.UUID,
    item_id: uuid.UUID,
    client_seq: int,
    response: Any,
    applied: bool,
    locked: bool,
    actor_id: uuid.UUID,
    connection_id: str | None,
    at: datetime,
) -> None:
    """Store the answer in the history and, when it is the latest, as the item's state. On
    PostgreSQL both go in one round trip (the state upsert is a CTE of the history insert)."""
    history = {
        "answer_attempt_id": attempt_id,
        "answer_item_id": item_id,
        "answer_client_seq": client_seq,
        "answer_response": response,
        "answer_applied": applied,
        "answer_actor_id": actor_id,
        "answer_connection_id": connection_id,
        "answer_received_at": at,
    }
    if not applied:
        await s.execute(_HISTORY, history)
        return
    state = {
        "state_attempt_id": attempt_id,
        "state_item_id": item_id,
        "state_response": response,
        "state_client_seq": client_seq,
        "state_answered_at": at,
        "state_locked": locked,
    }
    if s.get_bind().dialect.name == "postgresql":
        await s.execute(_HISTORY_AND_STATE, history | state)
    else:
        await s.execute(_SQLITE_STATE, state)
        await s.execute(_HISTORY, history)


# The writes' parameters are named apart from the columns (`answer_…`, `state_…`): a parameter
# named like a column of an INSERT or UPDATE is taken as one more value to write.
_STATES = ItemState.metadata.tables[ItemState.__tablename__]
_HISTORY_TABLE = ResponseEvent.metadata.tables[ResponseEvent.__tablename__]

_attempt: BindParameter[uuid.UUID] = bindparam("attempt_id")
_item: BindParameter[uuid.UUID] = bindparam("item_id")
_STATE = (
    select(
        func.count().filter(_STATES.c.response.is_not(None)).label("answered"),
        func.count().filter(_STATES.c.item_id == _item, _STATES.c.locked.is_(True)).label("locked"),
        func.max(_STATES.c.client_seq).filter(_STATES.c.item_id == _item).label("client_seq"),
        func.count()
        .filter(_STATES.c.item_id == _item, _STATES.c.response.is_not(None))
        .label("has_response"),
    )
    .where(_STATES.c.attempt_id == _attempt)
    .subquery("state")
)
_PRIOR = _HISTORY_TABLE.alias("prior")


def _lookup(dialect: str) -> Select[Any]:
    """One row: an aggregate over the item states always has one, and the prior answer is
    joined to it when there is one (the pair is unique)."""
    return select(
        clock_column(dialect),
        _STATE,
        _PRIOR.c.item_id.label("prior_item_id"),
        _PRIOR.c.response.label("prior_response"),
        _PRIOR.c.applied.label("prior_applied"),
        _PRIOR.c.received_at,
    ).select_from(
        _STATE.outerjoin(
            _PRIOR,
            and_(_PRIOR.c.attempt_id == _attempt, _PRIOR.c.client_seq == bindparam("client_seq")),
        )
    )


_LOOKUPS = {dialect: _lookup(dialect) for dialect in ("postgresql", "sqlite")}

_HISTORY = _HISTORY_TABLE.insert().values(
    {
        name: bindparam(f"answer_{name}")
        for name in (
            "attempt_id", "item_id", "client_seq", "response", "applied", "actor_id",
            "connection_id", "received_at",
        )
    }
)  # fmt: skip


def _upsert_state(insert: Any) -> Insert:
    """The item's state row, created on its first answer. An applied answer replaces the
    response and seq; `locked` only ever turns on here (a locked item refuses answers before
    this point), and the flag is the candidate's own, left as it is."""
    stmt = insert(_STATES).values(
        attempt_id=bindparam("state_attempt_id"),
        item_id=bindparam("state_item_id"),
        response=bindparam("state_response"),
        client_seq=bindparam("state_client_seq"),
        answered_at=bindparam("state_answered_at"),
        locked=bindparam("state_locked"),
        flagged=False,
        needs_grade=False,
    )
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["attempt_id", "item_id"],
        set_={
            "response": stmt.excluded.response,
            "client_seq": stmt.excluded.client_seq,
            "answered_at": stmt.excluded.answered_at,
            "locked": stmt.excluded.locked,
        },
    )


_SQLITE_STATE = _upsert_state(sqlite.insert)
_HISTORY_AND_STATE = _HISTORY.add_cte(_upsert_state(postgresql.insert).cte("answered_state"))
