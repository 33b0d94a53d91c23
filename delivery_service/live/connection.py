"""Build the Redis client: a real server by URL, or in-process fakeredis for the demo."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    if url == "memory://":
        # One FakeServer per app: the pub/sub connection and the command connection must share it.
        from fakeredis import FakeServer
        from fakeredis.aioredis import FakeRedis

        client: Redis = FakeRedis(server=FakeServer(), decode_responses=True)
        return client
    return Redis.from_url(url, decode_responses=True, health_check_interval=30)
