"""Who may create and look after which accounts. Pure: the services read the facts (the
target's role, whether the actor teaches them) and ask.

An admin looks after everyone. A teacher may create students (into classes they teach);
everything else about accounts (passwords, roles, disabling, staff) is an admin's. Resetting a
password is an admin's on purpose: a teacher may enrol any existing student into their class,
so a teacher's reset would let any teacher take over any student's account.
"""

from __future__ import annotations

import re

from delivery_service.domain.errors import Conflict, Forbidden
from delivery_service.domain.principal import Principal, Role

# What a username may be, wherever an account is made (the API, an import, an OpenID sign-in):
# letters, digits and . _ @ + -, 1 to 64; a school's ids or an e-mail address, never a space,
# so a CSV or a command line keeps it whole.
USERNAME = re.compile(r"[\w.@+-]{1,64}")


def require_may_create(actor: Principal, role: Role) -> None:
    if actor.role == "admin":
        return
    if actor.role == "teacher" and role == "student":
        return
    if actor.role == "teacher":
        raise Forbidden("teachers create students only; ask an admin for staff accounts")
    raise Forbidden("only teachers and admins create accounts")


def require_staff(actor: Principal, what: str) -> None:
    if not actor.is_staff:
        raise Forbidden(f"only teachers and admins {what}")


def require_admin(actor: Principal, what: str) -> None:
    if actor.role != "admin":
        raise Forbidden(f"only an admin can {what}")


def require_admin_kept(
    *, target_role: str, target_disabled: bool, new_role: str, new_disabled: bool, admins: int
) -> None:
    """`admins` counts the enabled admins now; refuse a change that would leave none, or a
    school could lock itself out of its own server (the CLI's create-user is the way back)."""
    was_admin = target_role == "admin" and not target_disabled
    stays_admin = new_role == "admin" and not new_disabled
    if was_admin and not stays_admin and admins <= 1:
        raise Conflict("last_admin", "this is the last enabled admin; make another admin first")
