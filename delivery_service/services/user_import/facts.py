"""What an import reads before it decides: the users the file names, their classes, and the
active classes by name (domain/user_import/ decides on these)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.principal import Principal
from delivery_service.domain.user_import import Existing, KnownClass, Parsed
from delivery_service.storage.models import Class, ClassStudent, ClassTeacher, User

CHUNK = 500  # names per IN (…) list


@dataclass(frozen=True)
class Facts:
    existing: dict[str, Existing]
    hashes: dict[str, str]  # username -> stored hash, for the rows that give a password
    classes: dict[str, KnownClass]  # casefolded name -> the active classes of that name


async def read_facts(
    db: async_sessionmaker[AsyncSession], principal: Principal, parsed: Parsed
) -> Facts:
    """The users the file names as they are now, and the active classes by name."""
    usernames = [row.username for row in parsed.rows]
    with_password = {row.username for row in parsed.rows if row.password is not None}
    existing: dict[str, Existing] = {}
    hashes: dict[str, str] = {}
    async with db() as s:
        taught = set(
            await s.scalars(
                select(ClassTeacher.class_id).where(ClassTeacher.user_id == principal.user_id)
            )
        )
        active = (await s.execute(select(Class.id, Class.name, Class.state))).all()
        names = {ident: name.casefold() for ident, name, state in active if state == "active"}
        taught_active = taught & set(names)
        for chunk in _chunks(usernames):
            users = (
                await s.execute(
                    select(
                        User.id,
                        User.username,
                        User.role,
                        User.display_name,
                        User.password_hash,
                        User.must_change_password,
                        User.token_version,
                    ).where(User.username.in_(chunk))
                )
            ).all()
            ids = [u.id for u in users]
            member_of: dict[uuid.UUID, set[uuid.UUID]] = {i: set() for i in ids}
            student_of: dict[uuid.UUID, set[uuid.UUID]] = {i: set() for i in ids}
            for table in (ClassStudent, ClassTeacher):
                rows = await s.execute(
                    select(table.user_id, table.class_id).where(table.user_id.in_(ids))
                )
                for user_id, class_id in rows:
                    member_of[user_id].add(class_id)
                    if table is ClassStudent:
                        student_of[user_id].add(class_id)
            for u in users:
                existing[u.username] = Existing(
                    id=u.id,
                    role=u.role,
                    display_name=u.display_name,
                    classes=frozenset(names[c] for c in member_of[u.id] if c in names),
                    member=bool(member_of[u.id]),
                    taught_by_actor=bool(student_of[u.id] & taught_active),
                    must_change_password=u.must_change_password,
                    token_version=u.token_version,
                )
                # A password the user chose is never compared nor replaced by an import.
                if u.username in with_password and u.must_change_password:
                    hashes[u.username] = u.password_hash
    classes: dict[str, list[uuid.UUID]] = {}
    for ident, key in names.items():
        classes.setdefault(key, []).append(ident)
    known = {
        key: KnownClass(ids=tuple(ids), taught_by_actor=bool(taught.intersection(ids)))
        for key, ids in classes.items()
    }
    return Facts(existing, hashes, known)


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    chunk: list[str] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
