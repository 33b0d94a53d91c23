"""Who is connected to a session: a sorted set scored by expiry (DESIGN.md §6).

Heartbeats push a student's score forward; a worker that dies stops pushing, so its students drop
out on their own, with no clean-up needed.
"""

from __future__ import annotations

from datetime import datetime

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from delivery_service.live.keys import Keys
from delivery_service.live.timers import epoch_ms


class Presence:
    def __init__(self, redis: Redis, keys: Keys, ttl_ms: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = ttl_ms

    async def touch(self, session_id: str, user_id: str, now: datetime) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            self._mark(pipe, self._keys.presence(session_id), user_id, now)
            await pipe.execute()

    async def arrive(self, session_id: str, user_id: str, now: datetime) -> int:
        """Mark present, and how many are online now (one round trip: a join announces it)."""
        key = self._keys.presence(session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            self._mark(pipe, key, user_id, now)
            pipe.zcount(key, epoch_ms(now), "+inf")
            *_, online = await pipe.execute()
        return int(online)

    def _mark(self, pipe: Pipeline, key: str, user_id: str, now: datetime) -> None:
        """Present until the TTL from now; the set itself outlives its last member a while."""
        pipe.zadd(key, {user_id: epoch_ms(now) + self._ttl_ms})
        pipe.pexpire(key, self._ttl_ms * 4)

    async def leave(self, session_id: str, user_id: str, now: datetime) -> int:
        """No longer present, and how many still are (one round trip: a leave announces it)."""
        key = self._keys.presence(session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(key, user_id)
            pipe.zcount(key, epoch_ms(now), "+inf")
            _, online = await pipe.execute()
        return int(online)

    async def online(self, session_id: str, now: datetime) -> set[str]:
        members = await self._redis.zrangebyscore(
            self._keys.presence(session_id), epoch_ms(now), "+inf"
        )
        return {str(m) for m in members}

    async def count(self, session_id: str, now: datetime) -> int:
        """How many are online, without fetching who (a join or leave announces the count:
        fetching every member there made each join cost as much as the session was large)."""
        return int(await self._redis.zcount(self._keys.presence(session_id), epoch_ms(now), "+inf"))
