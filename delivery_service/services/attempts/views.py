"""What a candidate (or staff) sees of an attempt, built from its rows.

One builder (`attempt_view`), two sources: the ORM objects a write has just changed
(AttemptContext.view), and `read_view`, one Core statement that reads the attempt, its test's
settings, its item states, its last client_seq and the clock. Every socket greeting sends this
view, so a reconnect storm reads it once per candidate: through the ORM the same reads took
three times the CPU (four statements, entities loaded into the session's identity map; see
docs/performance.md).

The current item (`current_item`, `delivered`) is built here too: the body only, never how it
is scored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from delivery_service.domain import section_clock
from delivery_service.domain.principal import Principal
from delivery_service.domain.timing import timer_view
from delivery_service.read_models.attempts import (
    AttemptView,
    CurrentItem,
    DeliveredItem,
    ItemSummary,
    SectionTime,
    Timer,
)
from delivery_service.services import adaptive
from delivery_service.services.access import attempt_access, needs_teaches, teaches_attempt
from delivery_service.services.items import ItemCache
from delivery_service.storage.database import clock_column, clock_value
from delivery_service.storage.models import Attempt, ItemState, ResponseEvent, Test
from integrity.policy import policy_of
from test_assembly.interactions import ItemContent


class AttemptFacts(Protocol):
    """The attempt's columns a view reads: an `Attempt`, or a row that has them."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def test_id(self) -> uuid.UUID: ...
    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def attempt_number(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def position(self) -> int: ...
    @property
    def extra_seconds(self) -> int: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def deadline(self) -> datetime | None: ...
    @property
    def paused_at(self) -> datetime | None: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def end_reason(self) -> str | None: ...
    @property
    def score(self) -> float | None: ...
    @property
    def max_score(self) -> float | None: ...
    @property
    def review(self) -> list[dict[str, Any]] | None: ...


class TestFacts(Protocol):
    @property
    def time_limit_seconds(self) -> int: ...
    @property
    def navigation_mode(self) -> str: ...
    @property
    def allow_pause(self) -> bool: ...
    @property
    def lockdown(self) -> dict[str, Any]: ...


class StateFacts(Protocol):
    @property
    def response(self) -> Any: ...
    @property
    def flagged(self) -> bool: ...


def timer_of(attempt: AttemptFacts, test: TestFacts, now: datetime) -> Timer:
    return Timer.of(
        timer_view(
            state=attempt.state,
            deadline=attempt.deadline,
            paused_at=attempt.paused_at,
            time_limit_seconds=test.time_limit_seconds + attempt.extra_seconds,
            now=now,
        )
    )


def attempt_view(
    attempt: AttemptFacts,
    test: TestFacts,
    form: list[ItemContent],
    states: Mapping[uuid.UUID, StateFacts],
    *,
    now: datetime,
    principal: Principal,
    last_client_seq: int,
) -> AttemptView:
    """The view itself: scores and review notes for staff only; correct responses never."""
    summaries = []
    responses: dict[str, Any] = {}
    flags: list[str] = []
    for position, item in enumerate(form):
        st = states.get(uuid.UUID(item.item_id))
        answered = st is not None and st.response is not None
        if st is not None and answered:
            responses[item.identifier] = st.response
        if st is not None and st.flagged:
            flags.append(item.identifier)
        summaries.append(
            ItemSummary(
                item_id=item.identifier,
                position=position,
                answered=answered,
                flagged=bool(st and st.flagged),
            )
        )
    staff = principal.is_staff
    return AttemptView(
        id=attempt.id,
        test_id=attempt.test_id,
        user_id=attempt.user_id,
        attempt_number=attempt.attempt_number,
        state=attempt.state,
        version=attempt.version,
        position=attempt.position,
        total_items=len(form),
        navigation_mode=test.navigation_mode,
        allow_pause=test.allow_pause,
        items=summaries,
        responses=responses,
        flags=flags,
        timer=timer_of(attempt, test, now),
        started_at=attempt.started_at,
        ended_at=attempt.ended_at,
        end_reason=attempt.end_reason,
        score=attempt.score if staff else None,
        max_score=attempt.max_score if staff else None,
        lockdown=policy_of(test.lockdown).public(),
        review=attempt.review if staff else None,
        last_client_seq=last_client_seq,
    )


def current_item(
    attempt: Attempt,
    test: Test,
    form: list[ItemContent],
    state: ItemState | None,
    *,
    now: datetime,
) -> CurrentItem:
    """The item at the attempt's position, its saved response, and the time left (the test's,
    and the section's when that has its own limit)."""
    item = form[attempt.position]
    running = attempt.state == "in_progress"
    left = section_clock.time_left(attempt.layout, attempt.position, now, running=running)
    return CurrentItem(
        position=attempt.position,
        total_items=adaptive.planned_total(attempt.layout, len(form)),
        item=delivered(item, attempt.position, attempt.layout),
        response=state.response if state else None,
        flagged=bool(state and state.flagged),
        timer=timer_of(attempt, test, now),
        locked=bool(state and state.locked),
        section_time=None
        if left is None
        else SectionTime.model_validate(left, from_attributes=True),
    )


def delivered(
    item: ItemContent, position: int, layout: dict[str, Any] | None = None
) -> DeliveredItem:
    """The candidate's view of an item: the body only, never `scoring`; choices in this
    attempt's shuffled order when the form shuffled them."""
    body = dict(item.body)
    section = None
    if layout:
        order = layout.get("choice_order", {}).get(item.identifier)
        if order and body.get("choices"):
            by_id = {c["identifier"]: c for c in body["choices"]}
            body["choices"] = [by_id[c] for c in order]
        section = next(
            (s["identifier"] for s in layout["sections"] if item.identifier in s["items"]), None
        )
    body.pop("shuffle", None)
    body.pop("title", None)
    return DeliveredItem.model_validate(
        body | {"item_id": item.identifier, "type": item.type, "position": position,
                "section": section}
    )  # fmt: skip


class _State(NamedTuple):
    response: Any
    flagged: bool


async def read_view(
    s: AsyncSession, items: ItemCache, principal: Principal, attempt_id: uuid.UUID
) -> AttemptView:
    """The attempt as `principal` may see it (refused as REST refuses), in one statement."""
    dialect = s.get_bind().dialect.name
    teaches = needs_teaches(principal, "read")
    rows = (
        await s.execute(
            _statement(dialect, teaches=teaches),
            {"attempt_id": attempt_id, "user_id": principal.user_id},
        )
    ).all()
    attempt_access(
        attempt_id,
        rows[0].user_id if rows else None,
        principal,
        "read",
        teaches=teaches and bool(rows and rows[0].teaches),
    )
    first = rows[0]
    states = {
        row.state_item_id: _State(row.state_response, row.state_flagged)
        for row in rows
        if row.state_item_id is not None
    }
    return attempt_view(
        cast(AttemptFacts, first),  # a row with the attempt's columns
        cast(TestFacts, first),  # and the test's settings
        await items.many(s, first.form),
        states,
        now=clock_value(dialect, first.now),
        principal=principal,
        last_client_seq=int(first.last_client_seq),
    )


def _statement(dialect: str, *, teaches: bool) -> Select[Any]:
    """The attempt row with its test's settings, one row per item state (or one with none);
    with `teaches`, whether the `user_id` parameter teaches the attempt's class."""
    statement = _STATEMENTS.get((dialect, teaches))
    if statement is None:
        attempts, tests, states = Attempt.__table__, Test.__table__, ItemState.__table__
        responses = ResponseEvent.__table__
        last_seq = (
            select(func.coalesce(func.max(responses.c.client_seq), 0))
            .where(responses.c.attempt_id == attempts.c.id)
            .scalar_subquery()
        )
        statement = (
            select(
                attempts,
                tests.c.time_limit_seconds,
                tests.c.navigation_mode,
                tests.c.allow_pause,
                tests.c.lockdown,
                last_seq.label("last_client_seq"),
                states.c.item_id.label("state_item_id"),
                states.c.response.label("state_response"),
                states.c.flagged.label("state_flagged"),
                clock_column(dialect),
            )
            .join(tests, tests.c.id == attempts.c.test_id)
            .outerjoin(states, states.c.attempt_id == attempts.c.id)
            .where(attempts.c.id == bindparam("attempt_id"))
        )
        if teaches:
            statement = statement.add_columns(
                teaches_attempt(attempts.c.session_id, attempts.c.user_id).label("teaches")
            )
        _STATEMENTS[(dialect, teaches)] = statement
    return statement


# Built once per dialect (the clock column differs) and access check.
_STATEMENTS: dict[tuple[str, bool], Select[Any]] = {}
