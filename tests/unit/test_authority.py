"""Who may hold an attempt's clock, and which staff actions must give a reason."""

from __future__ import annotations

import uuid

import pytest

from delivery_service.domain.authority import may_pause, require_reason
from delivery_service.domain.errors import ReasonRequired
from delivery_service.domain.principal import Principal

TEACHER = Principal(uuid.uuid4(), "teacher1", "teacher")
ADMIN = Principal(uuid.uuid4(), "admin", "admin")
STUDENT = Principal(uuid.uuid4(), "student1", "student")


@pytest.mark.parametrize("action", ["time_extended", "attempt_terminated", "grade_changed",
                                    "accommodation_set", "session_force_completed"])  # fmt: skip
def test_staff_action_that_changes_an_outcome_without_a_reason_is_refused(action: str) -> None:
    with pytest.raises(ReasonRequired, match=action):
        require_reason(TEACHER, action, None)


def test_a_blank_reason_is_no_reason() -> None:
    with pytest.raises(ReasonRequired, match="time_extended"):
        require_reason(ADMIN, "time_extended", "   ")


def test_staff_action_with_a_reason_is_allowed() -> None:
    require_reason(TEACHER, "attempt_terminated", "left the room")


def test_staff_pausing_needs_no_reason() -> None:
    require_reason(TEACHER, "attempt_paused", None)


def test_a_candidate_acting_on_their_own_attempt_gives_no_reason() -> None:
    require_reason(STUDENT, "time_extended", None)


@pytest.mark.parametrize("staff", [TEACHER, ADMIN])
def test_staff_may_always_pause(staff: Principal) -> None:
    assert may_pause(staff, allow_pause=False, in_session=True)


def test_a_candidate_may_pause_a_self_paced_attempt_when_the_test_allows_it() -> None:
    assert may_pause(STUDENT, allow_pause=True, in_session=False)


def test_a_candidate_may_not_pause_when_the_test_forbids_it() -> None:
    assert not may_pause(STUDENT, allow_pause=False, in_session=False)


def test_a_candidate_may_not_pause_inside_a_proctored_session() -> None:
    assert not may_pause(STUDENT, allow_pause=True, in_session=True)
