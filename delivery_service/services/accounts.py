"""Users and login."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import DomainError
from delivery_service.live.throttle import LoginThrottle
from delivery_service.services.security import (
    Principal,
    TokenService,
    hash_password,
    verify_password,
)
from delivery_service.storage.models import User


class InvalidCredentials(DomainError):
    code = "invalid_credentials"


class TooManyAttempts(DomainError):
    code = "too_many_attempts"


class AccountService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        tokens: TokenService,
        throttle: LoginThrottle,
        hash_cost: int,
    ) -> None:
        self._sessions = sessions
        self._tokens = tokens
        self._throttle = throttle
        # Verified against for unknown users, so a wrong username costs as long as a wrong
        # password and the response time does not reveal which usernames exist.
        self._decoy = hash_password("decoy", cost=hash_cost)

    async def login(self, username: str, password: str) -> tuple[str, Principal]:
        if await self._throttle.blocked(username):
            raise TooManyAttempts(
                "too many failed logins for this user; try again later",
                retry_after_seconds=self._throttle.window_seconds,
            )
        async with self._sessions() as s:
            user = await s.scalar(select(User).where(User.username == username))
        # scrypt is slow on purpose: keep it off the event loop.
        stored = self._decoy if user is None else user.password_hash
        matches = await asyncio.to_thread(verify_password, password, stored)
        if user is None or not matches:
            await self._throttle.failed(username)
            raise InvalidCredentials("wrong username or password")
        await self._throttle.succeeded(username)
        principal = Principal(user.id, user.username, user.role)  # type: ignore[arg-type]
        return self._tokens.issue(principal), principal
