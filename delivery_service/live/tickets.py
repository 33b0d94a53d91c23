"""Single-use WebSocket tickets: a browser cannot set headers on a WebSocket, and a JWT in a URL
would end up in logs. A ticket lives 30 s and is consumed atomically (GETDEL) by one handshake."""

from __future__ import annotations

import json
import secrets
from typing import Any

from redis.asyncio import Redis

from delivery_service.live.keys import Keys


class Tickets:
    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self.ttl_seconds = ttl_seconds

    async def issue(self, claims: dict[str, Any]) -> str:
        ticket = secrets.token_urlsafe(32)
        await self._redis.set(self._keys.ticket(ticket), json.dumps(claims), ex=self.ttl_seconds)
        return ticket

    async def redeem(self, ticket: str) -> dict[str, Any] | None:
        if not ticket or len(ticket) > 128:
            return None
        raw = await self._redis.getdel(self._keys.ticket(ticket))
        return json.loads(raw) if raw else None
