"""The global timer's rules the proctor's grid and the sweeper read (domain/sessions.py), on a
fixed clock: a student's time left, and when a session whose global end passed may complete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from delivery_service.domain.sessions import completion_due, finished, remaining_ms

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
GRACE = timedelta(seconds=5)
MINUTE = timedelta(minutes=1)


def test_a_running_attempt_shows_the_time_to_its_deadline() -> None:
    left = remaining_ms(state="in_progress", deadline=NOW + MINUTE, paused_at=None, now=NOW)
    assert left == 60_000


def test_a_paused_attempt_shows_the_time_it_had_when_paused() -> None:
    paused_at = NOW - 2 * MINUTE
    left = remaining_ms(state="paused", deadline=NOW + MINUTE, paused_at=paused_at, now=NOW)
    assert left == 180_000


def test_a_not_started_attempt_counts_down_like_a_running_one() -> None:
    assert (
        remaining_ms(state="not_started", deadline=NOW + MINUTE, paused_at=None, now=NOW) == 60_000
    )


def test_a_deadline_in_the_past_shows_no_time_not_a_negative_one() -> None:
    assert remaining_ms(state="in_progress", deadline=NOW - MINUTE, paused_at=None, now=NOW) == 0


@pytest.mark.parametrize("state", ["submitted", "expired", "terminated"])
def test_an_ended_attempt_shows_no_time_left_even_before_its_deadline(state: str) -> None:
    assert remaining_ms(state=state, deadline=NOW + MINUTE, paused_at=None, now=NOW) == 0


def test_an_attempt_without_a_deadline_shows_no_time_at_all() -> None:
    assert remaining_ms(state="in_progress", deadline=None, paused_at=None, now=NOW) is None


def test_a_session_completes_once_its_end_and_grace_passed_with_no_attempt_open() -> None:
    due = completion_due(ends_at=NOW - GRACE, open_attempts=[], grace=GRACE, now=NOW)
    assert due is None


def test_a_session_within_the_grace_after_its_end_waits_for_the_grace() -> None:
    due = completion_due(ends_at=NOW - GRACE / 2, open_attempts=[], grace=GRACE, now=NOW)
    assert due == NOW - GRACE / 2 + GRACE


def test_a_student_with_extra_time_keeps_the_session_open_until_their_own_end() -> None:
    extra = NOW + 10 * MINUTE
    due = completion_due(
        ends_at=NOW - MINUTE, open_attempts=[("in_progress", extra)], grace=GRACE, now=NOW
    )
    assert due == extra + GRACE


def test_an_open_attempt_past_its_deadline_and_grace_does_not_hold_the_session() -> None:
    due = completion_due(
        ends_at=NOW - MINUTE,
        open_attempts=[("in_progress", NOW - GRACE)],
        grace=GRACE,
        now=NOW,
    )
    assert due is None


def test_a_paused_attempt_holds_the_session_and_it_is_looked_at_again_in_thirty_seconds() -> None:
    due = completion_due(
        ends_at=NOW - MINUTE, open_attempts=[("paused", NOW - MINUTE)], grace=GRACE, now=NOW
    )
    assert due == NOW + timedelta(seconds=30)


def test_the_latest_personal_end_decides_when_several_students_have_extra_time() -> None:
    due = completion_due(
        ends_at=NOW - MINUTE,
        open_attempts=[("in_progress", NOW + MINUTE), ("in_progress", NOW + 3 * MINUTE),
                       ("paused", None)],
        grace=GRACE,
        now=NOW,
    )  # fmt: skip
    assert due == NOW + 3 * MINUTE + GRACE


@pytest.mark.parametrize(
    ("state", "done"),
    [("submitted", True), ("expired", True), ("terminated", True), ("in_progress", False),
     ("paused", False), ("not_started", False), (None, False)],
)  # fmt: skip
def test_only_an_ended_attempt_counts_as_finished_in_the_statistics(
    state: str | None, done: bool
) -> None:
    assert finished(state) is done
