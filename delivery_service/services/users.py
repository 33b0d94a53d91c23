"""Looking after accounts: creating users, finding them, changing their name, role or access,
and resetting a forgotten password. Signing in and choosing one's own password are
services/accounts.py's.

Every change is on the integrity ledger (chain `user:<id>`, never a password), and every change
that takes something away (a role, access, a password) ends the user's tokens and open sockets
through the token check (services/revocation.py) after it commits.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain import accounts as rules
from delivery_service.domain.errors import Conflict, Forbidden, NotFound, Unprocessable
from delivery_service.domain.principal import Principal, Role
from delivery_service.schemas.users import UserIn, UserPatch
from delivery_service.security.password_policy import weakness
from delivery_service.security.passwords import hash_password
from delivery_service.security.tokens import TokenService
from delivery_service.services.access import members_of_classes_taught_by
from delivery_service.services.revocation import Revocations
from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import Ledger
from delivery_service.storage.models import Class, ClassStudent, ClassTeacher, User


def user_chain(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


def require_strong(password: str, username: str) -> None:
    reason = weakness(password, username=username)
    if reason is not None:
        raise Unprocessable("weak_password", reason)


@dataclass(frozen=True)
class Issued:
    """A user and, when no password was given, the one-time link token to choose one."""

    user: User
    set_password_token: str | None


@dataclass(frozen=True)
class Page:
    users: list[User]
    total: int


class UserService:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        tokens: TokenService,
        revocations: Revocations,
        ledger: Ledger,
        hash_cost: int,
        set_password_ttl_seconds: int,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._revocations = revocations
        self._ledger = ledger
        self._hash_cost = hash_cost
        self._link_ttl = set_password_ttl_seconds

    async def create(self, actor: Principal | None, spec: UserIn) -> Issued:
        """A new account. With a password, the user signs in with it (and, when staff chose
        it for them, must change it first); without, they get a one-time set-password link.
        A teacher's new student is enrolled in the given classes, which the teacher teaches.
        `actor` None is the server's operator at the command line (the first admin)."""
        if actor is not None:
            rules.require_may_create(actor, spec.role)
        if spec.password is not None:
            require_strong(spec.password, spec.username)
        hashed = await self._hash(spec.password)
        try:
            async with self._db() as s, s.begin():
                now = await db_now(s)
                classes = await _classes_for(s, actor, spec.class_ids)
                user = User(
                    username=spec.username,
                    display_name=spec.display_name or spec.username,
                    password_hash=hashed,
                    role=spec.role,
                    created_at=now,
                    disabled=False,
                    token_version=0,
                    must_change_password=spec.password is not None and spec.must_change_password,
                )
                s.add(user)
                await s.flush()
                for klass in classes:
                    if spec.role == "student":
                        s.add(ClassStudent(class_id=klass.id, user_id=user.id, enrolled_at=now))
                    else:
                        s.add(ClassTeacher(class_id=klass.id, user_id=user.id))
                await self._record(s, actor, user, "user_created", {
                    "username": user.username, "role": user.role,
                    "classes": [str(k.id) for k in classes],
                    "password": "given" if spec.password is not None else "link",
                })  # fmt: skip
        except IntegrityError:
            raise Conflict(
                "username_taken", f"the username {spec.username!r} is taken",
                username=spec.username,
            ) from None  # fmt: skip
        link = None if spec.password is not None else self._link(user)
        return Issued(user, link)

    async def list_users(
        self,
        principal: Principal,
        *,
        role: Role | None = None,
        q: str | None = None,
        disabled: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> Page:
        """Staff only, by username: an admin finds everyone; a teacher themselves and the
        members (students and co-teachers) of the classes they teach. `q` matches the start
        of a username or any part of a display name, ignoring case."""
        rules.require_staff(principal, "list users")
        conditions: list[ColumnElement[bool]] = []
        if principal.role != "admin":
            conditions.append(
                or_(User.id == principal.user_id, members_of_classes_taught_by(principal))
            )
        if role is not None:
            conditions.append(User.role == role)
        if disabled is not None:
            conditions.append(User.disabled.is_(disabled))
        if q:
            pattern = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(
                or_(
                    func.lower(User.username).like(f"{pattern}%", escape="\\"),
                    func.lower(User.display_name).like(f"%{pattern}%", escape="\\"),
                )
            )
        stmt = select(User).where(*conditions).order_by(User.username).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._db() as s:
            users = list(await s.scalars(stmt))
            total = int(await s.scalar(select(func.count(User.id)).where(*conditions)) or 0)
        return Page(users, total)

    async def get(self, actor: Principal, user_id: uuid.UUID) -> User:
        """An admin sees anyone; a teacher themselves and the members of their classes;
        anyone else, or a user out of sight, is 404 (not told the id exists)."""
        rules.require_staff(actor, "look up users")
        async with self._db() as s:
            return await self._visible(s, actor, user_id)

    async def update(self, actor: Principal, user_id: uuid.UUID, patch: UserPatch) -> User:
        """An admin changes a display name, role or access. A new role or disabling ends the
        user's tokens (a token names its role); the last enabled admin cannot be lost."""
        rules.require_admin(actor, "change accounts")
        changes = patch.model_dump(exclude_unset=True)
        async with self._db() as s, s.begin():
            # Lock the enabled admins (in id order, before the target, so two updates take
            # their locks in the same order) and count them: two admins demoting each other
            # at once must not both see the other still there.
            admins = len(
                (
                    await s.scalars(
                        select(User.id)
                        .where(User.role == "admin", User.disabled.is_(False))
                        .order_by(User.id)
                        .with_for_update()
                    )
                ).all()
            )
            user = await s.get(User, user_id, with_for_update=True)
            if user is None:
                raise NotFound("user", user_id)
            new_role = changes.get("role", user.role)
            new_disabled = changes.get("disabled", user.disabled)
            rules.require_admin_kept(
                target_role=user.role, target_disabled=user.disabled,
                new_role=new_role, new_disabled=new_disabled, admins=admins,
            )  # fmt: skip
            before = {k: getattr(user, k) for k in changes}
            ends_tokens = new_role != user.role or (new_disabled and not user.disabled)
            for key, value in changes.items():
                setattr(user, key, value)
            if ends_tokens:
                user.token_version += 1
            if before != changes:
                await self._record(s, actor, user, "user_updated",
                                   {"before": before, "after": changes})  # fmt: skip
        await self._revocations.changed(user.id, None if user.disabled else user.token_version)
        return user

    async def reset_password(
        self, actor: Principal, user_id: uuid.UUID, password: str | None
    ) -> Issued:
        """A forgotten password (an admin's): a temporary one the user must change at next
        sign-in or, without one, a one-time link. Either way every token the user holds ends,
        and so does any earlier link."""
        rules.require_admin(actor, "reset passwords")
        if password is not None:
            async with self._db() as s:
                username = await s.scalar(select(User.username).where(User.id == user_id))
            if username is None:
                raise NotFound("user", user_id)
            require_strong(password, username)
        hashed = await self._hash(password)
        async with self._db() as s, s.begin():
            user = await s.get(User, user_id, with_for_update=True)
            if user is None:
                raise NotFound("user", user_id)
            user.password_hash = hashed
            user.must_change_password = password is not None
            user.token_version += 1
            given = "given" if password is not None else "link"
            await self._record(s, actor, user, "password_reset", {"password": given})
        await self._revocations.changed(user.id, None if user.disabled else user.token_version)
        return Issued(user, None if password is not None else self._link(user))

    def _link(self, user: User) -> str:
        return self._tokens.issue_set_password(user.id, user.token_version, self._link_ttl)

    async def _hash(self, password: str | None) -> str:
        """A password's hash; with none, a hash of a random secret nobody knows (the account
        cannot be signed into until its link is used)."""
        secret = password if password is not None else secrets.token_urlsafe(32)
        return await asyncio.to_thread(hash_password, secret, cost=self._hash_cost)

    async def _visible(self, s: AsyncSession, actor: Principal, user_id: uuid.UUID) -> User:
        stmt = select(User).where(User.id == user_id)
        if actor.role != "admin":
            stmt = stmt.where(or_(User.id == actor.user_id, members_of_classes_taught_by(actor)))
        user = await s.scalar(stmt)
        if user is None:
            raise NotFound("user", user_id)
        return user

    async def _record(
        self,
        s: AsyncSession,
        actor: Principal | None,
        user: User,
        type_: str,
        payload: dict[str, Any],
    ) -> None:
        await self._ledger.record(
            s, await db_now(s), chain=user_chain(user.id), type=type_,
            source="server" if actor is None else "staff",
            actor_id=actor.user_id if actor else None, payload=payload,
        )  # fmt: skip


async def _classes_for(
    s: AsyncSession, actor: Principal | None, class_ids: list[uuid.UUID]
) -> list[Class]:
    """The active classes named; a teacher's must be ones they teach (403, as any class
    action of theirs elsewhere)."""
    if not class_ids:
        return []
    teaches = (
        exists().where(ClassTeacher.class_id == Class.id, ClassTeacher.user_id == actor.user_id)
        if actor is not None and actor.role != "admin"
        else true()
    )
    rows = (
        await s.execute(
            select(Class, teaches).where(Class.id.in_(class_ids), Class.state == "active")
        )
    ).all()
    missing = set(class_ids) - {klass.id for klass, _ in rows}
    if missing:
        raise Unprocessable(
            "unknown_class", "no such active class", class_ids=sorted(str(m) for m in missing)
        )
    if not all(taught for _, taught in rows):
        raise Forbidden("you may only enrol students into classes you teach")
    return [klass for klass, _ in rows]
