"""Build the Redis client: a real server by URL, or in-process fakeredis for the demo."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


def create_redis(
    url: str,
    *,
    max_connections: int = 100,
    wait_seconds: float = 5.0,
    socket_timeout: float | None = None,
    connect_timeout: float | None = None,
) -> Redis:
    """A blocking pool: when every connection is busy a caller waits (up to `wait_seconds`)
    instead of failing at once, which is what redis-py's default pool does past its cap.

    redis-py waits forever for a reply by default, so a stalled Redis (paused, SIGSTOPped, a
    dropped link) would hold every request that touches it; `socket_timeout` turns that into
    a RedisError the edges answer as `redis_unavailable`."""
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
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections
