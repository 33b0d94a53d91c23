"""Who may manage or see a class, its sessions and its candidates' attempts, given the facts
already loaded (source 002's validate_websocket_access).

Admins may do everything; a teacher manages the classes they teach; a student sees the classes
they are enrolled in and their sessions. An attempt belongs to its session's class, or, taken
self-paced, to every class its candidate is enrolled in: its candidate and the teachers of that
class may see it, and only those teachers (and admins) may act on it as staff. Staff of other
classes are told no (403); students are not told a thing exists (404).

Pure: the caller reads whether the principal teaches or is enrolled (services/access.py, one SQL
statement beside the row it loads) and asks here.
"""

from __future__ import annotations

import uuid
from typing import Literal, Protocol

from delivery_service.domain.errors import Forbidden, NotFound

AttemptAccess = Literal["owner", "read", "staff"]


class Actor(Protocol):
    """Who is asking: a signed-in principal (domain.principal.Principal)."""

    @property
    def user_id(self) -> uuid.UUID: ...

    @property
    def role(self) -> str: ...

    @property
    def is_staff(self) -> bool: ...


def manages_all(actor: Actor) -> bool:
    """Admins manage every class, session and attempt, with nothing to read first."""
    return actor.role == "admin"


def manages(actor: Actor, *, teaches_class: bool) -> bool:
    """The rule itself, for a caller that read whether the principal teaches the class."""
    return manages_all(actor) or (actor.role == "teacher" and teaches_class)


def sees(actor: Actor, *, teaches_class: bool, enrolled_in_class: bool) -> bool:
    return manages(actor, teaches_class=teaches_class) or (
        actor.role == "student" and enrolled_in_class
    )


def require_visible(visible: bool, actor: Actor, what: str, ident: uuid.UUID) -> None:
    """Staff of other classes are told no (403); students are not told it exists (404)."""
    if visible:
        return
    if actor.is_staff:
        raise Forbidden(f"this {what} belongs to a class you do not teach")
    raise NotFound(what, ident)


def class_access(
    actor: Actor,
    class_id: uuid.UUID,
    *,
    teaches_class: bool,
    enrolled_in_class: bool,
    manage: bool,
) -> None:
    """May `actor` see the class (404/403 as `require_visible`) and, with manage, manage it?"""
    visible = sees(actor, teaches_class=teaches_class, enrolled_in_class=enrolled_in_class)
    require_visible(visible, actor, "class", class_id)
    if manage and not manages(actor, teaches_class=teaches_class):
        raise Forbidden("only the class's teachers or an admin can do this")


def session_access(
    actor: Actor,
    session_id: uuid.UUID,
    *,
    teaches_class: bool,
    enrolled_in_class: bool,
    manage: bool,
) -> None:
    """May `actor` see the session of a class (404/403) and, with manage, manage it (403)?"""
    visible = sees(actor, teaches_class=teaches_class, enrolled_in_class=enrolled_in_class)
    require_visible(visible, actor, "session", session_id)
    if manage and not manages(actor, teaches_class=teaches_class):
        raise Forbidden("only the class's teachers or an admin can manage this session")


def attempt_access(
    attempt_id: uuid.UUID,
    owner_id: uuid.UUID | None,
    actor: Actor,
    access: AttemptAccess,
    *,
    teaches: bool = False,
) -> None:
    """Whether `actor` may act on the attempt owned by `owner_id` (None: no such attempt),
    `teaches` saying whether they teach its class (`teaches_attempt`; only read for teachers).
    Read: its candidate or its class's staff; owner: its candidate only; staff: its class's
    staff only. Staff of other classes are refused (403); students are not told it exists."""
    owner = owner_id is not None and owner_id == actor.user_id
    staff = manages(actor, teaches_class=teaches)
    if owner_id is None or not (owner or staff):
        if owner_id is not None and actor.is_staff:
            raise Forbidden("this attempt belongs to a class you do not teach")
        raise NotFound("attempt", attempt_id)
    if access == "owner" and not owner:
        raise Forbidden("only the candidate can do this in their own attempt")
    if access == "staff" and not staff:
        raise Forbidden("only a proctor or an admin can do this")


def needs_teaches(actor: Actor, access: AttemptAccess) -> bool:
    """Whether deciding `access` for `actor` needs `teaches_attempt` read: only a teacher's
    read or staff access does (an admin manages all, a student none, an owner is the owner)."""
    return actor.role == "teacher" and access != "owner"
