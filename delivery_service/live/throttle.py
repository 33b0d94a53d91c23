"""Failed-login counting per username, shared by all workers, against password guessing."""

from __future__ import annotations

from redis.asyncio import Redis

from delivery_service.live.keys import Keys


class LoginThrottle:
    def __init__(self, redis: Redis, keys: Keys, *, max_failures: int, window_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._max = max_failures
        self.window_seconds = window_seconds

    async def blocked(self, username: str) -> bool:
        failures = await self._redis.get(self._keys.login_failures(username))
        return int(failures or 0) >= self._max

    async def failed(self, username: str) -> None:
        key = self._keys.login_failures(username)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window_seconds, nx=True)
            await pipe.execute()

    async def succeeded(self, username: str) -> None:
        await self._redis.delete(self._keys.login_failures(username))
