"""One batch of an import in one transaction: the classes it needs, its new and changed
users, their enrolments, and its ledger entry (never a password)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.principal import Principal
from delivery_service.domain.user_import import Outcome
from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import Ledger
from delivery_service.storage.models import Class, ClassStudent, ClassTeacher, User

# Imports write one after the other (a PostgreSQL advisory lock per batch; SQLite has one
# connection anyway), so two at once cannot both create the same class.
IMPORT_LOCK = 0x7573_6572_696D  # "userim"


class Changed(Exception):
    """A user the plan counted on changed under the import: deleted, or their password, role
    or access changed since the plan read them (a password they chose during the import's
    hashing must not be overwritten by the file's)."""


async def write_batch(
    db: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    *,
    principal: Principal,
    import_id: uuid.UUID,
    number: int,
    batch: list[Outcome],
    secrets_: dict[int, tuple[str | None, str | None]],
    class_ids: dict[str, uuid.UUID],
    given_temporary: bool,
) -> list[tuple[uuid.UUID, int | None]]:
    """One batch in one transaction, with its ledger entry. Returns the users whose password
    or role changed, with their new token version (None: disabled), for the caller to end
    their earlier tokens once this committed."""
    revoked: list[tuple[uuid.UUID, int | None]] = []
    created_classes: list[str] = []
    async with db() as s, s.begin():
        dialect = s.get_bind().dialect.name
        if dialect == "postgresql":
            await s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": IMPORT_LOCK})
        now = await db_now(s)
        wanted = {n.casefold(): n for o in batch for n in o.classes_added}
        if wanted.keys() - class_ids.keys():
            created_classes = await _classes(s, principal, wanted, class_ids, now)
        ids: dict[int, uuid.UUID] = {}
        new_users = []
        for o in batch:
            digest, clear = secrets_[o.line]
            # A generated password is always temporary; a given one unless told otherwise.
            temporary = clear is not None or given_temporary
            if o.action == "create":
                ids[o.line] = uuid.uuid4()
                new_users.append(
                    {
                        "id": ids[o.line],
                        "username": o.username,
                        "display_name": o.display_name,
                        "role": o.role,
                        "password_hash": digest,
                        "created_at": now,
                        "disabled": False,
                        "token_version": 0,
                        "must_change_password": temporary,
                    }
                )
                continue
            if o.user_id is None:  # pragma: no cover - updates carry the user's id
                raise ValueError(f"line {o.line}: an update without a user")
            ids[o.line] = o.user_id
            values: dict[str, Any] = {"display_name": o.display_name, "role": o.role}
            if digest is not None:
                values |= {"password_hash": digest, "must_change_password": temporary}
            if {"password", "role"} & set(o.changes):
                values["token_version"] = User.token_version + 1
            as_read = [] if o.read_version is None else [User.token_version == o.read_version]
            changed = (
                await s.execute(
                    update(User)
                    .where(User.id == o.user_id, *as_read)
                    .values(values)
                    .returning(User.token_version, User.disabled)
                )
            ).one_or_none()
            if changed is None:
                raise Changed(f"{o.username} changed while the import ran; run it again")
            if "token_version" in values:
                revoked.append((o.user_id, None if changed.disabled else changed.token_version))
        if new_users:
            await s.execute(insert(User), new_users)
        await _enrol(s, dialect, batch, ids, class_ids, now)
        await ledger.record(
            s,
            now,
            chain=f"users-import:{import_id}",
            type="users_imported",
            source="staff",
            actor_id=principal.user_id,
            payload=_entry(import_id, number, batch, created_classes),
        )
    return revoked


async def _classes(
    s: AsyncSession,
    principal: Principal,
    wanted: dict[str, str],
    class_ids: dict[str, uuid.UUID],
    now: datetime,
) -> list[str]:
    """Create the classes the batch names that do not exist: an earlier batch, or a re-run
    after a crash, may have made them meanwhile (read again under the import lock)."""
    rows = await s.execute(select(Class.id, Class.name).where(Class.state == "active"))
    for ident, name in rows:
        class_ids.setdefault(name.casefold(), ident)
    created = []
    for key, name in wanted.items():
        if key not in class_ids:
            klass = Class(
                id=uuid.uuid4(),
                name=name,
                state="active",
                created_by=principal.user_id,
                created_at=now,
            )
            s.add(klass)
            class_ids[key] = klass.id
            created.append(name)
    await s.flush()
    return created


async def _enrol(
    s: AsyncSession,
    dialect: str,
    batch: list[Outcome],
    ids: dict[int, uuid.UUID],
    class_ids: dict[str, uuid.UUID],
    now: datetime,
) -> None:
    """Students into their classes, teachers as their class teachers; a membership that
    exists already (a re-run, an enrolment meanwhile) is left as it is."""
    students, teachers = [], []
    for o in batch:
        for name in o.classes_added:
            member = {"class_id": class_ids[name.casefold()], "user_id": ids[o.line]}
            if o.role == "teacher":
                teachers.append(member)
            else:
                students.append(member | {"enrolled_at": now})
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for table, rows in ((ClassStudent, students), (ClassTeacher, teachers)):
        if rows:
            await s.execute(make(table).on_conflict_do_nothing(), rows)


def _entry(
    import_id: uuid.UUID, number: int, batch: list[Outcome], created_classes: list[str]
) -> dict[str, Any]:
    """The batch in the ledger: who was created, changed and enrolled, never a password."""
    return {
        "import_id": str(import_id),
        "batch": number,
        "lines": [batch[0].line, batch[-1].line],
        "created": [o.username for o in batch if o.action == "create"],
        "updated": {o.username: list(o.changes) for o in batch if o.action == "update"},
        "classes_added": {o.username: list(o.classes_added) for o in batch if o.classes_added},
        "classes_created": created_classes,
    }
