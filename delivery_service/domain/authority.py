"""Who may hold an attempt's clock, and what a staff action must say for itself.

Staff actions are the audit trail: those that change an outcome (an extension, a termination, a
changed grade) need a written reason, and the ledger keeps it beside the act.
"""

from __future__ import annotations

from typing import Protocol

from delivery_service.domain.errors import ReasonRequired
from integrity import events as ev


class Actor(Protocol):
    """Whoever acts (a `Principal`): only whether they are staff matters here."""

    @property
    def is_staff(self) -> bool: ...


def require_reason(principal: Actor, action: str, reason: str | None) -> None:
    """Refuse a staff action that changes an outcome without a reason (blank is none);
    candidates acting on their own attempt give none."""
    if principal.is_staff and action in ev.STAFF_ACTIONS_NEEDING_REASON:
        if reason is None or not reason.strip():
            raise ReasonRequired(action)


def may_pause(principal: Actor, *, allow_pause: bool, in_session: bool) -> bool:
    """Staff always; a candidate only when the test allows it and never inside a proctored
    session, where the proctor holds the clock."""
    if principal.is_staff:
        return True
    return allow_pause and not in_session
