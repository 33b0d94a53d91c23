"""The import CSV read and each row checked on its own: line numbers, file-level codes, a
clean row or the reason it is refused. Pure (domain/user_import/plan.py decides what a clean
row does to the accounts that exist).

The file is `username,display_name,role,class,password` (any order; `password` may be left out),
UTF-8, comma-separated; `class` names several classes separated by `;`, or none.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from delivery_service.domain.accounts import USERNAME
from delivery_service.domain.errors import Unprocessable
from delivery_service.domain.principal import ROLES

COLUMNS = ("username", "display_name", "role", "class", "password")
REQUIRED = frozenset(COLUMNS) - {"password"}
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
