"""Domain errors carry a stable code and the values that explain them.

The HTTP and WebSocket edges map `code` to a status or an `error` message in one place
(`delivery_service.api.errors`); the domain never decides transport details.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every rule violation a client can cause; `code` is part of the public contract."""

    code = "domain_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidTransition(DomainError):
    code = "invalid_transition"

    def __init__(self, event: str, state: str, what: str = "attempt") -> None:
        super().__init__(
            f"cannot {event} a{'n' if what[0] in 'aeiou' else ''} {what} that is {state}",
            event=event,
            state=state,
        )


class AttemptNotInProgress(DomainError):
    code = "attempt_not_in_progress"

    def __init__(self, state: str) -> None:
        super().__init__(f"the attempt is {state}, not in progress", state=state)


class DeadlinePassed(DomainError):
    code = "deadline_passed"

    def __init__(self, deadline: str) -> None:
        super().__init__(f"the deadline {deadline} has passed", deadline=deadline)


class NavigationForbidden(DomainError):
    code = "navigation_forbidden"


class PositionOutOfRange(DomainError):
    code = "position_out_of_range"

    def __init__(self, index: int, total: int) -> None:
        super().__init__(f"position {index} is outside 0..{total - 1}", index=index, total=total)


class UnknownItem(DomainError):
    code = "unknown_item"

    def __init__(self, item_id: str) -> None:
        super().__init__(f"item {item_id!r} is not part of this attempt", item_id=item_id)


class InvalidResponse(DomainError):
    code = "invalid_response"


class ClientSeqConflict(DomainError):
    code = "client_seq_conflict"

    def __init__(self, client_seq: int) -> None:
        super().__init__(
            f"client_seq {client_seq} was already used for a different answer",
            client_seq=client_seq,
        )


class PauseNotAllowed(DomainError):
    code = "pause_not_allowed"


class AttemptLimitReached(DomainError):
    code = "attempt_limit_reached"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the attempt limit of {limit} is reached", limit=limit)


class NotFound(DomainError):
    """Also answered for things that exist but are not the caller's: no existence leak."""

    def __init__(self, what: str, ident: object) -> None:
        self.code = f"{what}_not_found"
        super().__init__(f"{what} {ident} not found", id=str(ident))


class Forbidden(DomainError):
    code = "forbidden"


class VersionConflict(DomainError):
    code = "version_conflict"


class Conflict(DomainError):
    """A rule about the current state of a class or session; `code` names which."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        self.code = code
        super().__init__(message, **details)


class Unprocessable(DomainError):
    """Input that is well-formed but cannot be used (a package, a blueprint the bank cannot
    fill); `code` names which, the status is 422."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        self.code = code
        super().__init__(message, **details)


class ReasonRequired(DomainError):
    """Staff actions that change a candidate's outcome must say why (the audit trail)."""

    code = "reason_required"

    def __init__(self, action: str) -> None:
        super().__init__(f"{action} changes a candidate's outcome: give a reason", action=action)


class SebRequired(DomainError):
    """The test may only be taken in Safe Exam Browser with a known key; `code` says which
    check failed (`seb_required`, `seb_key_invalid`)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class ReviewNotAllowed(DomainError):
    """The test's review policy keeps a finished attempt's result from its candidate."""

    code = "review_not_allowed"
