"""Bulk import of users from CSV: reading the file, checking each row, and deciding what each
row does to the accounts and classes that exist. Pure: the service reads the facts (who exists,
which classes, whether a given password is the stored one) and writes what was decided.

The file is `username,display_name,role,class,password` (any order; `password` may be left out),
UTF-8, comma-separated; `class` names several classes separated by `;`, or none. Every row is
checked before anything is written, and one refused row refuses the import: a school fixes the
file and runs it again, and never has half an import to untangle.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from delivery_service.domain.errors import Forbidden, Unprocessable
from delivery_service.domain.principal import ROLES, Principal

COLUMNS = ("username", "display_name", "role", "class", "password")
REQUIRED = frozenset(COLUMNS) - {"password"}
# The users API's rule (schemas/users.py): letters, digits and . _ @ + -, at most 64.
USERNAME = re.compile(r"[\w.@+-]{1,64}")
MAX_DISPLAY_NAME = 200  # users.display_name
MAX_CLASS_NAME = 100  # classes.name
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Action = Literal["create", "update", "unchanged", "refused"]
PasswordAction = Literal["generated", "set"]
# (password, username) -> why it is refused, or None (security/password_policy.weakness).
Weakness = Callable[[str, str], str | None]


class ImportFileError(Unprocessable):
    """The file as a whole cannot be read as the import's CSV; nothing in it was looked at
    further. `code` says why (`csv_empty`, `csv_not_utf8`, `csv_no_header`, `csv_bad_columns`,
    `csv_malformed`, `csv_too_many_rows`)."""


@dataclass(frozen=True)
class Row:
    """One row as read and checked: names trimmed, role lower-cased, classes split."""

    line: int
    username: str
    display_name: str
    role: str
    classes: tuple[str, ...]
    password: str | None = field(default=None, repr=False)  # never in a repr or a log line


@dataclass(frozen=True)
class Refusal:
    line: int
    username: str
    code: str
    reason: str


@dataclass(frozen=True)
class Parsed:
    rows: list[Row]
    refusals: list[Refusal]


def parse(data: bytes, *, max_rows: int, weakness: Weakness) -> Parsed:
    """Read the whole file: file-level problems raise ImportFileError; row-level ones become
    refusals with the row's line number (the physical line it starts on, the header being 1)."""
    if not data.strip():
        raise ImportFileError("csv_empty", "the file is empty")
    reader = csv.reader(io.StringIO(_decode(data), newline=""), strict=True)
    columns: dict[str, int] | None = None
    rows: list[Row] = []
    refusals: list[Refusal] = []
    seen: dict[str, int] = {}
    line = 0  # where the record being read starts: the line after the last one read
    try:
        for fields in reader:
            start, line = line + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue  # a blank line
            if columns is None:
                columns = _header(fields)
                continue
            if len(rows) + len(refusals) >= max_rows:
                raise ImportFileError(
                    "csv_too_many_rows",
                    f"the file has more than {max_rows} rows; split it",
                    max_rows=max_rows,
                )
            checked = _row(start, fields, columns, weakness)
            key = checked.username.casefold()
            if isinstance(checked, Row) and key in seen:
                checked = Refusal(
                    start,
                    checked.username,
                    "duplicate_username",
                    f"{checked.username} is already on line {seen[key]}",
                )
            if isinstance(checked, Refusal):
                refusals.append(checked)
            else:
                seen[key] = start
                rows.append(checked)
    except csv.Error as exc:
        where = reader.line_num
        raise ImportFileError("csv_malformed", f"line {where}: {exc}", line=where) from exc
    if columns is None:
        raise ImportFileError("csv_empty", "the file is empty")
    return Parsed(rows, refusals)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # a spreadsheet's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            "csv_not_utf8",
            f"line {line}: the file is not UTF-8 (byte {exc.start}); save it as CSV UTF-8",
            line=line,
        ) from exc


def _header(fields: list[str]) -> dict[str, int]:
    names = [f.strip().lower() for f in fields]
    if len(names) == 1 and ";" in names[0]:
        raise ImportFileError(
            "csv_bad_columns",
            "columns must be separated by commas, not semicolons (`;` separates classes)",
            expected=list(COLUMNS),
        )
    if not set(names) & set(COLUMNS):
        raise ImportFileError(
            "csv_no_header",
            f"the first line must name the columns: {','.join(COLUMNS)}",
            expected=list(COLUMNS),
        )
    unknown = [n for n in names if n not in COLUMNS]
    missing = sorted(REQUIRED - set(names))
    repeated = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or repeated:
        problems = [
            *(f"unknown column {n!r}" for n in unknown),
            *(f"missing column {n!r}" for n in missing),
            *(f"column {n!r} twice" for n in repeated),
        ]
        raise ImportFileError(
            "csv_bad_columns",
            "; ".join(problems),
            expected=list(COLUMNS),
            found=names,
        )
    return {name: index for index, name in enumerate(names)}


def _row(
    line: int, fields: list[str], columns: Mapping[str, int], weakness: Weakness
) -> Row | Refusal:
    def value(name: str) -> str:
        index = columns.get(name)
        return fields[index].strip() if index is not None and index < len(fields) else ""

    username = value("username")
    if len(fields) != len(columns):
        return Refusal(
            line,
            username,
            "wrong_field_count",
            f"{len(fields)} fields where the header has {len(columns)}",
        )
    if any(_CONTROL.search(f) for f in fields):
        return Refusal(line, username, "invalid_value", "a field holds a control character")
    if not USERNAME.fullmatch(username):
        why = "1-64 of letters, digits and . _ @ + -"
        return Refusal(line, username, "invalid_username", why)
    display_name = value("display_name")
    if not display_name or len(display_name) > MAX_DISPLAY_NAME:
        why = f"a display name of 1-{MAX_DISPLAY_NAME} characters is required"
        return Refusal(line, username, "invalid_display_name", why)
    role = value("role").lower()
    if role not in ROLES:
        return Refusal(
            line,
            username,
            "invalid_role",
            f"role {value('role')!r} is not one of {', '.join(ROLES)}",
        )
    classes: dict[str, str] = {}
    for name in (n.strip() for n in value("class").split(";")):
        if len(name) > MAX_CLASS_NAME:
            return Refusal(
                line,
                username,
                "invalid_class",
                f"a class name is at most {MAX_CLASS_NAME} characters",
            )
        if name:
            classes.setdefault(name.casefold(), name)
    # Passwords are taken as typed: spaces at either end may be part of one.
    index = columns.get("password")
    password = fields[index] if index is not None and fields[index] else None
    if password is not None:
        weak = weakness(password, username)
        if weak is not None:
            return Refusal(line, username, "weak_password", weak)
    return Row(line, username, display_name, role, tuple(classes.values()), password)


# What the import decides, from the facts the service read.


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
