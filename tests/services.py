"""Where the real PostgreSQL and Redis are, and whether they answer.

Tests that make claims about them run against the real servers. Without them a test is skipped
with the reason shown; under CI (CI=true) a missing server fails the run instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from functools import cache

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

PG_URL = os.environ.get(
    "EXAMSERVER_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# A database index of its own: the "Redis lost everything" test empties it with FLUSHDB.
REDIS_URL = os.environ.get("EXAMSERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@cache
def postgres_problem() -> str | None:
    async def probe() -> None:
        import asyncpg

        dsn = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncio.wait_for(asyncpg.connect(dsn), timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} does not answer: {exc!r}"
    return None


@cache
def redis_problem() -> str | None:
    async def probe() -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"Redis at {REDIS_URL} does not answer: {exc!r}"
    return None


def require(*problems: str | None) -> None:
    """Skip (or, under CI, fail) when a real service this test needs is missing."""
    found = [p for p in problems if p]
    if not found:
        return
    reason = "; ".join(found)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs the real services: {reason}", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def own_postgres_database(purpose: str) -> Iterator[str]:
    """A PostgreSQL database of its own, empty, dropped afterwards (the suite's shared one is
    always migrated to head): for migrations from old revisions and fresh deployments."""
    require(postgres_problem())
    name = f"examserver_{purpose}_{uuid.uuid4().hex[:8]}"
    base = PG_URL.rsplit("/", 1)[0]

    async def admin(sql: str) -> None:
        engine = create_async_engine(f"{base}/postgres", poolclass=NullPool,
                                     isolation_level="AUTOCOMMIT")  # fmt: skip
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))
