from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from delivery_service.domain import attempts as rules
from delivery_service.domain import timing
from delivery_service.domain.errors import (
    AttemptNotInProgress,
    DeadlinePassed,
    InvalidTransition,
    PauseNotAllowed,
)

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
GRACE = timedelta(seconds=2)


@dataclass
class Row:
    state: str = "not_started"
    started_at: datetime | None = None
    deadline: datetime | None = None
    paused_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    extra_seconds: int = 0
    log: list[str] = field(default_factory=list)


def started(limit: int = 600, **kwargs: object) -> Row:
    row = Row(**kwargs)  # type: ignore[arg-type]
    rules.start(row, now=T0, time_limit_seconds=limit)
    return row


def test_start_sets_deadline_from_the_database_clock_and_limit() -> None:
    row = started(600)
    assert row.state == "in_progress"
    assert row.started_at == T0
    assert row.deadline == T0 + timedelta(seconds=600)


def test_accommodation_extra_seconds_are_added_at_start() -> None:
    row = started(600, extra_seconds=120)
    assert row.deadline == T0 + timedelta(seconds=720)


def test_answer_at_deadline_plus_grace_is_accepted_and_a_millisecond_later_refused() -> None:
    row = started(600)
    assert row.deadline is not None
    rules.require_writable(row, now=row.deadline + GRACE, grace=GRACE)
    with pytest.raises(DeadlinePassed):
        rules.require_writable(
            row, now=row.deadline + GRACE + timedelta(milliseconds=1), grace=GRACE
        )


def test_a_write_to_an_expired_attempt_is_a_passed_deadline() -> None:
    row = started(60)
    rules.finish(row, event="expire", now=T0 + timedelta(seconds=63))
    with pytest.raises(DeadlinePassed):
        rules.require_writable(row, now=T0 + timedelta(seconds=64), grace=GRACE)


def test_writes_need_an_attempt_in_progress() -> None:
    with pytest.raises(AttemptNotInProgress):
        rules.require_writable(Row(), now=T0, grace=GRACE)


def test_overdue_only_after_the_grace_window() -> None:
    row = started(60)
    assert not rules.is_overdue(row, now=T0 + timedelta(seconds=61), grace=GRACE)
    assert rules.is_overdue(row, now=T0 + timedelta(seconds=62, milliseconds=1), grace=GRACE)


def test_pause_and_resume_keep_the_remaining_time_exactly() -> None:
    row = started(600)
    rules.pause(row, now=T0 + timedelta(seconds=100), allowed=True)
    view = timing.timer_view(
        state=row.state,
        deadline=row.deadline,
        paused_at=row.paused_at,
        time_limit_seconds=600,
        now=T0 + timedelta(seconds=400),
    )
    assert view.remaining_ms == 500_000
    assert view.running is False
    rules.resume(row, now=T0 + timedelta(seconds=1000))
    assert row.deadline == T0 + timedelta(seconds=1500)
    assert row.paused_at is None


def test_pause_refused_when_the_test_does_not_allow_it() -> None:
    with pytest.raises(PauseNotAllowed):
        rules.pause(started(), now=T0, allowed=False)


def test_pause_refused_once_the_deadline_passed() -> None:
    with pytest.raises(DeadlinePassed):
        rules.pause(started(60), now=T0 + timedelta(seconds=61), allowed=True)


def test_extension_moves_a_running_deadline() -> None:
    row = started(600)
    rules.extend(row, seconds=90)
    assert row.deadline == T0 + timedelta(seconds=690)
    assert row.extra_seconds == 90


def test_extension_of_a_finished_attempt_is_invalid() -> None:
    row = started()
    rules.finish(row, event="submit", now=T0)
    with pytest.raises(InvalidTransition):
        rules.extend(row, seconds=60)


def test_finish_records_when_and_why() -> None:
    row = started()
    rules.finish(row, event="expire", now=T0 + timedelta(seconds=602))
    assert (row.state, row.end_reason, row.ended_at) == (
        "expired",
        "expired",
        T0 + timedelta(seconds=602),
    )


@pytest.mark.parametrize(
    ("state", "running", "remaining"),
    [("not_started", False, 600_000), ("in_progress", True, 540_000), ("submitted", False, 0)],
)
def test_timer_view_per_state(state: str, running: bool, remaining: int) -> None:
    deadline = None if state == "not_started" else T0 + timedelta(seconds=600)
    view = timing.timer_view(
        state=state,
        deadline=deadline,
        paused_at=None,
        time_limit_seconds=600,
        now=T0 + timedelta(seconds=60),
    )
    assert (view.running, view.remaining_ms) == (running, remaining)


def test_timer_never_goes_negative() -> None:
    view = timing.timer_view(
        state="in_progress",
        deadline=T0,
        paused_at=None,
        time_limit_seconds=60,
        now=T0 + timedelta(seconds=5),
    )
    assert view.remaining_ms == 0


def test_wire_time_is_iso_utc_with_milliseconds() -> None:
    assert timing.iso(T0 + timedelta(microseconds=123456)) == "2026-11-22T09:00:00.123Z"
