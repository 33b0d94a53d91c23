"""The token check's copy in Redis and its fallback to the database."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.live.connection import create_redis
from delivery_service.live.keys import Keys
from delivery_service.services.revocation import Revocations
from delivery_service.settings import Settings
from tests.support import add_user


class DownRedis:
    """A Redis that is down: every command fails, and each is counted."""

    def __init__(self) -> None:
        self.calls = 0

    async def mget(self, *_: Any) -> Any:
        self.calls += 1
        raise RedisConnectionError("Connection refused")

    def pipeline(self, *_: Any, **__: Any) -> Any:
        self.calls += 1
        raise RedisConnectionError("Connection refused")


async def test_a_revocation_is_seen_at_once_through_the_copy(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    user = await add_user(sessions, "copied")
    redis = create_redis(settings.redis_url)
    revocations = Revocations(db=sessions, redis=redis, keys=Keys(settings.redis_prefix),
                              ttl_seconds=600)  # fmt: skip
    try:
        assert await revocations.current([user]) == {user: 0}  # read, and copied
        assert await revocations.current([user]) == {user: 0}  # from the copy
        assert await revocations.revoke(user, disable=True) == (1, True)
        assert await revocations.current([user]) == {user: None}
        assert await revocations.revoke(user, disable=False) == (2, False)
        assert await revocations.current([user]) == {user: 2}
    finally:
        await redis.aclose()


async def test_with_redis_down_the_database_answers_without_waiting_on_redis_each_time(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    user = await add_user(sessions, "fallback")
    redis = DownRedis()
    revocations = Revocations(db=sessions, redis=redis, keys=Keys(settings.redis_prefix),  # type: ignore[arg-type]
                              ttl_seconds=600)  # fmt: skip
    for _ in range(5):
        assert await revocations.current([user]) == {user: 0}
    assert redis.calls == 1, "after one failure Redis is left alone for a while"
