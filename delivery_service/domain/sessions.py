"""Group sessions and classes: their life cycles and the global-timer rules (DESIGN.md §3, §4).

A session's global timer starts once for everyone. A student's personal end is the session start
plus the time limit scaled by their accommodation multiplier plus their extra seconds; a late
joiner's deadline is that same personal end, so joining late costs time but never an accommodation.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from statemachine import State, StateMachine

from delivery_service.domain.attempt_machine import FINAL_STATES, OPEN_STATES, transition
from delivery_service.domain.errors import Conflict
from delivery_service.domain.timing import iso, ms


class SessionMachine(StateMachine):
    scheduled = State(initial=True)
    waiting = State()
    in_progress = State()
    completed = State(final=True)
    cancelled = State(final=True)

    open_waiting_room = scheduled.to(waiting)
    start = waiting.to(in_progress)
    complete = in_progress.to(completed)
    cancel = scheduled.to(cancelled) | waiting.to(cancelled)


class ClassMachine(StateMachine):
    active = State(initial=True)
    archived = State(final=True)

    archive = active.to(archived)


JOINABLE = frozenset({"waiting", "in_progress"})
MAX_MULTIPLIER = 4.0
MAX_EXTRA_SECONDS = 24 * 3600
RECHECK_PAUSED = timedelta(seconds=30)


def session_transition(session: Any, event: str) -> None:
    transition(session, event, SessionMachine, "session")


def class_transition(klass: Any, event: str) -> None:
    transition(klass, event, ClassMachine, "class")


def require_active_class(state: str) -> None:
    if state != "active":
        raise Conflict("class_archived", "the class is archived")


def require_joinable(state: str) -> None:
    if state not in JOINABLE:
        raise Conflict(
            "session_not_joinable", f"the session is {state}; it cannot be joined", state=state
        )


def waiting_room_opens_at(scheduled_at: datetime, lead: timedelta) -> datetime:
    """The earliest moment a session's waiting room may open: `lead` before its time."""
    return scheduled_at - lead


def require_waiting_room_due(scheduled_at: datetime, lead: timedelta, now: datetime) -> None:
    """The schedule is kept: a waiting room (and so a start) hours before the announced time
    would sit the paper before the candidates who trust the schedule arrive. Refused with the
    moment it may open (`session_not_open_yet`, `opens_at`)."""
    opens_at = waiting_room_opens_at(scheduled_at, lead)
    if now < opens_at:
        raise Conflict(
            "session_not_open_yet",
            f"the waiting room opens at {iso(opens_at)}, "
            f"{int(lead.total_seconds() // 60)} minutes before the session",
            opens_at=iso(opens_at),
            scheduled_at=iso(scheduled_at),
        )


def personal_end(
    started_at: datetime,
    time_limit_seconds: int,
    *,
    multiplier: float = 1.0,
    extra_seconds: int = 0,
) -> datetime:
    """When one student's time in a session runs out, whenever they joined."""
    return started_at + timedelta(seconds=time_limit_seconds * multiplier + extra_seconds)


def validate_accommodation(*, extra_seconds: int, multiplier: float) -> None:
    if not 0 <= extra_seconds <= MAX_EXTRA_SECONDS:
        raise Conflict(
            "invalid_accommodation",
            f"extra_seconds must be between 0 and {MAX_EXTRA_SECONDS}",
            extra_seconds=extra_seconds,
        )
    if not 1.0 <= multiplier <= MAX_MULTIPLIER:
        raise Conflict(
            "invalid_accommodation",
            f"time_multiplier must be between 1.0 and {MAX_MULTIPLIER}",
            time_multiplier=multiplier,
        )


def completion_due(
    *,
    ends_at: datetime,
    open_attempts: Iterable[tuple[str, datetime | None]],
    grace: timedelta,
    now: datetime,
) -> datetime | None:
    """When a running session whose global end is `ends_at` may complete, given its open
    attempts as (state, deadline): None when it may complete now, else when to look again.
    Students with extra time keep it open until their own end (plus the grace); a paused
    attempt keeps it open with no end in sight, so it is looked at again every little while."""
    waiting_on = [
        (state, deadline)
        for state, deadline in open_attempts
        if state == "paused" or (deadline is not None and deadline + grace > now)
    ]
    if now >= ends_at + grace and not waiting_on:
        return None
    later = [deadline for _, deadline in waiting_on if deadline is not None]
    due = max([ends_at, *later]) + grace
    if due <= now:  # only paused attempts hold it open: look again soon
        due = now + RECHECK_PAUSED
    return due


def remaining_ms(
    *, state: str, deadline: datetime | None, paused_at: datetime | None, now: datetime
) -> int | None:
    """What the proctor's grid shows as a student's time left: none without a deadline, the
    time frozen at the pause while paused, nothing once the attempt ended."""
    if deadline is None:
        return None
    if state not in OPEN_STATES:
        return 0
    stop = paused_at if state == "paused" and paused_at else now
    return max(ms(deadline - stop), 0)


def finished(state: str | None) -> bool:
    """Whether a grid row's attempt counts as done in the session's statistics."""
    return state in FINAL_STATES
