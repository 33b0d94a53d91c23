"""Build the Redis client: a real server by URL, or in-process fakeredis for the demo."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


def create_redis(url: str, *, max_connections: int = 100, wait_seconds: float = 5.0) -> Redis:
    """A blocking pool: when every connection is busy a caller waits (up to `wait_seconds`)
    instead of failing at once, which is what redis-py's default pool does past its cap."""
    if url == "memory://":
        # One FakeServer per app: the pub/sub connection and the command connection must share it.
        from fakeredis import FakeServer
        from fakeredis.aioredis import FakeRedis

        client: Redis = FakeRedis(server=FakeServer(), decode_responses=True, max_connections=2**16)
        return client
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=wait_seconds,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections
