"""One live connection per (user, attempt) across all workers (DESIGN.md §6).

The owner key names the newest connection; it expires unless heartbeats refresh it, so it doubles
as presence. Taking it returns the previous owner, whom the caller tells to leave over the bus.
"""

from __future__ import annotations

from redis.asyncio import Redis

from delivery_service.live.keys import Keys
from delivery_service.live.scripts import Scripts


class Owners:
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts, ttl_ms: int) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._ttl_ms = ttl_ms

    async def take(self, scope: str, user_id: str, connection_id: str) -> str | None:
        """Become the owner; return the connection this one supersedes, if any."""
        previous = await self._redis.set(
            self._keys.owner(scope, user_id), connection_id, px=self._ttl_ms, get=True
        )
        return str(previous) if previous and previous != connection_id else None

    async def refresh(self, scope: str, user_id: str, connection_id: str) -> bool:
        """Keep ownership alive; False when a newer connection has taken over."""
        owned = await self._scripts.refresh_owner(
            keys=[self._keys.owner(scope, user_id)], args=[connection_id, self._ttl_ms]
        )
        return bool(owned)

    async def release(self, scope: str, user_id: str, connection_id: str) -> bool:
        """Give ownership up; True when this connection still held it (it was not superseded)."""
        released = await self._scripts.release_owner(
            keys=[self._keys.owner(scope, user_id)], args=[connection_id]
        )
        return bool(released)
