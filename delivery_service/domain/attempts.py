"""Attempt rules: each use case's decision, applied to any object with the attempt's fields.

The services load a row, call one of these with the database's `now`, and write the row back with
optimistic locking. Keeping the decisions here makes every timing edge testable without I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from delivery_service.domain import timing
from delivery_service.domain.attempt_machine import transition
from delivery_service.domain.errors import (
    AttemptNotInProgress,
    DeadlinePassed,
    InvalidTransition,
    PauseNotAllowed,
)

T = TypeVar("T")


def _present(value: T | None, what: str) -> T:
    """Stored rows keep invariants (in progress has a deadline); a broken one is a bug."""
    if value is None:
        raise ValueError(f"attempt row is missing {what}")
    return value


class AttemptFields(Protocol):
    state: str
    started_at: datetime | None
    deadline: datetime | None
    paused_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    extra_seconds: int


def start(
    attempt: AttemptFields,
    *,
    now: datetime,
    time_limit_seconds: int,
    fixed_deadline: datetime | None = None,
) -> None:
    """Start the clock: a self-paced attempt gets the time limit from now; a session attempt gets
    `fixed_deadline`, the student's personal end of the session's global timer."""
    if fixed_deadline is not None and fixed_deadline <= now:
        raise DeadlinePassed(timing.iso(fixed_deadline))
    transition(attempt, "start")
    attempt.started_at = now
    attempt.deadline = fixed_deadline or timing.initial_deadline(
        now, time_limit_seconds, attempt.extra_seconds
    )


def require_writable(attempt: AttemptFields, *, now: datetime, grace: timedelta) -> None:
    """Raise unless a candidate's write may still change this attempt."""
    if attempt.state == "expired":
        # Whether the sweeper or this write noticed first, a late answer gets the same answer.
        raise DeadlinePassed(timing.iso(_present(attempt.deadline, "deadline")))
    if attempt.state != "in_progress":
        raise AttemptNotInProgress(attempt.state)
    deadline = _present(attempt.deadline, "deadline")
    if not timing.accepts_writes(deadline, now, grace):
        raise DeadlinePassed(timing.iso(deadline))


def is_overdue(attempt: AttemptFields, *, now: datetime, grace: timedelta) -> bool:
    """True when the attempt should already have expired (the write path then expires it)."""
    return (
        attempt.state == "in_progress"
        and attempt.deadline is not None
        and not timing.accepts_writes(attempt.deadline, now, grace)
    )


def pause(attempt: AttemptFields, *, now: datetime, allowed: bool) -> None:
    if not allowed:
        raise PauseNotAllowed("this test does not allow candidates to pause")
    if attempt.state == "in_progress" and attempt.deadline and now >= attempt.deadline:
        raise DeadlinePassed(timing.iso(attempt.deadline))
    transition(attempt, "pause")
    attempt.paused_at = now


def resume(attempt: AttemptFields, *, now: datetime) -> None:
    transition(attempt, "resume")
    deadline = _present(attempt.deadline, "deadline")
    paused_at = _present(attempt.paused_at, "paused_at")
    attempt.deadline = timing.deadline_after_resume(deadline, paused_at, now)
    attempt.paused_at = None


def extend(attempt: AttemptFields, *, seconds: int) -> None:
    """Give (or, with a negative value, take) time; only while the attempt can still run."""
    if attempt.state not in ("not_started", "in_progress", "paused"):
        raise InvalidTransition("extend", attempt.state)
    attempt.extra_seconds += seconds
    if attempt.deadline is not None:
        attempt.deadline = attempt.deadline + timedelta(seconds=seconds)


def finish(attempt: AttemptFields, *, event: str, now: datetime) -> None:
    """Submit, expire or terminate: the final transition, stamped with when and why."""
    transition(attempt, event)
    attempt.ended_at = now
    attempt.end_reason = attempt.state
    attempt.paused_at = None
