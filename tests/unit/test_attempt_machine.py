from dataclasses import dataclass

import pytest

from delivery_service.domain.attempt_machine import FINAL_STATES, transition
from delivery_service.domain.errors import InvalidTransition


@dataclass
class Row:
    state: str


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        ("not_started", "start", "in_progress"),
        ("in_progress", "pause", "paused"),
        ("paused", "resume", "in_progress"),
        ("in_progress", "submit", "submitted"),
        ("in_progress", "expire", "expired"),
        ("in_progress", "terminate", "terminated"),
        ("paused", "terminate", "terminated"),
    ],
)
def test_allowed_transition_changes_the_stored_state(state: str, event: str, after: str) -> None:
    row = Row(state)
    transition(row, event)
    assert row.state == after


@pytest.mark.parametrize(
    ("state", "event"),
    [
        ("not_started", "submit"),
        ("not_started", "pause"),
        ("paused", "submit"),
        ("paused", "expire"),
        ("in_progress", "start"),
        ("submitted", "start"),
        ("expired", "resume"),
        ("terminated", "submit"),
        ("submitted", "expire"),
    ],
)
def test_invalid_transition_is_an_error_with_a_stable_code(state: str, event: str) -> None:
    row = Row(state)
    with pytest.raises(InvalidTransition, match=f"cannot {event}") as caught:
        transition(row, event)
    assert caught.value.code == "invalid_transition"
    assert caught.value.details == {"event": event, "state": state}
    assert row.state == state


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_final_states_accept_no_event(state: str) -> None:
    for event in ("start", "pause", "resume", "submit", "expire", "terminate"):
        with pytest.raises(InvalidTransition):
            transition(Row(state), event)
