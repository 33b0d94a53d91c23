"""Users and login: who may sign in, and whom staff may look up."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import DomainError, Forbidden
from delivery_service.domain.principal import Principal, Role
from delivery_service.live.throttle import Attempt, LoginThrottle
from delivery_service.security.device_cookies import DeviceCookies
from delivery_service.security.passwords import hash_password, verify_password
from delivery_service.security.tokens import TokenService
from delivery_service.services.access import members_of_classes_taught_by
from delivery_service.storage.models import User


class InvalidCredentials(DomainError):
    code = "invalid_credentials"


class TooManyAttempts(DomainError):
    code = "too_many_attempts"


class AccountDisabled(Forbidden):
    code = "account_disabled"


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
        hash_cost: int,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._throttle = throttle
        self._devices = devices
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
        if user is None or not matches:
            raise InvalidCredentials("wrong username or password")
        await self._throttle.succeeded(attempt)
        if user.disabled:
            raise AccountDisabled("this account is disabled; ask an administrator")
        principal = Principal(user.id, user.username, user.role, user.token_version)  # type: ignore[arg-type]
        return SignedIn(self._tokens.issue(principal), principal, self._devices.issue(username))

    async def list_users(self, principal: Principal, *, role: Role | None = None) -> list[User]:
        """Staff only, by username: an admin lists everyone; a teacher themselves and the
        members (students and co-teachers) of the classes they teach. Optionally one role."""
        if not principal.is_staff:
            raise Forbidden("only teachers and admins list users")
        stmt = select(User).order_by(User.username)
        if principal.role != "admin":
            stmt = stmt.where(
                or_(User.id == principal.user_id, members_of_classes_taught_by(principal))
            )
        if role is not None:
            stmt = stmt.where(User.role == role)
        async with self._db() as s:
            return list(await s.scalars(stmt))
