"""The attempt life cycle, DESIGN.md §4, as a python-statemachine machine.

The machine is bound to whatever object holds the stored `state` (the ORM row in production, a
dataclass in unit tests), so the stored value rebuilds the machine; callbacks stay synchronous and
free of I/O on purpose (async callbacks would switch the library's engine).
"""

from __future__ import annotations

from typing import Any

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

from delivery_service.domain.errors import InvalidTransition


class AttemptMachine(StateMachine):
    not_started = State(initial=True)
    in_progress = State()
    paused = State()
    submitted = State(final=True)
    expired = State(final=True)
    terminated = State(final=True)

    start = not_started.to(in_progress)
    pause = in_progress.to(paused)
    resume = paused.to(in_progress)
    submit = in_progress.to(submitted)
    expire = in_progress.to(expired)
    terminate = in_progress.to(terminated) | paused.to(terminated)


FINAL_STATES = frozenset({"submitted", "expired", "terminated"})
OPEN_STATES = frozenset({"not_started", "in_progress", "paused"})


def transition(
    model: Any, event: str, machine: type[StateMachine] = AttemptMachine, what: str = "attempt"
) -> None:
    """Apply `event` to `model.state`, raising `InvalidTransition` (never a silent no-op)."""
    state = model.state
    bound = machine(model=model, state_field="state")
    try:
        bound.send(event)
    except TransitionNotAllowed as exc:
        raise InvalidTransition(event, state, what) from exc
