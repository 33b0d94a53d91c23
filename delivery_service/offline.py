"""What an operator's command (`examserver create-user`, `import-users`, `revoke-tokens`,
`import-qti`, …) runs against: the configured database and Redis, and the services built on
them the way the workers build theirs, without a web server. One place, so every command
connects, acts as a staff user and cleans up the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.domain.errors import Forbidden
from delivery_service.domain.principal import Principal
from delivery_service.live.connection import create_redis
from delivery_service.live.keys import Keys
from delivery_service.security.tokens import TokenService
from delivery_service.services.revocation import Revocations
from delivery_service.services.users import UserService
from delivery_service.settings import Settings
from delivery_service.storage.database import create_engine, create_sessionmaker
from delivery_service.storage.ledger import Ledger
from delivery_service.storage.models import User


@dataclass
class Offline:
    settings: Settings
    db: async_sessionmaker[AsyncSession]
    redis: Redis

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.settings.ledger_key.encode())

    @cached_property
    def revocations(self) -> Revocations:
        return Revocations(
            db=self.db, redis=self.redis, keys=Keys(self.settings.redis_prefix),
            ttl_seconds=self.settings.token_recheck_seconds,
        )  # fmt: skip

    @cached_property
    def users(self) -> UserService:
        s = self.settings
        tokens = TokenService(secret=s.jwt_secret, issuer=s.jwt_issuer,
                              audience=s.jwt_audience, ttl_seconds=s.jwt_ttl_seconds)  # fmt: skip
        return UserService(
            db=self.db, tokens=tokens, revocations=self.revocations, ledger=self.ledger,
            hash_cost=s.password_hash_cost,
            set_password_ttl_seconds=s.set_password_link_hours * 3600,
        )  # fmt: skip

    async def staff(self, username: str | None) -> Principal:
        """The enabled staff user a command acts as: the one named, or the first admin (what
        it does is recorded as theirs)."""
        stmt = select(User).where(User.disabled.is_(False)).order_by(User.created_at)
        stmt = stmt.where(User.username == username if username else User.role == "admin")
        async with self.db() as s:
            user = await s.scalar(stmt.limit(1))
        if user is None or user.role not in ("admin", "teacher"):
            raise Forbidden(f"no staff user {username or '(admin)'} to act as")
        return Principal(user.id, user.username, user.role, user.token_version)  # type: ignore[arg-type]


@asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[Offline]:
    engine = create_engine(settings)
    redis = create_redis(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout_seconds,
        connect_timeout=settings.redis_connect_timeout_seconds,
    )
    try:
        yield Offline(settings, create_sessionmaker(engine), redis)
    finally:
        await redis.aclose()
        await engine.dispose()
