"""Signing in, and choosing one's own password. Looking after other people's accounts is
services/users.py's."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from dataclasses import dataclass

import jwt
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Conflict, DomainError, Forbidden
from delivery_service.domain.principal import Principal
from delivery_service.live.throttle import Attempt, LoginThrottle
from delivery_service.security.device_cookies import DeviceCookies
from delivery_service.security.passwords import hash_password, needs_rehash, verify_password
from delivery_service.security.tokens import TokenService
from delivery_service.services.revocation import Revocations
from delivery_service.services.users import require_strong, user_chain
from delivery_service.storage.database import db_now
from delivery_service.storage.ledger import Ledger
from delivery_service.storage.models import User

log = logging.getLogger(__name__)


class InvalidCredentials(DomainError):
    code = "invalid_credentials"


class TooManyAttempts(DomainError):
    code = "too_many_attempts"


class AccountDisabled(Forbidden):
    code = "account_disabled"


class CurrentPasswordIncorrect(Forbidden):
    code = "current_password_incorrect"


class InvalidSetPasswordToken(DomainError):
    code = "invalid_set_password_token"


@dataclass(frozen=True)
class SignedIn:
    token: str
    principal: Principal
    device_cookie: str  # set on the browser: its next sign-ins count apart (live/throttle.py)


class AccountService:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        tokens: TokenService,
        throttle: LoginThrottle,
        devices: DeviceCookies,
        revocations: Revocations,
        ledger: Ledger,
        hash_cost: int,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._throttle = throttle
        self._devices = devices
        self._revocations = revocations
        self._ledger = ledger
        self._hash_cost = hash_cost
        # Verified against for unknown users, so a wrong username costs as long as a wrong
        # password and the response time does not reveal which usernames exist.
        self._decoy = hash_password("decoy", cost=hash_cost)

    async def login(
        self, username: str, password: str, *, source: str, device_cookie: str | None = None
    ) -> SignedIn:
        """Counted by the throttle before the password is checked; a disabled account is
        refused only after the right password (a guesser learns nothing of it)."""
        attempt = Attempt(username, source, self._devices.device_of(device_cookie, username))
        wait = await self._throttle.admit(attempt)
        if wait > 0:
            raise TooManyAttempts(
                "too many sign-in attempts from here; try again later",
                retry_after_seconds=math.ceil(wait),
            )
        async with self._db() as s:
            user = await s.scalar(select(User).where(User.username == username))
        # scrypt is slow on purpose: keep it off the event loop.
        stored = self._decoy if user is None else user.password_hash
        matches = await asyncio.to_thread(verify_password, password, stored)
        if user is not None and needs_rehash(stored, cost=self._hash_cost):
            # A cheap hash (an import's) or none (an OpenID-only account) answers faster than
            # a full-cost one; pay the difference, so timing does not tell which users exist.
            await asyncio.to_thread(verify_password, password, self._decoy)
        if user is None or not matches:
            raise InvalidCredentials("wrong username or password")
        await self._throttle.succeeded(attempt)
        if user.disabled:
            raise AccountDisabled("this account is disabled; ask an administrator")
        if needs_rehash(user.password_hash, cost=self._hash_cost):
            await self._rehash(user, password)
        principal = Principal(
            user.id, user.username, user.role, user.token_version,  # type: ignore[arg-type]
            password_change_required=user.must_change_password,
        )  # fmt: skip
        return SignedIn(self._tokens.issue(principal), principal, self._devices.issue(username))

    async def change_password(
        self, principal: Principal, current: str, new: str, *, source: str
    ) -> SignedIn:
        """The signed-in user chooses a new password, proving the current one (a stolen
        token alone cannot take the account; its guesses count like sign-in attempts). Every
        other token of theirs ends; the answer is a fresh sign-in."""
        attempt = Attempt(principal.username, source, None)
        wait = await self._throttle.admit(attempt)
        if wait > 0:
            raise TooManyAttempts(
                "too many attempts from here; try again later",
                retry_after_seconds=math.ceil(wait),
            )
        async with self._db() as s:
            user = await s.get(User, principal.user_id)
        if user is None or user.disabled:
            raise AccountDisabled("this account is disabled; ask an administrator")
        if not await asyncio.to_thread(verify_password, current, user.password_hash):
            raise CurrentPasswordIncorrect("the current password is not right")
        await self._throttle.succeeded(attempt)
        return await self._set(
            user.id, user.token_version, new, actor=principal.user_id, via_link=False
        )

    async def set_password_with_token(self, token: str, new: str) -> SignedIn:
        """A one-time set-password link: the token names the user's token version, so it
        works once, and not after a later reset or revocation."""
        try:
            user_id, version = self._tokens.verify_set_password(token)
        except jwt.InvalidTokenError:
            raise InvalidSetPasswordToken(
                "this set-password link is not valid or has expired; ask for a new one"
            ) from None
        return await self._set(user_id, version, new, actor=user_id, via_link=True)

    async def _set(
        self, user_id: uuid.UUID, version: int, new: str, *, actor: uuid.UUID, via_link: bool
    ) -> SignedIn:
        async with self._db() as s:
            user = await s.get(User, user_id)
        if user is None or user.token_version != version:
            raise self._stale(via_link)
        if user.disabled:
            raise AccountDisabled("this account is disabled; ask an administrator")
        require_strong(new, user.username)
        hashed = await asyncio.to_thread(hash_password, new, cost=self._hash_cost)
        async with self._db() as s, s.begin():
            # Compare-and-set on the version: two uses of one link cannot both win.
            changed = (
                await s.execute(
                    update(User)
                    .where(User.id == user_id, User.token_version == version)
                    .values(
                        password_hash=hashed, must_change_password=False, token_version=version + 1
                    )
                    .returning(User.token_version)
                )  # fmt: skip
            ).scalar_one_or_none()
            if changed is None:
                raise self._stale(via_link)
            await self._ledger.record(
                s, await db_now(s), chain=user_chain(user_id), type="password_changed",
                source="candidate" if user.role == "student" else "staff", actor_id=actor,
            )  # fmt: skip
        await self._revocations.changed(user_id, version + 1)
        principal = Principal(user.id, user.username, user.role, version + 1)  # type: ignore[arg-type]
        return SignedIn(
            self._tokens.issue(principal), principal, self._devices.issue(user.username)
        )

    @staticmethod
    def _stale(via_link: bool) -> DomainError:
        """The user's sign-ins changed since the proof was read (the link used, a reset, a
        revocation, or another change of password at the same moment)."""
        if via_link:
            return InvalidSetPasswordToken(
                "this set-password link was used or replaced; ask for a new one"
            )
        return Conflict(
            "password_changed_meanwhile", "your password or sign-ins changed meanwhile; sign in"
        )

    async def _rehash(self, user: User, password: str) -> None:
        """Bring a cheap hash (an import's) up to the server's cost while the password is at
        hand. Only if the hash is still the one checked: a change meanwhile wins."""
        hashed = await asyncio.to_thread(hash_password, password, cost=self._hash_cost)
        async with self._db() as s, s.begin():
            await s.execute(
                update(User)
                .where(User.id == user.id, User.password_hash == user.password_hash)
                .values(password_hash=hashed)
            )
