"""What each checked row of an import does to the accounts and classes that exist: create,
update, leave unchanged, or refuse, and in which batches the writes go. Pure: the service reads
the facts (who exists, which classes, whether a given temporary password is the stored one) and
writes what was decided. One refused row refuses the import: a school fixes the file and runs
it again, and never has half an import to untangle.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from delivery_service.domain.errors import Forbidden
from delivery_service.domain.principal import Principal
from delivery_service.domain.user_import.csv_file import (
    Action,
    Parsed,
    PasswordAction,
    Row,
)


@dataclass(frozen=True)
class Existing:
    """A user the file names who exists already."""

    id: uuid.UUID
    role: str
    display_name: str
    #: the active classes they are a member of (as a student, or as a teacher), by casefold
    classes: frozenset[str]
    #: a member of any class at all, archived ones included
    member: bool
    #: for a teacher's import: the student is in a class this teacher teaches
    taught_by_actor: bool
    #: an admin reset or an import set their password and they have not chosen their own
    must_change_password: bool = False
    #: their token version when read: raised by any change of password, role or access, so
    #: the write can tell the user changed under the import
    token_version: int = 0


@dataclass(frozen=True)
class KnownClass:
    """The active classes of one name (casefold): one to use, several to refuse."""

    ids: tuple[uuid.UUID, ...]
    taught_by_actor: bool


@dataclass(frozen=True)
class Outcome:
    line: int
    username: str
    display_name: str
    role: str
    action: Action
    changes: tuple[str, ...] = ()
    classes_added: tuple[str, ...] = ()
    password: PasswordAction | None = None
    code: str | None = None
    reason: str | None = None
    user_id: uuid.UUID | None = None
    #: for an update: the user's token version the plan was made from
    read_version: int | None = None


@dataclass(frozen=True)
class Plan:
    outcomes: list[Outcome]  # by line
    #: classes to create (admins' imports only), as first spelled in the file
    new_classes: list[str]

    @property
    def ok(self) -> bool:
        return not any(o.action == "refused" for o in self.outcomes)

    def count(self, action: Action) -> int:
        return sum(1 for o in self.outcomes if o.action == action)


def require_may_import(actor: Principal) -> None:
    if not actor.is_staff:
        raise Forbidden("only teachers and admins import users")


def plan(
    parsed: Parsed,
    *,
    actor: Principal,
    existing: Mapping[str, Existing],
    classes: Mapping[str, KnownClass],
    same_password: Mapping[int, bool],
    reissue_passwords: bool = False,
) -> Plan:
    """What each row does. `existing` is keyed by username, `classes` by casefolded name,
    `same_password` by line (whether the row's password is the one stored now).

    Admins import any role and create classes the file names that do not exist yet; teachers
    import students only, into classes they teach, and change the name or password only of
    students they already teach. An import adds: it never takes anyone out of a class.
    With `reissue_passwords`, an existing user named without a password who has not chosen
    their own yet (an earlier import's password was lost) gets a new generated one."""
    require_may_import(actor)
    admin = actor.role == "admin"
    outcomes = [
        Outcome(r.line, r.username, "", "", "refused", code=r.code, reason=r.reason)
        for r in parsed.refusals
    ]
    new_classes: dict[str, str] = {}
    for row in parsed.rows:
        refused = _refusal(row, admin=admin, classes=classes)
        if refused is not None:
            outcomes.append(_refused(row, *refused))
            continue
        for name in row.classes:
            if name.casefold() not in classes:
                new_classes.setdefault(name.casefold(), name)
        user = existing.get(row.username)
        if user is None:
            outcomes.append(
                Outcome(
                    row.line,
                    row.username,
                    row.display_name,
                    row.role,
                    "create",
                    classes_added=row.classes,
                    password="set" if row.password else "generated",
                )
            )
            continue
        outcomes.append(
            _update(
                row,
                user,
                admin=admin,
                actor_name=actor.username,
                same_password=same_password.get(row.line, False),
                reissue=reissue_passwords,
            )
        )
    outcomes.sort(key=lambda o: o.line)
    # A class is created only if a row that is applied names it.
    named = {n.casefold() for o in outcomes if o.action != "refused" for n in o.classes_added}
    return Plan(outcomes, [n for key, n in new_classes.items() if key in named])


def _refusal(row: Row, *, admin: bool, classes: Mapping[str, KnownClass]) -> tuple[str, str] | None:
    if not admin and row.role != "student":
        return "role_not_allowed", "teachers import students only"
    if not admin and not row.classes:
        return "class_required", "name a class you teach (a teacher's students are in a class)"
    if row.role == "admin" and row.classes:
        return "admin_in_class", "admins manage every class; they are not members of one"
    for name in row.classes:
        known = classes.get(name.casefold())
        if known is None:
            if not admin:
                return "class_not_found", f"no active class {name!r} (an admin's import creates it)"
        elif len(known.ids) > 1:
            return "ambiguous_class", f"{len(known.ids)} active classes are named {name!r}"
        elif not admin and not known.taught_by_actor:
            return "class_not_taught", f"you do not teach {name!r}"
    return None


def _update(
    row: Row,
    user: Existing,
    *,
    admin: bool,
    actor_name: str,
    same_password: bool,
    reissue: bool,
) -> Outcome:
    changes: list[str] = []
    password: PasswordAction | None = None
    if user.role != row.role:
        if not admin:
            why = f"{row.username} is a {user.role}; only an admin changes a role"
            return _refused(row, "role_not_allowed", why)
        if user.member:
            return _refused(
                row,
                "role_change_with_classes",
                f"{row.username} is a {user.role} in a class: remove them from "
                f"their classes before changing the role",
            )
        changes.append("role")
    if user.display_name != row.display_name:
        changes.append("display_name")
    if row.password is not None and user.must_change_password and not same_password:
        # Only a temporary password (an admin's, an import's) is replaced: one the user chose
        # stays theirs, whatever a file says.
        changes.append("password")
        password = "set"
    elif row.password is None and reissue and user.must_change_password:
        changes.append("password")
        password = "generated"
    added = tuple(n for n in row.classes if n.casefold() not in user.classes)
    if changes and not admin and not user.taught_by_actor:
        return _refused(
            row,
            "not_your_student",
            f"{row.username} is not in a class you teach; only their teacher or "
            "an admin changes their name or password",
        )
    if (changes or added) and row.username == actor_name:
        return _refused(row, "own_account", "an import does not change the importer's account")
    if added:
        changes.append("classes")
    return Outcome(
        row.line,
        row.username,
        row.display_name,
        row.role,
        "update" if changes else "unchanged",
        changes=tuple(changes),
        classes_added=added,
        password=password,
        user_id=user.id,
        read_version=user.token_version,
    )


def _refused(row: Row, code: str, reason: str) -> Outcome:
    return Outcome(
        row.line, row.username, row.display_name, row.role, "refused", code=code, reason=reason
    )


def batches(outcomes: Iterable[Outcome], size: int) -> Iterator[list[Outcome]]:
    """The rows that write, in file order, `size` at a time (one transaction each)."""
    if size < 1:
        raise ValueError(f"batch size {size} must be at least 1")
    batch: list[Outcome] = []
    for outcome in outcomes:
        if outcome.action in ("create", "update"):
            batch.append(outcome)
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch
